"""Fused pointwise steps for the "bptt" engine's loops (C++, built on first use).

Per time step the loops run one GEMM and then the cell's pointwise work; eagerly that work
is 2-8 ATen ops, each over B*H ~ 16k elements, below ATen's parallel grain (one thread) and
short enough that launch overhead is a large share, and the interpreter between the steps
costs ~10 us more. ``fused.cpp`` does one step's pointwise work in one pass over its rows
(``at::parallel_for`` over rows, so torch's intra-op threads are used), for float32 and
float64 (the float32 exp/tanh are vectorised polynomials, float64's libm's, so float64 is
for exact checks); ``steploops.cpp``, appended to it, runs whole loops around those steps
and the per-step GEMMs. The module exposes only the loops:

    rnn_forward_loop, lstm_forward_loop, gru_forward_loop        a layer-direction's forward
    rnn_backward_loop, lstm_backward_loop, gru_backward_loop     one block of its backward

each given a ``Schedule.table()`` of steps, the buffers of forward.py / backward.py and a
``stepgemm.StepGemm``'s ``args()``; the step kernels inside (lstm_forward/backward,
gru_forward/backward, rnn_backward; the RNN's forward step is addmm and tanh) read rows
[0, k) of the previous state from ``prev_*`` (the previous step's rows) and rows [k, bs)
from the initial state: ``layout.Step.n_carry``. The equations are those in forward.py /
backward.py, whose Python loops of eager ops remain the other path, and the saved buffers
are the same, so forward and backward may each take either path.

``kernels(t)`` answers, per call, which path a loop over tensor ``t`` takes: the extension,
or None for the eager ops. The extension serves float32 CPU tensors by default, float64 as
well with RNNCORE_FUSED=1, none with RNNCORE_FUSED=0 (read at every call); never other
devices, nor while torch.compile traces (Dynamo cannot trace into the extension), nor when
the extension cannot be built: that is tried once per process, and a failure (no ninja, no
compiler, a compile error) is one warning, after which the eager ops run. The build lands in
torch's extension cache (TORCH_EXTENSIONS_DIR, default ~/.cache/torch_extensions), keyed
by a hash of the source, flags and CPU features, so only a machine's first use compiles
(~45 s on one core).
"""
from __future__ import annotations

import hashlib
import logging
import os
import platform
import sys
import warnings
from pathlib import Path

import torch

# the step kernels, then the step loops that call them (and the module's bindings)
_SOURCES = [Path(__file__).with_name(n) for n in ("fused.cpp", "steploops.cpp")]
# -march=native: the build is per machine (its cache is local), and AVX2/FMA (with
# -fno-trapping-math, which lets the selects in exp_/tanh_ be if-converted) let the
# compiler vectorise the float32 exp/tanh; -fopenmp makes at::parallel_for use torch's
# OpenMP pool (the extension links the libgomp torch already loaded)
_CFLAGS = ["-O3", "-march=native", "-fno-trapping-math", "-fopenmp"]
# the dtypes that take the kernels, by RNNCORE_FUSED: by default (unset, or any other value)
# float32, where they beat the eager ops (float64 keeps libm's scalar exp/tanh, ~3x slower
# than ATen's vectorised ones); "1": float64 as well (what the tests compare exactly); "0": none
_DTYPES = {"0": (), "1": (torch.float32, torch.float64)}
_DEFAULT_DTYPES = (torch.float32,)
# the build's outcome, once per process: unset, the module, or None (failed)
_UNSET = object()
_module = _UNSET
# an optional tensor argument the kernel should treat as absent (it has no elements)
_NONE = torch.empty(0)


def kernels(t: torch.Tensor):
    """The extension module when a loop over ``t`` should use it, else None (eager ops)."""
    if torch.compiler.is_compiling():     # first: Dynamo then traces none of the rest
        return None
    dtypes = _DTYPES.get(os.environ.get("RNNCORE_FUSED", ""), _DEFAULT_DTYPES)
    if t.dtype not in dtypes or t.device.type != "cpu":
        return None
    return _load() if _module is _UNSET else _module


def prepare(module: torch.nn.Module) -> bool:
    """Build (or load from the cache) the extension now if ``module``'s loops will use it,
    so that a machine's one-time compile lands here (a trainer calls this while it is
    setting up) and not inside the first timed step. True when the kernels are ready."""
    if getattr(module, "engine", "bptt") != "bptt":
        return False
    p = next((p for p in module.parameters() if p.is_floating_point()), None)
    return p is not None and kernels(p) is not None


def _load():
    global _module
    try:
        _module = _build()
    except Exception as e:     # no ninja, no compiler, compile error: eager for this process
        last = (str(e).strip().splitlines() or [""])[-1]     # the compiler's last word
        warnings.warn(f"rnncore: fused LSTM/GRU kernels unavailable, using eager ops "
                      f"({type(e).__name__}: {last})", stacklevel=3)
        _module = None
    return _module


def _build():
    from torch.utils.cpp_extension import load_inline

    source = "\n".join(p.read_text() for p in _SOURCES)
    key = hashlib.sha1((source + " ".join(_CFLAGS) + _cpu()).encode()).hexdigest()[:12]
    path = os.environ.get("PATH", "")
    # ninja from pip lives beside the interpreter, which an un-activated venv leaves off PATH
    os.environ["PATH"] = os.pathsep.join([path, os.path.dirname(sys.executable)])
    # a failed build is our one warning: torch's logged advice about compilers is not for users
    log = logging.getLogger("torch.utils.cpp_extension")
    level = log.level
    log.setLevel(logging.ERROR)
    try:
        return load_inline(f"rnncore_fused_{key}", [source], extra_cflags=_CFLAGS,
                           extra_ldflags=["-fopenmp"], verbose=False)
    finally:
        os.environ["PATH"] = path
        log.setLevel(level)


def _cpu() -> str:
    """The CPU's feature flags, in the cache key: -march=native code from another machine
    sharing the cache directory could use instructions this one lacks."""
    try:
        with open("/proc/cpuinfo") as f:
            return next((line for line in f if line.startswith("flags")), "")
    except OSError:
        return platform.machine()


def none_or(t):
    """An optional tensor argument for the kernels: ``t``, or the empty placeholder."""
    return _NONE if t is None else t
