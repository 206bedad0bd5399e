"""Measurement primitives shared by the pytest-benchmark files and ``python -m benchmarks``.

One implementation of each measurement: timing (medians after warm-up; CUDA events on GPU),
peak memory (CUDA allocator stats on GPU, profiler memory events on CPU), the machine's fp32
matmul peak, and the layer forward+backward benchmark. The BPTT-strategy measurements live
in ``benchmarks/measure_bptt.py`` and build on these.
"""
from __future__ import annotations

import datetime
import os
import platform
import statistics
import time
from typing import Callable

import torch

from rnncore.kinds import GATES  # noqa: F401 (used here and by scripts/gemm_floor.py)


# --- timing ------------------------------------------------------------------------------

def synchronize(device: str | torch.device) -> None:
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize()


def time_once(fn: Callable[[], object], device: str | torch.device) -> float:
    """Seconds one call of ``fn`` takes; on CUDA measured with events between two syncs
    (kernel launches are asynchronous, so wall-clock around the call would be wrong)."""
    if torch.device(device).type == "cuda":
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        torch.cuda.synchronize()
        start.record()
        fn()
        end.record()
        torch.cuda.synchronize()
        return start.elapsed_time(end) / 1e3
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def time_interleaved(fns: dict[str, Callable[[], object]], device: str | torch.device,
                     warmup: int, repeats: int) -> dict[str, list[float]]:
    """Times of several functions, run round-robin so that load changes on a shared machine
    hit all of them alike (the ratios are what we report). Returns seconds per call."""
    for _ in range(warmup):
        for fn in fns.values():
            fn()
    synchronize(device)
    times: dict[str, list[float]] = {name: [] for name in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            times[name].append(time_once(fn, device))
    return times


def median(xs: list[float]) -> float:
    return float(statistics.median(xs))


# --- memory ------------------------------------------------------------------------------

def cpu_peak_from_events(events: list[tuple[int, int]]) -> int:
    """Peak of the running sum of (time, +/-bytes) allocation events, relative to the start.

    Frees of memory allocated before the window make the running sum go negative; the
    peak is taken from 0, i.e. the most memory in use *in addition* to what was held at
    the start (frees of older memory are counted as they happen, which is what the
    allocator sees too)."""
    running = peak = 0
    for _, nbytes in sorted(events, key=lambda e: e[0]):
        running += nbytes
        peak = max(peak, running)
    return peak


def memory_profile(fn: Callable[[], object], device: str | torch.device) -> dict:
    """Bytes torch allocates while ``fn()`` runs, relative to what was allocated before:
    ``peak_bytes`` (the most in use at any moment) and ``retained_bytes`` (still in use
    when ``fn`` returns, with its return value alive, e.g. the activations a forward keeps
    for the backward).

    CUDA: ``torch.cuda.max_memory_allocated`` after ``reset_peak_memory_stats``, and
    ``memory_allocated``. CPU: torch has no allocator statistics, so ``fn`` runs under
    ``torch.profiler`` with ``profile_memory=True``; every allocation/free is a ``[memory]``
    event with a signed byte count, the peak is the running maximum of their time-ordered
    cumulative sum (``cpu_peak_from_events``) and the retained bytes their total. Only
    torch tensors are counted (not Python objects).
    """
    device = torch.device(device)
    if device.type == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats(device)
        base = torch.cuda.memory_allocated(device)
        result = fn()
        torch.cuda.synchronize()
        out = {"peak_bytes": int(torch.cuda.max_memory_allocated(device) - base),
               "retained_bytes": int(torch.cuda.memory_allocated(device) - base)}
        del result
        return out
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        result = fn()
    del result
    events = [(e.start_ns(), int(e.nbytes())) for e in prof.profiler.kineto_results.events()
              if e.name() == "[memory]" and e.device_type() == torch.autograd.DeviceType.CPU]
    return {"peak_bytes": cpu_peak_from_events(events),
            "retained_bytes": sum(n for _, n in events)}


def peak_memory(fn: Callable[[], object], device: str | torch.device) -> int:
    """Peak bytes allocated by torch during ``fn()`` above what was allocated before it
    (see ``memory_profile``)."""
    return memory_profile(fn, device)["peak_bytes"]


# --- machine -----------------------------------------------------------------------------

def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine_info(device: str) -> dict:
    """What the numbers were measured on (written next to every result)."""
    info = {
        "cpu_model": cpu_model(),
        "cpu_cores": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "torch_version": torch.__version__,
        "python_version": platform.python_version(),
        "platform": platform.platform(),
        "device": device,
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
    }
    if torch.device(device).type == "cuda":
        info["gpu"] = torch.cuda.get_device_name()
        info["cuda_version"] = torch.version.cuda
        info["tf32_matmul"] = torch.backends.cuda.matmul.allow_tf32
    return info


def matmul_peak_gflops(device: str, n: int = 2048, warmup: int = 2, repeats: int = 7,
                       dtype: torch.dtype = torch.float32) -> dict:
    """Achieved fp32 GFLOP/s of an n x n x n matmul (2 n^3 FLOPs): this machine's practical
    peak, the yardstick for the layers' GFLOP/s. TF32 is whatever torch's setting is (off by
    default), so on GPU this is true fp32."""
    gen = torch.Generator(device="cpu").manual_seed(0)
    a = torch.randn(n, n, generator=gen, dtype=dtype).to(device)
    b = torch.randn(n, n, generator=gen, dtype=dtype).to(device)
    out = torch.empty(n, n, dtype=dtype, device=device)
    times = time_interleaved({"mm": lambda: torch.mm(a, b, out=out)}, device, warmup, repeats)["mm"]
    t = median(times)
    return {"n": n, "seconds": t, "gflops": 2 * n ** 3 / t / 1e9, "times": times}


# --- layer forward + backward ------------------------------------------------------------

def layer_flops(cell: str, batch: int, seq_len: int, input_size: int, hidden_size: int) -> dict:
    """FLOPs of one layer pass, counting the matmuls only:

        forward  = 2 G H (I + H) B T     (input and recurrent projections, G gates)
        backward = 2 * forward           (dX/dh and dW for each of them)
    """
    fwd = 2 * GATES[cell] * hidden_size * (input_size + hidden_size) * batch * seq_len
    return {"forward": fwd, "backward": 2 * fwd, "total": 3 * fwd}


def make_layer(cell: str, input_size: int, hidden_size: int, engine: str, device: str):
    import rnncore

    cls = {"lstm": rnncore.LSTM, "gru": rnncore.GRU, "rnn": rnncore.RNN}[cell]
    return cls(input_size, hidden_size, engine=engine).to(device)


def layer_case(cell: str, size: tuple[int, int, int, int], engines: tuple[str, ...],
               device: str, seed: int = 0):
    """Layers of every engine with identical weights, one input and one output gradient.

    Returns ``(steps, check)``: ``steps[engine]()`` runs forward + backward (gradients of
    weights and input, as a training step needs), ``check()`` returns the largest
    difference of outputs and input gradients to the first engine (so a benchmark that
    compares engines also proves they computed the same thing).
    """
    batch, seq_len, input_size, hidden_size = size
    torch.manual_seed(seed)
    layers = {}
    for engine in engines:
        layers[engine] = make_layer(cell, input_size, hidden_size, engine, device)
    first = layers[engines[0]]
    for layer in layers.values():
        layer.load_state_dict(first.state_dict())
    gen = torch.Generator(device="cpu").manual_seed(seed + 1)
    x = torch.randn(seq_len, batch, input_size, generator=gen).to(device).requires_grad_(True)
    grad_out = torch.randn(seq_len, batch, hidden_size, generator=gen).to(device)

    def step_for(layer):
        def step():
            layer.zero_grad(set_to_none=True)
            x.grad = None
            out = layer(x)[0]
            out.backward(grad_out)
            return out
        return step

    steps = {engine: step_for(layer) for engine, layer in layers.items()}

    def check() -> float:
        ref_out = steps[engines[0]]().detach().clone()
        ref_gx = x.grad.clone()
        worst = 0.0
        for engine in engines[1:]:
            out = steps[engine]().detach()
            worst = max(worst, (out - ref_out).abs().max().item(),
                        (x.grad - ref_gx).abs().max().item())
        return worst

    return steps, check


def measure_layer(cell: str, size: tuple[int, int, int, int], engines: tuple[str, ...],
                  device: str, warmup: int, repeats: int, peak_gflops: float | None = None
                  ) -> list[dict]:
    """Forward+backward time of each engine on the same inputs, interleaved, in one process.

    One row per engine: median seconds, all times, ratio to "native" (torch.nn), achieved
    GFLOP/s (``layer_flops`` total / median) and its fraction of the matmul peak.
    """
    steps, check = layer_case(cell, size, engines, device)
    max_diff = check()
    times = time_interleaved(steps, device, warmup, repeats)
    batch, seq_len, input_size, hidden_size = size
    flops = layer_flops(cell, batch, seq_len, input_size, hidden_size)["total"]
    native = median(times["native"]) if "native" in times else None
    rows = []
    for engine, ts in times.items():
        t = median(ts)
        gflops = flops / t / 1e9
        rows.append({
            "cell": cell, "engine": engine, "batch": batch, "seq_len": seq_len,
            "input_size": input_size, "hidden_size": hidden_size,
            "size": f"B{batch} T{seq_len} I{input_size} H{hidden_size}",
            "median_s": t, "min_s": min(ts), "times_s": ts, "flops": flops,
            "gflops": gflops,
            "fraction_of_peak": gflops / peak_gflops if peak_gflops else None,
            "ratio_to_native": t / native if native else None,
            "max_abs_diff_to_first_engine": max_diff,
        })
    return rows


# target: bptt engine time / torch.nn time, per cell and size index
def layer_target(cell: str, size_index: int) -> float:
    """LSTM <= 0.9x torch.nn at the first two sizes and <= 1.0x at the third;
    GRU and RNN <= 0.8x."""
    if cell == "lstm":
        return 0.9 if size_index < 2 else 1.0
    return 0.8
