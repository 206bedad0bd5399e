"""Truncating the BPTT time sum: the window rule, randomized cuts, and one window's forward.

Notation: ``k1 = update_interval`` (new tokens per update), ``k2 = truncation_len``
(tokens backpropagated through), ``L_t`` the loss at position t.

Regular truncation, TBPTT(k1, k2). Each update reads k1 new tokens; its *window* also
re-reads the ``k2 - k1`` tokens before them, so it spans ``W = min(k2, tokens so far)``
tokens and starts from the state at its first token, detached::

    loss = sum over the last k1 positions of L_t,      dL/dh_{start} := 0

The state the next window starts from is the one after the first ``W - (k2 - k1)`` tokens
(``carry_point``); for ``k1 == k2`` windows do not overlap (classic "detach every k").

Randomized truncation (d2l 9.7.1.3, after Tallec & Ollivier 2017). On every recurrent edge
``h_{t-1} -> h_t`` and for every row b independently, the gradient crossing it is
multiplied by ``xi_{t,b} = 1/p`` with probability p, else 0 (``draw_keep_factors``). The
xi are independent with E[xi] = 1, so each path's product has expectation 1 and the
gradient is unbiased; the variance grows like ``p^-(path length)``.

``window_loss`` applies both to a ``CharRNN``; the trainer, the BPTT benchmark and the
gradient-flow probes all take their windows and factors from here.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from rnncore.data import IGNORE_INDEX
from rnncore.model import State, detach_state


# ----------------------------------------------------------------------------- windows

def carry_point(width: int, truncation_len: int, update_interval: int) -> int:
    """Position in a window of ``width`` tokens whose state the next window starts from:
    the last ``k2 - k1`` tokens are re-read by the next window (0 if the window is
    shorter than that)."""
    return width - min(truncation_len - update_interval, width)


@dataclass(frozen=True)
class Window:
    """Tokens [start, end) of a sequence; the loss is on the last ``loss_len`` of them and
    the next window starts from the (detached) state after ``carry_at`` of them."""

    start: int
    end: int
    loss_len: int
    carry_at: int


def windows(seq_len: int, truncation_len: int, update_interval: int | None = None
            ) -> list[Window]:
    """TBPTT(k1, k2) windows over [0, seq_len), as the trainer walks a stream."""
    k2 = truncation_len
    k1 = k2 if update_interval is None else update_interval
    if not 0 < k1 <= k2:
        raise ValueError(f"need 0 < update_interval (k1={k1}) <= truncation_len (k2={k2})")
    out, end = [], 0
    while end < seq_len:
        new = min(k1, seq_len - end)
        start = max(0, end - (k2 - k1))
        end += new
        out.append(Window(start, end, new, carry_point(end - start, k2, k1)))
    return out


def regular_boundary_scale(seq_len: int, truncation_len: int) -> list[float]:
    """Regular truncation (k1 = k2 = k) as a factor on the gradient entering each step's
    previous state: 0 where a window starts (the state is detached there), else 1."""
    starts = {w.start for w in windows(seq_len, truncation_len)}
    return [0.0 if t > 0 and t in starts else 1.0 for t in range(seq_len)]


# ----------------------------------------------------------------------------- randomized

def draw_keep_factors(steps: int, batch: int, keep_prob: float,
                      generator: torch.Generator) -> Tensor:
    """xi (steps, B): 1/p with probability p, else 0 (E[xi] = 1), in float64 on the CPU."""
    keep = torch.rand(steps, batch, generator=generator, dtype=torch.float64) < keep_prob
    return keep.to(torch.float64) / keep_prob


class _ScaleGrad(torch.autograd.Function):
    """Identity forward; backward multiplies the incoming gradient by ``factor``
    (broadcast, e.g. (1, B, 1) for a (L, B, H) state). The randomized-truncation xi."""

    @staticmethod
    def forward(ctx, x: Tensor, factor: Tensor) -> Tensor:
        ctx.save_for_backward(factor)
        return x.clone()

    @staticmethod
    def backward(ctx, grad: Tensor):
        (factor,) = ctx.saved_tensors
        return grad * factor, None


def scale_state_grad(state: State, factor: Tensor) -> State:
    """Apply ``_ScaleGrad`` to every tensor of a state; ``factor`` (B,) per row."""
    f = factor.view(1, -1, 1)
    if isinstance(state, tuple):
        return tuple(_ScaleGrad.apply(s, f.to(s.dtype)) for s in state)
    return _ScaleGrad.apply(state, f.to(state.dtype))


# ----------------------------------------------------------------------------- one window

@dataclass
class WindowOutput:
    loss_sum: Tensor   # scalar, nats summed over the counted targets (has grad)
    count: int         # counted (non-ignored) targets
    carry: State       # detached state after the first ``carry_at`` tokens
    final: State       # state after the whole window (with grad)


def window_loss(model, inputs: Tensor, targets: Tensor, state: State | None, *,
                loss_len: int | None = None, carry_at: int | None = None,
                keep_factors: Tensor | None = None) -> WindowOutput:
    """Forward one window of a ``CharRNN`` and sum the loss over its last ``loss_len``
    positions.

    inputs/targets (B, W) long; ``state`` the start state (treated as a constant: it is
    detached here); ``loss_len`` defaults to W; targets equal to ``IGNORE_INDEX`` are
    skipped. ``carry_at`` (default W) picks the position whose state (detached) is returned
    as ``carry``. ``keep_factors`` (W, B) turns on randomized truncation: the gradient
    entering the state passed from step t-1 to step t is multiplied by
    ``keep_factors[t]`` (``keep_factors[0]`` is unused: the start state is constant), and
    the recurrent layer runs one step at a time. Without it the recurrent layer runs as (at
    most) two sequence calls, split at ``carry_at``. The head only sees the loss region.
    """
    B, W = inputs.shape
    loss_len = W if loss_len is None else int(loss_len)
    carry_at = W if carry_at is None else int(carry_at)
    if not 0 < loss_len <= W or not 0 <= carry_at <= W:
        raise ValueError(f"bad window: W={W}, loss_len={loss_len}, carry_at={carry_at}")
    if state is None:
        state = model.init_state(B, device=inputs.device)
    state = detach_state(state)
    first_loss = W - loss_len
    carry = state
    if keep_factors is not None:
        keep_factors = keep_factors.to(inputs.device)
    # CharRNN.forward, with the embedding and the head applied once to the whole window
    # and the recurrent layer in pieces (or single steps)
    emb = model.embed_time_major(inputs)
    if keep_factors is not None:
        bounds = [(t, t + 1) for t in range(W)]
    else:
        bounds = [(0, carry_at), (carry_at, W)] if 0 < carry_at < W else [(0, W)]
    outputs, h = [], state
    for lo, hi in bounds:
        if keep_factors is not None and lo > 0:
            h = scale_state_grad(h, keep_factors[lo])
        out, h = model.rnn(emb[:, lo:hi], h)
        if hi > first_loss:
            outputs.append(out[:, max(0, first_loss - lo):].transpose(0, 1))
        if hi == carry_at:
            carry = detach_state(h)
    out = torch.cat(outputs) if len(outputs) > 1 else outputs[0]
    tgt = targets[:, first_loss:]
    loss_sum = model.head_loss_sum(out, tgt.t())
    count = int((tgt != IGNORE_INDEX).sum())
    return WindowOutput(loss_sum, count, carry, h)
