"""The "bptt" engine's entry point ``recurrence`` and its autograd Function ``_BPTT``.

One layer and one direction, x (N, I) -> out (N, H), h_n (B, H) (and c_n (B, H) for LSTM),
is one autograd node whose loops come from the ``forward.FORWARD`` and
``backward.BACKWARD`` tables, keyed by cell name. Where those loops cannot serve, the
differentiable ``reference`` loop computes the same function: under torch.func transforms
(vmap, grad, jacrev; forward and backward) and in a backward whose graph is asked for
(``create_graph=True``), so higher derivatives are exact.
"""
from __future__ import annotations

import torch
from torch import Tensor

from rnncore.functional import reference
from rnncore.functional.backward import BACKWARD, _Grads
from rnncore.functional.forward import FORWARD, final_states
from rnncore.functional.layout import Schedule
from rnncore.functional.record import publish, recording
from rnncore.kinds import cell_kind


def _transformed(*tensors) -> bool:
    """Whether a torch.func transform is running, or ``tensors`` are batched by the
    vmap of ``autograd.grad(..., is_grads_batched=True)``: the loops' ``out=`` and
    in-place ops have no batching rules. Dynamo traces the first check (so a compiled
    vmap takes the reference too) but not the tensor checks, which only a backward run
    by that eager vmap needs."""
    if torch._C._are_functorch_transforms_active():
        return True
    if torch.compiler.is_compiling():
        return False
    ft = torch._C._functorch
    return any(ft.is_functorch_wrapped_tensor(t) or ft.is_legacy_batchedtensor(t)
               for t in tensors)


class _BPTT(torch.autograd.Function):
    """Arguments as ``recurrence``'s, with the cell's ``kinds.CellKind`` for its name.

    Returns (out, h_n[, c_n], *extra): ``extra`` are the forward's saved intermediates
    other than out (setup_context sees only inputs and outputs), non-differentiable."""

    @classmethod
    def apply(cls, *args):
        # Function.apply outside torch.func transforms (recurrence never applies this under
        # one) minus its binding of the arguments to forward's signature, which with
        # setup_context defined runs inspect on every call and costs more than the rest of
        # the node. torch.compile does not run this: Dynamo traces any Function's apply.
        args = torch._functorch.utils.unwrap_dead_wrappers(args)
        return super(torch.autograd.Function, cls).apply(*args)

    @staticmethod
    def forward(x, w_ih, b_ih, h0, c0, w_hh, b_hh, kind, sched, relu, tag):
        outputs, saved = FORWARD[kind.name](x, w_ih, b_ih, h0, c0, w_hh, b_hh, sched, relu,
                                            True)
        # every cell saves out last, and out is already the first output
        return (*final_states(outputs, sched), *saved[:-1])

    @staticmethod
    def setup_context(ctx, inputs, output):
        x, w_ih, b_ih, h0, c0, w_hh, b_hh, kind, sched, relu, tag = inputs
        extra = output[kind.state_parts + 1:]
        ctx.mark_non_differentiable(*extra)
        # no zero gradients for the intermediates; backward fills in the outputs' own
        ctx.set_materialize_grads(False)
        ctx.kind, ctx.sched, ctx.relu, ctx.tag = kind, sched, relu, tag
        ctx.save_for_backward(x, w_ih, b_ih, h0, c0, w_hh, b_hh, *extra, output[0])

    @staticmethod
    def backward(ctx, *grads):
        x, w_ih, b_ih, h0, c0, w_hh, b_hh, *saved = ctx.saved_tensors
        kind, sched, need = ctx.kind, ctx.sched, ctx.needs_input_grad
        n = kind.state_parts + 1
        grads = tuple(torch.zeros_like(like) if g is None else g
                      for g, like in zip(grads[:n], (saved[-1], h0, c0)))
        if torch.is_grad_enabled() or _transformed(*grads):
            # create_graph or batched gradients: the reference's exact, differentiable vjp
            inputs = (x, w_ih, b_ih, h0, c0, w_hh, b_hh)
            return reference.vjp(kind.name, inputs, grads, need, sched, ctx.relu,
                                 torch.is_grad_enabled()) + (None,) * 4
        grad_out, grad_hn, grad_cn = grads + (None,) * (3 - n)
        record = recording(ctx.tag)
        with torch.no_grad():
            acc = _Grads(x, w_ih, w_hh, h0, saved[-1], sched, need)
            # dL/dh0 (and dc0) only when asked for: a truncated window's start state is
            # detached, and its gradient would cost a GEMM per window
            need_h0, need_c0 = need[3], need[4] and kind.has_cell_state
            dh0, dc0, dH = BACKWARD[kind.name](
                saved, h0, c0, w_hh, sched, ctx.relu, grad_out.contiguous(), grad_hn, grad_cn,
                acc, record, need_h0, need_c0)
        if record:
            publish(ctx.tag, dH, sched)
        dx, dw_ih, db_ih, dw_hh, db_hh = acc.grads()
        return dx, dw_ih, db_ih, dh0, dc0, dw_hh, db_hh, None, None, None, None


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
    if _transformed():
        return reference.layer_direction(kind.name, x, w_ih, b_ih, h0, c0, w_hh, b_hh,
                                          sched, relu)
    needs_grad = torch.is_grad_enabled() and any(
        t is not None and t.requires_grad for t in (x, w_ih, b_ih, h0, c0, w_hh, b_hh))
    if needs_grad:
        return _BPTT.apply(x, w_ih, b_ih, h0, c0, w_hh, b_hh, kind, sched, relu,
                           tag)[:kind.state_parts + 1]
    with torch.no_grad():
        outputs, _ = FORWARD[kind.name](x, w_ih, b_ih, h0, c0, w_hh, b_hh, sched, relu, False)
        return final_states(outputs, sched)
