#!/usr/bin/python3
"""analyze_ref.py - independent references for the compare / attribute /
provenance tests, built with the shared numpy tools (../shared/bench).

    analyze_ref.py OUTDIR BENCHDIR

Makes (once; later calls return at once, concurrent calls wait on a lock):
  OUTDIR/fam/{base,donor1..3}          gen_family.py tiny, 6 layers, float32
  OUTDIR/recipes/METHOD.yml            linear, task_arithmetic, ties,
                                       dare_ties (float32 output), stack
                                       (passthrough, repeated and overlapping
                                       ranges), blend (linear slices with one
                                       0.3/0.7 layer)
  OUTDIR/merged-METHOD/                ref_merge.py output
  OUTDIR/shares-METHOD.json            ref_merge.py --shares --per-tensor
  OUTDIR/peer-METHOD.json              peer_audit.py on base, donors, merged
  OUTDIR/truth.json                    known coefficients (gen_family's
                                       formula), slice maps and blend weights
  OUTDIR/done.json                     written last
"""
import fcntl
import json
import os
import subprocess
import sys

PY = "/usr/bin/python3"


def run(args):
    subprocess.run([PY] + args, check=True, stdout=subprocess.DEVNULL)


def dump(path, obj):
    import yaml
    with open(path, "w") as f:
        yaml.safe_dump(obj, f, sort_keys=False, default_flow_style=None)


def recipes(donors):
    d1, d2, d3 = donors
    f32 = {"dtype": "float32"}
    w = [0.5, 0.3, 0.2]
    r = {}
    r["linear"] = dict(merge_method="linear",
                       models=[{"model": d, "parameters": {"weight": w[i]}} for i, d in enumerate(donors)],
                       parameters={"normalize": True}, **f32)
    ta = []
    for i, d in enumerate(donors):
        p = {"weight": w[i]}
        if i == 1:
            p = {"weight": [{"filter": "self_attn", "value": 0.6}, {"filter": "mlp", "value": 0.2},
                            {"value": 0.4}]}
        ta.append({"model": d, "parameters": p})
    r["task_arithmetic"] = dict(merge_method="task_arithmetic", base_model="fam/base", models=ta,
                                parameters={"normalize": False, "lambda": 1.0}, **f32)
    r["ties"] = dict(merge_method="ties", base_model="fam/base",
                     models=[{"model": d, "parameters": {"weight": w[i], "density": 0.5 if i else [0.3, 0.7]}}
                             for i, d in enumerate(donors)],
                     parameters={"normalize": True}, **f32)
    r["dare_ties"] = dict(merge_method="dare_ties", base_model="fam/base",
                          models=[{"model": d, "parameters": {"weight": w[i], "density": 0.6}}
                                  for i, d in enumerate(donors)], **f32)
    r["stack"] = dict(merge_method="passthrough", dtype="float32",
                      slices=[{"sources": [{"model": d1, "layer_range": [0, 4]}]},
                              {"sources": [{"model": d2, "layer_range": [2, 6]}]},
                              {"sources": [{"model": d1, "layer_range": [3, 5]}]},
                              {"sources": [{"model": d1, "layer_range": [3, 5]}]},
                              {"sources": [{"model": d2, "layer_range": [0, 1]}]}])

    def one(m, a, b, wt=1.0):
        return {"model": m, "layer_range": [a, b], "parameters": {"weight": wt}}
    r["blend"] = dict(merge_method="linear", dtype="float32", parameters={"normalize": False},
                      slices=[{"sources": [one(d1, 0, 2)]},
                              {"sources": [one(d1, 2, 3, 0.3), one(d2, 2, 3, 0.7)]},
                              {"sources": [one(d2, 3, 6)]}])
    return r


def build(out, bench):
    sys.path.insert(0, bench)
    import gen_family
    fam = os.path.join(out, "fam")
    run([os.path.join(bench, "gen_family.py"), fam, "--preset", "tiny", "--layers", "6",
         "--dtype", "f32", "--seed", "11", "--donors", "3", "--merges", "none", "--quiet"])
    donors = ["fam/donor1", "fam/donor2", "fam/donor3"]
    rdir = os.path.join(out, "recipes")
    os.makedirs(rdir, exist_ok=True)
    truth = {"coefficients": {}, "slice_map": {}, "blend": {"layer": 2, "weights": {donors[0]: 0.3, donors[1]: 0.7}},
             "models_dir": fam}
    for m, rec in recipes(donors).items():
        rp = os.path.join(rdir, m + ".yml")
        dump(rp, rec)
        sh = os.path.join(out, "shares-%s.json" % m)
        run([os.path.join(bench, "ref_merge.py"), rp, os.path.join(out, "merged-" + m), "--models-dir", fam,
             "--seed", "3", "--shares", sh, "--per-tensor"])
        res = json.load(open(sh))
        if m in ("linear", "task_arithmetic"):
            truth["coefficients"][m] = gen_family.known_coefficients(m, res["tensors"], res["donors"])
        if m in ("stack", "blend"):
            truth["slice_map"][m] = res["slice_map"]
        if m in ("task_arithmetic", "ties", "dare_ties"):
            run([os.path.join(bench, "peer_audit.py"), "--base", os.path.join(fam, "base")]
                + sum([["--donor", os.path.join(fam, d.split("/")[1])] for d in donors], [])
                + ["--merged", os.path.join(out, "merged-" + m), "--json", os.path.join(out, "peer-%s.json" % m),
                   "--quiet"])
    with open(os.path.join(out, "truth.json"), "w") as f:
        json.dump(truth, f, indent=1)
    with open(os.path.join(out, "done.json"), "w") as f:
        json.dump({"ok": True}, f)


def main():
    out, bench = sys.argv[1], sys.argv[2]
    os.makedirs(out, exist_ok=True)
    with open(os.path.join(out, ".lock"), "w") as lk:
        fcntl.flock(lk, fcntl.LOCK_EX)
        if not os.path.exists(os.path.join(out, "done.json")):
            build(out, bench)
    return 0


if __name__ == "__main__":
    sys.exit(main())
