"""The differentiable reference of one layer-direction: a Python loop over cells.py steps.

It is the "autograd" engine, and the "bptt" engine's exact stand-in wherever the
hand-written loops cannot serve: a backward whose own graph is asked for
(``create_graph=True``, double backward) and torch.func transforms (vmap, grad, jacrev,
``is_grads_batched``), which cannot batch the loops' ``out=`` and in-place ops. It is
out of place throughout, so autograd and torch.func differentiate and batch it as is.
Shapes as ``recurrence``: x (N, I), x_proj (N, G*H), h0, c0 (B, H), out (N, H).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from rnncore import cells
from rnncore.functional.forward import final_states
from rnncore.functional.layout import Schedule, step_prev


def scan(mode: str, x_proj: Tensor, h0: Tensor, c0: Tensor | None, w_hh: Tensor,
         b_hh: Tensor | None, sched: Schedule, nonlinearity: str = "tanh",
         w_hr: Tensor | None = None):
    """(out, h_n[, c_n]) from the projected input x_proj = x W_ih^T + b_ih, one
    ``cells.cell_step`` per step of ``sched``; an LSTM's projection ``w_hr`` (P, H) maps
    each step's h to W_hr h before it is output and fed back."""
    step = cells.cell_step(mode, nonlinearity)
    init = (h0,) if c0 is None else (h0, c0)
    states: dict[int, tuple[Tensor, ...]] = {}
    for s in sched.steps:
        # the first step takes its rows from init only (n_carry = 0), as does every step
        # of an empty batch, whose offsets all coincide
        prev = states.get(s.off_prev, init)
        state = tuple(step_prev(p, i, s) for p, i in zip(prev, init))
        state, _ = step(x_proj[s.off:s.off + s.bs], state, w_hh, b_hh)
        if w_hr is not None:
            state = (F.linear(state[0], w_hr), state[1])
        states[s.off] = state
    outputs = [torch.cat([states[off][k] for off in sched.offsets]) for k in range(len(init))]
    return final_states(outputs, sched)


def layer_direction(mode: str, x, w_ih, b_ih, h0, c0, w_hh, b_hh, sched: Schedule,
                    relu: bool = False, w_hr: Tensor | None = None):
    """``recurrence``'s (out, h_n[, c_n]) from its arguments, as ``scan`` of x W_ih^T + b_ih
    (``projected_recurrence``'s with an LSTM projection ``w_hr``)."""
    return scan(mode, F.linear(x, w_ih, b_ih), h0, c0, w_hh, b_hh, sched,
                "relu" if relu else "tanh", w_hr)


def vjp(mode: str, inputs: tuple, grads: tuple, need: tuple, sched: Schedule, relu: bool,
        create_graph: bool) -> tuple:
    """J^T grads of ``layer_direction`` at ``inputs`` = (x, w_ih, b_ih, h0, c0, w_hh, b_hh
    [, w_hr]) for the outputs' gradients ``grads`` = (d out, d h_n[, d c_n]): one gradient per input,
    None where ``need`` is false. The forward is re-run on the saved inputs themselves, so
    with ``create_graph`` the result is differentiable in the inputs and in ``grads``."""
    wrt = [t for t, n in zip(inputs, need) if n]
    with torch.enable_grad():          # a backward runs without grad unless create_graph
        outputs = layer_direction(mode, *inputs[:7], sched, relu, *inputs[7:])
        got = iter(torch.autograd.grad(outputs, wrt, grads, create_graph=create_graph,
                                       materialize_grads=True))
    return tuple(next(got) if n else None for n in need)
