#!/usr/bin/python3
"""stable_rank_ref.py FAM OUT.json BENCH_DIR - the exact stable rank
||D||_F^2 / sigma_max(D)^2 (float64 SVD) of every donor's task vector
D = donor - base, for the matrices the audit sketches (rows = the hidden
size, not the embeddings) of the family gen_family.py wrote in FAM:
{tensor: {"fam/donorN": value}}. The independent value the audit's
sketched stable rank is checked against. Run with Debian's /usr/bin/python3.
"""
import json
import os
import sys

import numpy as np


def main():
    fam, out = sys.argv[1], sys.argv[2]
    sys.path.insert(0, sys.argv[3])  # ../shared/bench: stio reads the safetensors
    import stio
    base = stio.Model(os.path.join(fam, "base"))
    donors = sorted(d for d in os.listdir(fam) if d.startswith("donor"))
    models = {d: stio.Model(os.path.join(fam, d)) for d in donors}
    hidden = base.get("model.embed_tokens.weight").shape[1]
    res = {}
    for t in base.names():
        if "embed_tokens" in t or t.startswith("lm_head"):
            continue
        b = base.get(t).astype(np.float64)
        if b.ndim != 2 or b.shape[0] != hidden:
            continue
        res[t] = {}
        for d, m in models.items():
            s = np.linalg.svd(m.get(t).astype(np.float64) - b, compute_uv=False)
            if s[0] > 0:
                res[t]["fam/" + d] = float((s ** 2).sum() / s[0] ** 2)
    with open(out, "w") as f:
        json.dump(res, f)
    return 0


if __name__ == "__main__":
    sys.exit(main())
