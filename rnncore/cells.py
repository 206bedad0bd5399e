"""One time step of each recurrent cell, in PyTorch's conventions (gate order included).

Every engine computes the input projection for all time steps at once,

    x_proj_t = W_ih x_t + b_ih                      (B, G*H), G = 1 RNN, 4 LSTM, 3 GRU

so a step only adds the recurrent part. These functions are the plain, autograd-friendly
definition of a step; the ``"autograd"`` engine loops over them and the gradient-flow
probes differentiate them. The ``"bptt"`` engine (rnncore.functional) computes the same
numbers with hand-written forward/backward loops.

Shapes: ``x_proj`` (B, G*H), ``h``/``c`` (B, H), ``w_hh`` (G*H, H), ``b_hh`` (G*H,) or None.
"""
from __future__ import annotations

from typing import Callable

import torch
import torch.nn.functional as F
from torch import Tensor

from rnncore.kinds import cell_kind


def _recurrent(h: Tensor, w_hh: Tensor, b_hh: Tensor | None) -> Tensor:
    return F.linear(h, w_hh, b_hh)


def rnn_cell(x_proj: Tensor, h: Tensor, w_hh: Tensor, b_hh: Tensor | None,
             nonlinearity: str = "tanh") -> tuple[Tensor, dict[str, Tensor]]:
    """h' = f(a), a = x_proj + W_hh h + b_hh, f = tanh or relu; the gate dict holds the
    pre-activation ``a`` so f'(a) can be read off."""
    a = x_proj + _recurrent(h, w_hh, b_hh)
    h_new = torch.tanh(a) if nonlinearity == "tanh" else torch.relu(a)
    return h_new, {"a": a}


def lstm_cell(x_proj: Tensor, h: Tensor, c: Tensor, w_hh: Tensor, b_hh: Tensor | None
              ) -> tuple[tuple[Tensor, Tensor], dict[str, Tensor]]:
    """LSTM step, gate order i, f, g, o (as torch.nn.LSTM).

        i, f, o = sigmoid(.)   g = tanh(.)
        c' = f * c + i * g     h' = o * tanh(c')

    so dc'/dc = diag(f) with h held fixed: the cell state's own path.
    """
    return lstm_pointwise(x_proj + _recurrent(h, w_hh, b_hh), c)


def lstm_pointwise(gates: Tensor, c: Tensor) -> tuple[tuple[Tensor, Tensor], dict[str, Tensor]]:
    """The LSTM step after the matmuls: pre-activations ``gates`` (B, 4H), order i, f, g, o."""
    i, f, g, o = gates.chunk(4, dim=-1)
    i, f, g, o = torch.sigmoid(i), torch.sigmoid(f), torch.tanh(g), torch.sigmoid(o)
    c_new = f * c + i * g
    h_new = o * torch.tanh(c_new)
    return (h_new, c_new), {"i": i, "f": f, "g": g, "o": o, "c": c_new}


def gru_cell(x_proj: Tensor, h: Tensor, w_hh: Tensor, b_hh: Tensor | None
             ) -> tuple[Tensor, dict[str, Tensor]]:
    """GRU step, gate order r, z, n (as torch.nn.GRU).

        r = sigmoid(x_r + W_hr h + b_hr)    z = sigmoid(x_z + W_hz h + b_hz)
        n = tanh(x_n + r * (W_hn h + b_hn))
        h' = (1 - z) * n + z * h

    The direct path h -> h' is diag(z): z near 1 keeps the old state (and its gradient).
    """
    xr, xz, xn = x_proj.chunk(3, dim=-1)
    hr, hz, hn = _recurrent(h, w_hh, b_hh).chunk(3, dim=-1)
    r = torch.sigmoid(xr + hr)
    z = torch.sigmoid(xz + hz)
    n = torch.tanh(xn + r * hn)
    h_new = n + z * (h - n)
    return h_new, {"r": r, "z": z, "n": n}


# one signature for every cell: step(x_proj, state, w_hh, b_hh) -> (state, gates), with
# state a tuple, (h,) or (h, c), so callers loop over steps without asking which cell
def _rnn_step(xp, state, w_hh, b_hh, nonlinearity="tanh"):
    h, gates = rnn_cell(xp, state[0], w_hh, b_hh, nonlinearity)
    return (h,), gates


def _lstm_step(xp, state, w_hh, b_hh, nonlinearity=None):
    return lstm_cell(xp, state[0], state[1], w_hh, b_hh)


def _gru_step(xp, state, w_hh, b_hh, nonlinearity=None):
    h, gates = gru_cell(xp, state[0], w_hh, b_hh)
    return (h,), gates


_STEPS = {"rnn": _rnn_step, "lstm": _lstm_step, "gru": _gru_step}


def cell_step(cell: str, nonlinearity: str = "tanh") -> Callable:
    """``step(x_proj, state, w_hh, b_hh) -> (state, gates)`` of cell kind ``cell``;
    ``state`` is ``(h,)`` for RNN/GRU and ``(h, c)`` for LSTM."""
    fn = _STEPS[cell_kind(cell).name]
    return lambda xp, state, w_hh, b_hh: fn(xp, state, w_hh, b_hh, nonlinearity)
