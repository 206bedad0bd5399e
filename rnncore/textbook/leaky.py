"""Leaky units: a tanh RNN whose state keeps a fixed fraction alpha of itself every step.

    a_t = W_ih x_t + b_ih + W_hh h_{t-1} + b_hh
    u_t = tanh(a_t)
    h_t = alpha h_{t-1} + (1 - alpha) u_t              alpha in [0, 1], fixed (not learned)

alpha = 0 is the vanilla tanh RNN (``rnncore.RNN`` with the same weights); alpha near 1
makes h a running average that accumulates information over ~1/(1 - alpha) steps, but the
self-connection is the same at every step, so the unit cannot decide to forget (the LSTM's
forget gate f_t can). One step's Jacobian is

    dh_t/dh_{t-1} = alpha I + (1 - alpha) diag(1 - u_t^2) W_hh

Backward through time (the ``"bptt"`` engine, ``_LeakySequence``), with g_t = dL/dh_t the
total gradient (from the output at t and from step t+1), row vectors:

    da_t      = (1 - alpha) (1 - u_t^2) * g_t
    g_{t-1}  += alpha g_t + da_t W_hh
    dW_hh = sum_t da_t^T h_{t-1}   dW_ih = sum_t da_t^T x_t   db_ih = db_hh = sum_t da_t
    dx_t  = da_t W_ih

Layout as the ``"bptt"`` engine's (``rnncore.functional``): x (N, I) flat and time-major
(a PackedSequence's data, or a padded (T, B, I) batch with N = T*B) walked by a
``Schedule``; h0, h_n (B, H); out (N, H). ``LeakyRNN`` is its own class (not a
``kinds.CELL_KINDS`` entry): the shared layer classes are torch.nn drop-ins, and torch.nn
has no leaky cell.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.nn.utils.rnn import PackedSequence

from rnncore.functional import final_states, schedule, step_prev
from rnncore.kinds import check_engine, layer_weights, weight_names

LEAKY_ENGINES = ("bptt", "autograd")


def check_alpha(alpha) -> float:
    if isinstance(alpha, bool) or not isinstance(alpha, (int, float)) \
            or not 0.0 <= float(alpha) <= 1.0:
        raise ValueError(f"alpha must be a number in [0, 1], got {alpha!r}")
    return float(alpha)


def leaky_step(x_proj: Tensor, state: tuple[Tensor], w_hh: Tensor, b_hh: Tensor | None,
               alpha: float) -> tuple[tuple[Tensor], dict[str, Tensor]]:
    """One step with ``cells.cell_step``'s signature: x_proj (B, H), state (h,) ->
    ((h',), {"a": a}); autograd's reference for the hand-written backward."""
    h = state[0]
    a = x_proj + F.linear(h, w_hh, b_hh)
    return (alpha * h + (1.0 - alpha) * torch.tanh(a),), {"a": a}


def leaky_cell_step(alpha: float):
    """``step(x_proj, state, w_hh, b_hh) -> (state, gates)`` as ``cells.cell_step`` gives."""
    alpha = check_alpha(alpha)
    return lambda xp, state, w_hh, b_hh: leaky_step(xp, state, w_hh, b_hh, alpha)


class _LeakySequence(torch.autograd.Function):
    """x (N, I), w_ih (H, I), b_ih (H,)|None, h0 (B, H), w_hh (H, H), b_hh (H,)|None ->
    out (N, H), h_n (B, H). Saves u = tanh(a) (N, H) and out for the backward."""

    @staticmethod
    def forward(ctx, x, w_ih, b_ih, h0, w_hh, b_hh, alpha, sched):
        xp = F.linear(x, w_ih, b_ih)
        if b_hh is not None:
            xp = xp + b_hh
        u = torch.empty_like(xp)
        out = torch.empty_like(xp)
        wt = w_hh.t()
        for s in sched.steps:
            rows = slice(s.off, s.off + s.bs)
            prev = step_prev(out[s.off_prev:s.off_prev + s.n_carry], h0, s)
            torch.tanh(torch.addmm(xp[rows], prev, wt), out=u[rows])
            out[rows] = alpha * prev + (1.0 - alpha) * u[rows]
        ctx.alpha, ctx.sched, ctx.has_b = alpha, sched, (b_ih is not None, b_hh is not None)
        ctx.save_for_backward(x, w_ih, h0, w_hh, u, out)
        return final_states([out], sched)

    @staticmethod
    def backward(ctx, grad_out, grad_hn):
        x, w_ih, h0, w_hh, u, out = ctx.saved_tensors
        alpha, sched, need = ctx.alpha, ctx.sched, ctx.needs_input_grad
        # dh holds the total dL/dh_t once every later step has added what flows back
        dh = grad_out.clone() if grad_out is not None else torch.zeros_like(out)
        prev_idx, last_idx = sched.indices(out.device)
        if grad_hn is not None:
            dh.index_add_(0, last_idx, grad_hn)
        da = torch.empty_like(out)
        dh0 = torch.zeros_like(h0)
        for s in reversed(sched.steps):
            rows = slice(s.off, s.off + s.bs)
            g = dh[rows]
            torch.mul(g, (1.0 - alpha) * (1.0 - u[rows] * u[rows]), out=da[rows])
            back = torch.addmm(g, da[rows], w_hh, alpha=1.0, beta=alpha)  # alpha g + da W_hh
            dh[s.off_prev:s.off_prev + s.n_carry] += back[:s.n_carry]
            dh0[s.n_carry:s.bs] += back[s.n_carry:s.bs]
        h_prev = torch.cat([out, h0])[prev_idx]           # (N, H): each row's h_{t-1}
        db = da.sum(0)
        return (da @ w_ih if need[0] else None,
                da.t() @ x if need[1] else None,
                db if ctx.has_b[0] and need[2] else None,
                dh0 if need[3] else None,
                da.t() @ h_prev if need[4] else None,
                db if ctx.has_b[1] and need[5] else None,
                None, None)


def leaky_recurrence(x: Tensor, w_ih: Tensor, b_ih: Tensor | None, h0: Tensor, w_hh: Tensor,
                     b_hh: Tensor | None, alpha: float, sched, engine: str = "bptt"
                     ) -> tuple[Tensor, Tensor]:
    """One layer over a flat time-major batch: out (N, H), h_n (B, H). ``engine``
    "bptt": the hand-derived backward above; "autograd": ``leaky_step`` per step."""
    if engine == "bptt":
        return _LeakySequence.apply(x, w_ih, b_ih, h0, w_hh, b_hh, alpha, sched)
    xp = F.linear(x, w_ih, b_ih)
    outs, prev = [], None
    for s in sched.steps:
        (h,), _ = leaky_step(xp[s.off:s.off + s.bs], (step_prev(prev, h0, s),), w_hh, b_hh,
                             alpha)
        outs.append(h)
        prev = h
    return final_states([torch.cat(outs)], sched)


class LeakyRNN(nn.Module):
    """Stacked leaky tanh units with torch.nn.RNN's parameter names (``weight_ih_l0``, ...,
    so an ``rnncore.RNN``/``torch.nn.RNN`` state dict loads) and fixed ``alpha``.

    input (T, B, I) | (B, T, I) with ``batch_first`` | (T, I) unbatched | PackedSequence
    (unidirectional); hx (L, B, H) | (L, H); returns (output (.., H), h_n (L, B, H)).
    ``engine``: "bptt" (hand-derived backward) or "autograd" (reference).
    """

    def __init__(self, input_size: int, hidden_size: int, num_layers: int = 1,
                 alpha: float = 0.9, bias: bool = True, batch_first: bool = False,
                 device=None, dtype=None, *, engine: str = "bptt"):
        super().__init__()
        for name, v in (("input_size", input_size), ("hidden_size", hidden_size),
                        ("num_layers", num_layers)):
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ValueError(f"{name} must be a positive integer, got {v!r}")
        self.input_size, self.hidden_size, self.num_layers = input_size, hidden_size, num_layers
        self.alpha, self.bias, self.batch_first = check_alpha(alpha), bias, batch_first
        self.engine = engine
        kw = {"device": device, "dtype": dtype}
        for layer in range(num_layers):
            w_ih, w_hh, b_ih, b_hh = weight_names(layer)
            fan_in = input_size if layer == 0 else hidden_size
            setattr(self, w_ih, nn.Parameter(torch.empty(hidden_size, fan_in, **kw)))
            setattr(self, w_hh, nn.Parameter(torch.empty(hidden_size, hidden_size, **kw)))
            if bias:
                setattr(self, b_ih, nn.Parameter(torch.empty(hidden_size, **kw)))
                setattr(self, b_hh, nn.Parameter(torch.empty(hidden_size, **kw)))
        self.reset_parameters()

    @property
    def engine(self) -> str:
        return self._engine

    @engine.setter
    def engine(self, value: str) -> None:
        # "native" is a known engine name elsewhere; torch has no leaky kernel
        if check_engine(value) not in LEAKY_ENGINES:
            raise ValueError(f"LeakyRNN has no {value!r} engine "
                             f"(choose from {', '.join(LEAKY_ENGINES)})")
        self._engine = value

    def reset_parameters(self) -> None:
        """U(-1/sqrt(H), 1/sqrt(H)), as torch.nn.RNN."""
        bound = 1.0 / math.sqrt(self.hidden_size)
        for p in self.parameters():
            nn.init.uniform_(p, -bound, bound)

    def extra_repr(self) -> str:
        return (f"{self.input_size}, {self.hidden_size}, num_layers={self.num_layers}, "
                f"alpha={self.alpha}, bias={self.bias}, batch_first={self.batch_first}")

    def step_fn(self):
        """This layer's step, ``cells.cell_step``'s signature (for the probes)."""
        return leaky_cell_step(self.alpha)

    def forward(self, input, hx: Tensor | None = None):
        packed = isinstance(input, PackedSequence)
        if packed:
            x, batch_sizes = input.data, tuple(input.batch_sizes.tolist())
        else:
            unbatched = input.dim() == 2
            if unbatched:
                input = input.unsqueeze(1)
            elif input.dim() != 3:
                raise ValueError(f"input must be 2-D or 3-D, got {input.dim()}-D")
            seq = input.transpose(0, 1) if self.batch_first else input
            T, B = seq.shape[:2]
            x, batch_sizes = seq.reshape(T * B, -1), (B,) * T
        B = batch_sizes[0]
        if hx is None:
            hx = x.new_zeros(self.num_layers, B, self.hidden_size)
        elif not packed and unbatched:
            hx = hx.unsqueeze(1)
        if hx.shape != (self.num_layers, B, self.hidden_size):
            raise ValueError(f"hx must be {(self.num_layers, B, self.hidden_size)}, "
                             f"got {tuple(hx.shape)}")
        sched = schedule(batch_sizes, False)
        if packed and input.sorted_indices is not None:
            hx = hx.index_select(1, input.sorted_indices)
        finals = []
        for layer in range(self.num_layers):
            w_ih, w_hh, b_ih, b_hh = layer_weights(self, layer)
            x, h_n = leaky_recurrence(x, w_ih, b_ih, hx[layer], w_hh, b_hh, self.alpha, sched,
                                      self.engine)
            finals.append(h_n)
        h_n = torch.stack(finals)
        if packed:
            if input.unsorted_indices is not None:
                h_n = h_n.index_select(1, input.unsorted_indices)
            return PackedSequence(x, input.batch_sizes, input.sorted_indices,
                                  input.unsorted_indices), h_n
        out = x.reshape(T, B, self.hidden_size)
        if self.batch_first:
            out = out.transpose(0, 1)
        if unbatched:
            return out.squeeze(1), h_n.squeeze(1)
        return out, h_n
