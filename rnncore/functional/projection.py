"""The "bptt" engine for an LSTM with a projection (torch.nn.LSTM's ``proj_size`` P > 0).

One layer and one direction is one autograd node, like ``engine._BPTT``, with one more
weight, W_hr (P, H):

    m_t = o_t * tanh(c_t)       h_t = W_hr m_t  (B, P)      (the recurrent GEMM reads h_{t-1})

Its loops are the LSTM's of ``forward`` and ``backward`` given ``w_hr``: backward turns the
total dL/dh_t (N, P) into dL/dm_t = dL/dh_t W_hr before the gate derivatives, and then

    dW_hr = sum_t (dL/dh_t)^T m_t                            (one GEMM over all N rows)
"""
from __future__ import annotations

import torch
from torch import Tensor

from rnncore.functional import reference
from rnncore.functional.backward import BACKWARD, _Grads
from rnncore.functional.engine import _transformed
from rnncore.functional.forward import FORWARD, final_states
from rnncore.functional.layout import Schedule
from rnncore.functional.record import publish, recording


class _BPTTProj(torch.autograd.Function):
    """Arguments as ``projected_recurrence``'s."""

    @staticmethod
    def forward(ctx, x, w_ih, b_ih, h0, c0, w_hh, b_hh, w_hr, sched, tag):
        outputs, saved = FORWARD["lstm"](x, w_ih, b_ih, h0, c0, w_hh, b_hh, sched, False, True,
                                         w_hr=w_hr)
        ctx.sched, ctx.tag = sched, tag
        ctx.save_for_backward(x, w_ih, *saved, h0, c0, w_hh, w_hr, b_ih, b_hh)
        return final_states(outputs, sched)

    @staticmethod
    def backward(ctx, grad_out, grad_hn, grad_cn):
        x, w_ih, gates, cs, ms, out, h0, c0, w_hh, w_hr, b_ih, b_hh = ctx.saved_tensors
        sched, need = ctx.sched, ctx.needs_input_grad
        if torch.is_grad_enabled() or _transformed(grad_out, grad_hn, grad_cn):
            # create_graph or batched gradients: the reference's exact, differentiable vjp
            inputs = (x, w_ih, b_ih, h0, c0, w_hh, b_hh, w_hr)
            return reference.vjp("lstm", inputs, (grad_out, grad_hn, grad_cn), need[:8],
                                 sched, False, torch.is_grad_enabled()) + (None, None)
        record = recording(ctx.tag)
        with torch.no_grad():
            grads = _Grads(x, w_ih, w_hh, h0, out, sched, need)
            dh0, dc0, dH = BACKWARD["lstm"](
                (gates, cs, ms, out), h0, c0, w_hh, sched, False, grad_out.contiguous(),
                grad_hn, grad_cn, grads, record, need[3], need[4], w_hr=w_hr)
            dw_hr = dH.t().mm(ms) if need[7] else None
        if record:
            publish(ctx.tag, dH, sched)
        dx, dw_ih, db_ih, dw_hh, db_hh = grads.grads()
        return dx, dw_ih, db_ih, dh0, dc0, dw_hh, db_hh, dw_hr, None, None


def projected_recurrence(x: Tensor, w_ih: Tensor, b_ih: Tensor | None, h0: Tensor, c0: Tensor,
                         w_hh: Tensor, b_hh: Tensor | None, w_hr: Tensor, sched: Schedule,
                         tag=None):
    """``engine.recurrence`` for an LSTM with a projection: x (N, I), w_ih (4H, I),
    w_hh (4H, P), w_hr (P, H), biases (4H,) or None, h0 (B, P), c0 (B, H). Returns
    out (N, P), h_n (B, P), c_n (B, H)."""
    args = (x, w_ih, b_ih, h0, c0, w_hh, b_hh, w_hr)
    if _transformed():
        return reference.layer_direction("lstm", *args[:7], sched, False, w_hr)
    if torch.is_grad_enabled() and any(t is not None and t.requires_grad for t in args):
        return _BPTTProj.apply(*args, sched, tag)
    with torch.no_grad():
        outputs, _ = FORWARD["lstm"](x, w_ih, b_ih, h0, c0, w_hh, b_hh, sched, False, False,
                                     w_hr=w_hr)
        return final_states(outputs, sched)
