"""The per-step recurrent GEMM of the "bptt" loops, with its weight prepared once per call.

Every step of a loop multiplies a few rows by the same weight: forward a_t += h_{t-1} W_hh^T
(bs, G*H), backward dL/dh_{t-1} += dA_t W_hh (bs, H). At B = 32-64 rows these GEMMs are
small, and how the weight is laid out matters more than it would for one big GEMM:

    given W_hh^T as the transposed view, MKL ran 20-50% slower than with a contiguous copy
    (one thread, B32 H512 LSTM: 0.81 ms vs 0.54 ms a step), so the copy is made once;
    with two threads MKL's packed format (cblas_sgemm_pack, torch.ops.mkl._mkl_linear)
    ran 25-30% faster again (B32 H512: 0.32 ms vs 0.45 ms), since every call otherwise
    re-packs the whole weight for only 32 rows; with one thread it won nothing.

``StepGemm(w, rows, steps)`` holds w (out_features, in_features), as nn.Linear stores a
weight, and computes ``x w^T`` for x (m, in_features): ``add_to(out, x)`` adds it into
``out`` (m, out_features), ``into(out, x)`` writes it. Laying the weight out costs a copy
(0.05-1.2 ms, H = 256-512) or a packing, which pays for itself only over several steps: a
loop of fewer than MIN_STEPS ``steps`` (a generated token's one-step call) multiplies by
the weight as stored. The packed form serves float32 CPU tensors with more than one
intra-op thread, for exactly ``rows`` rows (the packing is per row count; other counts,
such as a packed batch's shrinking steps, take the plain GEMM), unless RNNCORE_PACKED=0.
Results equal the plain GEMM's up to float32 rounding.
"""
from __future__ import annotations

import os

import torch
from torch import Tensor

from rnncore.functional import fused


def _packing_available() -> bool:
    return torch.backends.mkl.is_available() and hasattr(torch.ops.mkl, "_mkl_linear")


_PACKING = _packing_available()


def packs(w: Tensor) -> bool:
    """Whether a loop over weight ``w`` takes MKL's packed GEMM (see the module docstring)."""
    if torch.compiler.is_compiling():     # first: Dynamo then traces none of the rest
        return False
    return (_PACKING and os.environ.get("RNNCORE_PACKED", "") != "0"
            and w.dtype == torch.float32 and w.device.type == "cpu"
            and torch.get_num_threads() > 1)


# the fewest steps for which the weight is laid out: break-even was ~5-11 steps at H256
# (the copy against the per-step gain, B32-64, one thread)
MIN_STEPS = 16


class StepGemm:
    """x w^T for the loop's many small x, w (out_features, in_features) fixed."""

    def __init__(self, w: Tensor, rows: int, steps: int):
        self.rows = rows
        self.w = w
        lay_out = steps >= MIN_STEPS
        self.packed = (torch.ops.mkl._mkl_reorder_linear_weight(w.contiguous(), rows)
                       if lay_out and packs(w) else None)
        # (in, out) for the plain GEMM: a contiguous copy when it serves the loop; the
        # transposed view for short loops, and beside a packed weight, where it only takes
        # the steps of another row count (a packed batch's shrinking steps)
        self.wt = w.t().contiguous() if lay_out and self.packed is None else w.t()

    def args(self) -> tuple:
        """(wt, packed, w, rows) for the C++ step loops (steploops.cpp's Gemm); ``packed``
        has no elements when the plain GEMM serves."""
        return self.wt, fused.none_or(self.packed), self.w, self.rows

    def _packed(self, x: Tensor) -> Tensor:
        return torch.ops.mkl._mkl_linear(x, self.packed, self.w, None, self.rows)

    def add_to(self, out: Tensor, x: Tensor) -> Tensor:
        """out += x w^T."""
        if self.packed is not None and x.shape[0] == self.rows:
            return out.add_(self._packed(x))
        return out.addmm_(x, self.wt)

    def into(self, out: Tensor, x: Tensor) -> Tensor:
        """out = x w^T."""
        if self.packed is not None and x.shape[0] == self.rows:
            return out.copy_(self._packed(x))
        return torch.mm(x, self.wt, out=out)
