#!/usr/bin/python3
"""peer_provenance.py - what a merge builder writes today to find which donor
layer each layer of a stacked model came from (numpy only, one process): per
layer, a random projection sketch S = Rr^T W Rc of every tensor (Rr, Rc
Gaussian, fixed per tensor kind and shape), streamed tensor by tensor in row
chunks from memory-mapped safetensors, then cosines merged-layer x
donor-layer and the best match.

    peer_provenance.py MERGED DONOR [DONOR ...]

Prints the layer map and, on stderr, "peer_provenance: read X GB in S s".
Uses ../shared/bench/peer_audit.py's reader (STModel, upcast_into).
"""
import os
import re
import sys
import time
import zlib

import numpy as np

sys.path.insert(0, os.environ.get("MS_BENCH_SCRIPTS",
                                  os.path.join(os.path.dirname(os.path.abspath(__file__)), "../../shared/bench")))
import peer_audit  # noqa: E402

LAYER = re.compile(r"^model\.layers\.(\d+)\.(.+)$")
A = B = 16
CHUNK = 1 << 20


def sketch(path, proj):
    m = peer_audit.STModel(path)
    out = {}
    nbytes = 0
    for name in m.t:
        g = LAYER.match(name)
        if not g:
            continue
        layer, kind = int(g.group(1)), g.group(2)
        mm, dt, shape, nb = m.map(name)
        nbytes += nb
        rows = int(np.prod(shape[:-1])) if len(shape) > 1 else 1
        cols = shape[-1]
        key = (kind, rows, cols)
        if key not in proj:
            r = np.random.default_rng(zlib.crc32(kind.encode()))
            proj[key] = (r.standard_normal((rows, A)).astype(np.float32),
                         r.standard_normal((cols, B)).astype(np.float32))
        rr, rc = proj[key]
        step = max(1, CHUNK // cols)
        s = out.setdefault(layer, np.zeros((A, B)))
        buf = np.empty(step * cols, np.float32)
        for r0 in range(0, rows, step):
            n = min(step, rows - r0)
            x = buf[:n * cols]
            peer_audit.upcast_into(mm[r0 * cols:(r0 + n) * cols], dt, x)
            s += (rr[r0:r0 + n].T @ (x.reshape(n, cols) @ rc)).astype(np.float64)
        del mm
    return out, nbytes


def main():
    paths = sys.argv[1:]
    t0 = time.time()
    proj = {}
    sk = []
    total = 0
    for p in paths:
        s, nb = sketch(p, proj)
        sk.append(s)
        total += nb
    cand = [(d, l, v.ravel() / np.linalg.norm(v)) for d, s in enumerate(sk[1:]) for l, v in sorted(s.items())]
    for l, v in sorted(sk[0].items()):
        u = v.ravel() / np.linalg.norm(v)
        best = max(cand, key=lambda c: float(u @ c[2]))
        print("%d <- d%d:%d %.6f" % (l, best[0], best[1], float(u @ best[2])))
    el = time.time() - t0
    print("peer_provenance: read %.3f GB in %.2f s" % (total / 1e9, el), file=sys.stderr)


if __name__ == "__main__":
    main()
