"""C++ step loops vs Python loops (``rnncore.functional.fused``), side by side with torch.nn.

    python -m benchmarks.measure_fused [--threads N] [--cells lstm,gru,rnn] [--repeats R]
                                       [--out FILE.json]

For each cell and each of the layer benchmark's sizes, times forward+backward of torch.nn
("native"), the "bptt" engine with its C++ loops and fused kernels ("fused",
RNNCORE_FUSED=1) and with its Python loops of ATen ops ("eager", RNNCORE_FUSED=0),
round-robin in one process (``measure.layer_case`` and ``measure.time_interleaved``: same
weights, input and output gradient), and prints each
median's ratio to native. The extension is built (or loaded from its cache) before timing.
"""
from __future__ import annotations

import argparse
import json
import os

import torch

from benchmarks.config import FULL_LAYER_SIZES
from benchmarks.measure import layer_case, median, time_interleaved


def _with_fused(flag: str, step):
    def run():
        old = os.environ.get("RNNCORE_FUSED")
        os.environ["RNNCORE_FUSED"] = flag
        try:
            return step()
        finally:
            if old is None:
                del os.environ["RNNCORE_FUSED"]
            else:
                os.environ["RNNCORE_FUSED"] = old
    return run


def measure(cells, sizes, warmup: int, repeats: int) -> list[dict]:
    rows = []
    for cell in cells:
        for size in sizes:
            steps, _ = layer_case(cell, size, ("native", "bptt"), "cpu")
            fns = {"native": steps["native"], "fused": _with_fused("1", steps["bptt"]),
                   "eager": _with_fused("0", steps["bptt"])}
            times = time_interleaved(fns, "cpu", warmup, repeats)
            native = median(times["native"])
            row = {"cell": cell, "size": "B{} T{} I{} H{}".format(*size),
                   "threads": torch.get_num_threads(), "native_s": native}
            row.update({f"{k}_ratio": median(times[k]) / native for k in ("fused", "eager")})
            rows.append(row)
            print(f"{cell:5s} {row['size']:22s} threads {row['threads']}  native "
                  f"{native * 1e3:7.1f} ms  eager {row['eager_ratio']:.3f}x  "
                  f"fused {row['fused_ratio']:.3f}x", flush=True)
    return rows


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--cells", default="lstm,gru,rnn")
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--repeats", type=int, default=7)
    p.add_argument("--out", default=None)
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    from rnncore.functional import fused

    fused.kernels(torch.zeros(1))    # build or load the extension outside the timings
    rows = measure(args.cells.split(","), FULL_LAYER_SIZES, args.warmup, args.repeats)
    if args.out:
        with open(args.out, "w") as f:
            json.dump(rows, f, indent=1)


if __name__ == "__main__":
    main()
