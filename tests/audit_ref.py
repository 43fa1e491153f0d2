#!/usr/bin/env python3
"""audit_ref.py OUTDIR SHARED_BENCH - independent reference shares for the
audit tests.

Generates a tiny llama family with ../shared/bench/gen_family.py (4 donors:
donor2 abliterated, donor3 through a Q8_0 round trip, donor1 and donor4
clean fine-tunes; recipes of every method gen_family writes), adds recipes
for the methods it does not write (dare_linear, della_linear, breadcrumbs,
breadcrumbs_ties), and runs ../shared/bench/ref_merge.py --shares on every
recipe into OUTDIR/ref-METHOD.json, and ../shared/bench/peer_audit.py on base
and donors into OUTDIR/peer.json. Run with Debian's /usr/bin/python3.
"""
import os
import subprocess
import sys

import yaml


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
    subprocess.run([py, os.path.join(bench, "peer_audit.py"), "--base", os.path.join(fam, "base")]
                   + sum([["--donor", os.path.join(fam, "donor%d" % i)] for i in range(1, 5)], [])
                   + ["--json", os.path.join(out, "peer.json"), "--quiet"],
                   check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return 0


if __name__ == "__main__":
    sys.exit(main())
