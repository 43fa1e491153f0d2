#!/usr/bin/env python3
"""audit_ref.py OUTDIR SHARED_BENCH - independent reference shares for the
audit tests.

Generates a tiny llama family with ../shared/bench/gen_family.py (4 donors:
donor2 abliterated, donor3 through a Q8_0 round trip, donor1 and donor4
clean fine-tunes; recipes of every method gen_family writes), adds recipes
for the methods it does not write (dare_linear, della_linear, breadcrumbs,
breadcrumbs_ties), and runs ../shared/bench/ref_merge.py --shares on every
recipe into OUTDIR/ref-METHOD.json, and ../shared/bench/peer_audit.py on base
and donors into OUTDIR/peer.json. Shares for sce, model_stock and nuslerp
(which ref_merge.py lacks) are computed here from mergekit-facts.md into
OUTDIR/ref-METHOD.json (overall only). Run with Debian's /usr/bin/python3.
"""
import json
import os
import subprocess
import sys

import numpy as np
import yaml


def other_methods(fam, out, bench):
    """Shares for methods ref_merge.py does not implement (sce with
    select_topk 1, model_stock, nuslerp with a base), straight from
    mergekit-facts.md: every tensor, float32 arithmetic, float64 sums."""
    sys.path.insert(0, bench)
    import stio
    names = ["fam/donor1", "fam/donor2", "fam/donor4"]
    base = stio.Model(os.path.join(fam, "base"))
    models = [stio.Model(os.path.join(fam, n.split("/")[1])) for n in names]
    recipes = {
        "sce": dict(merge_method="sce", base_model="fam/base",
                    models=[{"model": n} for n in names]),
        "model_stock": dict(merge_method="model_stock", base_model="fam/base",
                            models=[{"model": n} for n in names]),
        "nuslerp": dict(merge_method="nuslerp", base_model="fam/base",
                        models=[{"model": names[0], "parameters": {"weight": 0.7}},
                                {"model": names[2], "parameters": {"weight": 0.3}}]),
    }
    for m, r in recipes.items():
        with open(os.path.join(fam, "recipes", m + ".yml"), "w") as f:
            yaml.safe_dump(r, f, sort_keys=False)
        dot = {n: 0.0 for n in (names if m != "nuslerp" else [names[0], names[2]])}
        mm = 0.0
        for t in base.names():
            b = base.get(t).astype(np.float32).ravel()
            d = [mo.get(t).astype(np.float32).ravel() - b for mo in models]
            if m == "sce":
                s = d[0] + d[1] + d[2]
                maj = np.where(s >= 0, np.float32(1), np.float32(-1))
                msk = [(np.sign(x) == maj).astype(np.float32) for x in d]
                ms = [float(np.mean(x.astype(np.float64) ** 2)) for x in d]
                tot = sum(ms)
                w = [np.float32(v / tot if tot >= 1e-6 else 1.0 / 3) for v in ms]
                den = np.maximum(sum(wi * mi for wi, mi in zip(w, msk)), np.float32(1e-6))
                c = [wi * mi * x / den for wi, mi, x in zip(w, msk, d)]
                labels = names
            elif m == "model_stock":
                cs = []
                for i in range(3):
                    for j in range(i + 1, 3):
                        n = max(np.linalg.norm(d[i].astype(np.float64)) *
                                np.linalg.norm(d[j].astype(np.float64)), 1e-6)
                        cs.append(np.clip(np.dot(d[i].astype(np.float64), d[j]) / n, -1, 1))
                cc = float(np.mean(cs))
                tt = 3 * cc / (1 + 2 * cc)
                c = [np.float32(tt / 3) * x for x in d]
                labels = names
            else:
                t_ = 0.3 / (0.7 + 0.3)
                u0, u1 = d[0].astype(np.float64), d[2].astype(np.float64)
                n0 = max(np.linalg.norm(u0), 1e-7)
                n1 = max(np.linalg.norm(u1), 1e-7)
                th = np.arccos(np.clip(np.dot(u0, u1) / (n0 * n1), -1, 1))
                s0, s1 = np.sin((1 - t_) * th) / np.sin(th), np.sin(t_ * th) / np.sin(th)
                c = [np.float32(s0) * d[0], np.float32(s1) * d[2]]
                labels = [names[0], names[2]]
            M = sum(c).astype(np.float64)
            mm += float(np.dot(M, M))
            for n, ci in zip(labels, c):
                dot[n] += float(np.dot(ci.astype(np.float64), M))
        with open(os.path.join(out, "ref-%s.json" % m), "w") as f:
            json.dump({"schema": "audit_ref.shares/1", "merge_method": m,
                       "shares": {"overall": {n: v / mm for n, v in dot.items()}}}, f, indent=1)


def main():
    out, bench = sys.argv[1], sys.argv[2]
    fam = os.path.join(out, "fam")
    py = sys.executable
    subprocess.run([py, os.path.join(bench, "gen_family.py"), fam, "--preset", "tiny",
                    "--donors", "4", "--abliterated", "2", "--q8-roundtrip", "3",
                    "--merges", "all", "--quiet"], check=True)
    donors = ["fam/donor%d" % i for i in range(1, 5)]
    w = [0.5, 0.3, 0.6, 0.4]
    extra = {
        "dare_linear": dict(merge_method="dare_linear", base_model="fam/base",
                            models=[{"model": d, "parameters": {"weight": w[i], "density": 0.5}}
                                    for i, d in enumerate(donors)],
                            dtype="float32"),
        "della_linear": dict(merge_method="della_linear", base_model="fam/base",
                             models=[{"model": d, "parameters": {"weight": w[i], "density": 0.6,
                                                                 "epsilon": 0.2}}
                                     for i, d in enumerate(donors)],
                             dtype="float32"),
        "breadcrumbs": dict(merge_method="breadcrumbs", base_model="fam/base",
                            models=[{"model": d, "parameters": {"weight": w[i], "density": 0.6,
                                                                "gamma": 0.02}}
                                    for i, d in enumerate(donors)],
                            dtype="float32"),
        "breadcrumbs_ties": dict(merge_method="breadcrumbs_ties", base_model="fam/base",
                                 models=[{"model": d, "parameters": {"weight": w[i], "density": 0.7}}
                                         for i, d in enumerate(donors)],
                                 parameters={"normalize": True}, dtype="float32"),
    }
    for m, r in extra.items():
        with open(os.path.join(fam, "recipes", m + ".yml"), "w") as f:
            yaml.safe_dump(r, f, sort_keys=False)
    methods = ["linear", "task_arithmetic", "ties", "dare_ties", "della", "slerp",
               "passthrough"] + list(extra)
    for m in methods:
        subprocess.run([py, os.path.join(bench, "ref_merge.py"),
                        os.path.join(fam, "recipes", m + ".yml"), os.path.join(out, "merged"),
                        "--models-dir", fam, "--no-write",
                        "--shares", os.path.join(out, "ref-%s.json" % m)],
                       check=True, stdout=subprocess.DEVNULL)
    other_methods(fam, out, bench)
    subprocess.run([py, os.path.join(bench, "peer_audit.py"), "--base", os.path.join(fam, "base")]
                   + sum([["--donor", os.path.join(fam, "donor%d" % i)] for i in range(1, 5)], [])
                   + ["--json", os.path.join(out, "peer.json"), "--quiet"],
                   check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return 0


if __name__ == "__main__":
    sys.exit(main())
