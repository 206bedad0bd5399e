"""The "bptt" engine's entry point ``recurrence`` and its autograd Function ``_BPTT``.

One layer and one direction, x (N, I) -> out (N, H), h_n (B, H) (and c_n (B, H) for LSTM),
is one autograd node whose loops come from the ``forward.FORWARD`` and
``backward.BACKWARD`` tables, keyed by cell name.
"""
from __future__ import annotations

import torch
from torch import Tensor

from rnncore.functional.backward import BACKWARD, _Grads
from rnncore.functional.forward import FORWARD, final_states
from rnncore.functional.layout import Schedule
from rnncore.functional.record import publish, recording
from rnncore.kinds import cell_kind


class _BPTT(torch.autograd.Function):
    """Arguments as ``recurrence``'s, with the cell's ``kinds.CellKind`` for its name."""

    @staticmethod
    def forward(ctx, x, w_ih, b_ih, h0, c0, w_hh, b_hh, kind, sched, relu, tag):
        outputs, saved = FORWARD[kind.name](x, w_ih, b_ih, h0, c0, w_hh, b_hh, sched, relu,
                                            True)
        ctx.kind, ctx.sched, ctx.relu, ctx.tag = kind, sched, relu, tag
        # save_for_backward takes tensors only: h0 stands in for the c0 of RNN and GRU
        ctx.save_for_backward(x, w_ih, *saved, h0, c0 if c0 is not None else h0, w_hh)
        return final_states(outputs, sched)

    @staticmethod
    def backward(ctx, grad_out, grad_hn, grad_cn=None):
        x, w_ih, *saved, h0, c0, w_hh = ctx.saved_tensors
        sched, need = ctx.sched, ctx.needs_input_grad
        record = recording(ctx.tag)
        with torch.no_grad():
            grads = _Grads(x, w_ih, w_hh, h0, saved[-1], sched, need)
            # dL/dh0 (and dc0) only when asked for: a truncated window's start state is
            # detached, and its gradient would cost a GEMM per window
            need_h0, need_c0 = need[3], need[4] and ctx.kind.has_cell_state
            dh0, dc0, dH = BACKWARD[ctx.kind.name](
                saved, h0, c0, w_hh, sched, ctx.relu, grad_out.contiguous(), grad_hn, grad_cn,
                grads, record, need_h0, need_c0)
        if record:
            publish(ctx.tag, dH, sched)
        return (grads.dx, grads.dw_ih, grads.db_ih, dh0, dc0, grads.dw_hh, grads.db_hh,
                None, None, None, None)


def recurrence(mode: str, x: Tensor, w_ih: Tensor, b_ih: Tensor | None, h0: Tensor,
               c0: Tensor | None, w_hh: Tensor, b_hh: Tensor | None, sched: Schedule,
               relu: bool = False, tag=None):
    """Run one layer-direction over a flat time-major batch with the "bptt" engine.

    x (N, I) the layer's input; w_ih (G*H, I), b_ih (G*H,), w_hh (G*H, H), b_hh (G*H,)
    (biases may be None); h0, c0 (B, H). Returns out (N, H), h_n (B, H) and, for LSTM,
    c_n (B, H). The input projection is the first GEMM inside the Function, so the
    backward can form dx, dW_ih and dW_hh together from blocks of gate gradients.
    Without grad nothing is saved for backward. ``relu`` picks the RNN's nonlinearity;
    ``tag`` = (layer, direction) names the call to a ``record_hidden_grads`` recorder.
    """
    kind = cell_kind(mode)
    needs_grad = torch.is_grad_enabled() and any(
        t is not None and t.requires_grad for t in (x, w_ih, b_ih, h0, c0, w_hh, b_hh))
    if needs_grad:
        return _BPTT.apply(x, w_ih, b_ih, h0, c0, w_hh, b_hh, kind, sched, relu, tag)
    with torch.no_grad():
        outputs, _ = FORWARD[kind.name](x, w_ih, b_ih, h0, c0, w_hh, b_hh, sched, relu, False)
        return final_states(outputs, sched)
