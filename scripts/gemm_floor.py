"""The GEMM-only floor of the "bptt" engine against torch.nn (issue #2's speed targets).

python scripts/gemm_floor.py [THREADS] [CELLS]      e.g.  python scripts/gemm_floor.py 2 lstm

For each layer-benchmark size, times interleaved (median of 9): torch.nn's forward+backward
("native"), ours ("bptt"), and "gemm_floor": exactly the GEMMs our engine issues (the input
projection, one recurrent addmm per step forward and backward, dx, dW_ih, dW_hh) with no
pointwise work at all. Printed as ratios to native: if gemm_floor alone exceeds a target
ratio, no per-step-GEMM implementation can meet it.
"""
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks.config import FULL_LAYER_SIZES as sizes
from benchmarks.measure import GATES as G, layer_case, time_interleaved, median
torch.set_num_threads(int(sys.argv[1]) if len(sys.argv) > 1 else 1)
cells = sys.argv[2].split(",") if len(sys.argv) > 2 else ["lstm", "gru", "rnn"]
for cell in cells:
    for (B, T, I, H) in sizes:
        steps, _ = layer_case(cell, (B, T, I, H), ("native", "bptt"), "cpu")
        g = G[cell]; N = B * T
        x = torch.randn(N, I); wih = torch.randn(g * H, I); whh = torch.randn(g * H, H)
        b = torch.randn(g * H); A = torch.empty(N, g * H); h = torch.randn(B, H)
        whh_t = whh.t().contiguous()   # as forward.py holds it
        dA = torch.randn(N, g * H); dH = torch.zeros(N, H); Hs = torch.randn(N, H)
        def floor():
            torch.addmm(b, x, wih.t(), out=A)
            for t in range(T):
                A[t * B:(t + 1) * B].addmm_(h, whh_t)
            for t in range(T - 1, 0, -1):
                dH[(t - 1) * B:t * B].addmm_(dA[t * B:(t + 1) * B], whh)
            dA.mm(wih); dA.t().mm(x); dA.t().mm(Hs)
        steps["gemm_floor"] = floor
        times = time_interleaved(steps, "cpu", 2, 9)
        nat = median(times["native"])
        print(cell, (B, T, I, H), {k: round(median(v) / nat, 3) for k, v in times.items()},
              f"native {nat*1e3:.1f} ms", flush=True)
