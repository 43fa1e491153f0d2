#!/usr/bin/python3
"""Dequantization benchmark driver: mergescope beside its two baselines.

Runs bench_dequant (mergescope's decoders and a plain memory-read loop over
the same bytes, one thread) and, when gguf-py is available, gguf-py's numpy
`gguf.quants.dequantize` on random blocks of the same type (the peer a user
has today). Prints one Markdown table.

usage: bench/run_dequant.py BENCH_DEQUANT [--gguf-py DIR] [--elems N]
           [--chunk N] [--reps R] [TYPE...]
DIR is a gguf-py source tree (the folder holding the `gguf` package), e.g.
extracted from llama.cpp's source outside this repository; it can also come
from $GGUF_PY. Without it the peer column is left out.
"""
import argparse
import os
import subprocess
import sys
import time


def run_ours(args):
    cmd = [args.bench, "--elems", str(args.elems), "--chunk", str(args.chunk),
           "--reps", str(args.reps)] + args.types
    out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
    rows = {}
    for line in out.splitlines():
        if line.startswith("#") or not line.strip():
            continue
        t, mels, gbs, read_gbs, ratio = line.split("\t")
        rows[t] = (float(mels), float(gbs), float(read_gbs), float(ratio))
    return rows


def peer_speed(gguf, np, qtype, elems, reps):
    """Best elements/s of gguf-py's dequantize on random blocks (thread CPU
    time, as bench_dequant measures)."""
    block, nbytes = gguf.GGML_QUANT_SIZES[qtype]
    row = 4096
    n_rows = max(1, elems // row)
    rng = np.random.default_rng(1234)
    raw = rng.integers(0, 256, size=(n_rows, row // block * nbytes), dtype=np.uint8)
    raw &= 0xBF  # keep fp16 scales finite, as bench_dequant does
    gguf.quants.dequantize(raw[:1], qtype)  # builds lazy grid tables
    best = float("inf")
    for _ in range(reps):
        t0 = time.thread_time()
        gguf.quants.dequantize(raw, qtype)
        best = min(best, time.thread_time() - t0)
    return n_rows * row / best


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("bench")
    ap.add_argument("--gguf-py", default=os.environ.get("GGUF_PY"))
    ap.add_argument("--elems", type=int, default=1 << 24)
    ap.add_argument("--chunk", type=int, default=1 << 16)
    ap.add_argument("--peer-elems", type=int, default=1 << 21)
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("types", nargs="*")
    args = ap.parse_intermixed_args()
    ours = run_ours(args)
    gguf = np = None
    if args.gguf_py and os.path.isdir(os.path.join(args.gguf_py, "gguf")):
        sys.path.insert(0, args.gguf_py)
        import numpy as np  # noqa: E402
        import gguf  # noqa: E402
    elif args.gguf_py:
        print("warning: no gguf package under %s; peer column skipped" % args.gguf_py,
              file=sys.stderr)
    head = "| type | Mel/s | input GB/s | memory read GB/s | x read |"
    sep = "|---|---:|---:|---:|---:|"
    if gguf:
        head += " gguf-py Mel/s | x gguf-py |"
        sep += "---:|---:|"
    print(head)
    print(sep)
    for t, (mels, gbs, rgbs, ratio) in ours.items():
        line = "| %s | %.0f | %.2f | %.1f | %.3f |" % (t, mels, gbs, rgbs, ratio)
        if gguf:
            qt = gguf.GGMLQuantizationType[t]
            peer = peer_speed(gguf, np, qt, args.peer_elems, max(2, args.reps // 2)) / 1e6
            line += " %.1f | %.0f |" % (peer, mels / peer)
        print(line, flush=True)


if __name__ == "__main__":
    main()
