"""Runs on a lent CUDA machine: proves the CUDA paths and times engines against cuDNN.

python scripts/gpu_check.py OUT.json   (medians of CUDA-event timings after warm-up)
"""
import json
import platform
import sys
import time

import torch

import rnncore

dev = "cuda"
res = {"device": torch.cuda.get_device_name(0), "torch": torch.__version__,
       "date": time.strftime("%Y-%m-%d"), "host": platform.node(), "checks": {}, "timings": []}


def check_dtype(mode, dtype, tol):
    torch.manual_seed(0)
    ref = getattr(rnncore, mode)(64, 64, num_layers=2, engine="bptt").to(dev)
    low = getattr(rnncore, mode)(64, 64, num_layers=2, engine="bptt").to(dev, dtype)
    low.load_state_dict({k: v.to(dtype) for k, v in ref.state_dict().items()})
    x = torch.randn(50, 16, 64, device=dev)
    o32, _ = ref(x)
    xl = x.to(dtype).requires_grad_(True)
    ol, _ = low(xl)
    ol.float().pow(2).sum().backward()
    x32 = x.clone().requires_grad_(True)
    ref(x32)[0].pow(2).sum().backward()
    out_err = ((ol.float() - o32).norm() / o32.norm()).item()
    g_err = ((xl.grad.float() - x32.grad).norm() / x32.grad.norm()).item()
    res["checks"][f"{mode}-{dtype}"] = {"out_rel_err": out_err, "grad_rel_err": g_err,
                                        "ok": out_err < tol and g_err < tol}


for mode in ("RNN", "LSTM", "GRU"):
    check_dtype(mode, torch.float16, 2e-2)
    check_dtype(mode, torch.bfloat16, 5e-2)


def cuda_time(fn, reps=20, warm=5):
    for _ in range(warm):
        fn()
    torch.cuda.synchronize()
    ts = []
    for _ in range(reps):
        a, b = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        a.record()
        fn()
        b.record()
        torch.cuda.synchronize()
        ts.append(a.elapsed_time(b))
    return sorted(ts)[len(ts) // 2]


G = {"RNN": 1, "LSTM": 4, "GRU": 3}
for mode in ("LSTM", "GRU", "RNN"):
    for (T, B, I, H) in ((100, 64, 512, 512), (100, 64, 256, 256), (512, 32, 256, 512)):
        torch.manual_seed(0)
        m = getattr(rnncore, mode)(I, H, engine="bptt").to(dev)
        x = torch.randn(T, B, I, device=dev, requires_grad=True)
        g = torch.randn(T, B, H, device=dev)
        row = {"cell": mode, "T": T, "B": B, "I": I, "H": H}
        flops = 3 * 2 * G[mode] * H * (I + H) * B * T
        for engine in ("native", "bptt", "autograd"):
            m.engine = engine
            def step():
                out, _ = m(x)
                out.backward(g)
            row[engine + "_ms"] = cuda_time(step, reps=10 if engine == "autograd" else 20)
            def fwd():
                with torch.no_grad():
                    m(x)
            row[engine + "_fwd_ms"] = cuda_time(fwd)
        for k in ("native", "bptt"):
            row[k + "_tflops"] = flops / (row[k + "_ms"] * 1e-3) / 1e12
        row["bptt_vs_native"] = row["bptt_ms"] / row["native_ms"]
        res["timings"].append(row)
        print(json.dumps(row), flush=True)

print(json.dumps(res["checks"], indent=1))
with open(sys.argv[1], "w") as f:
    json.dump(res, f, indent=1)
