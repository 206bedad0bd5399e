"""rnncore.RNNCell, LSTMCell and GRUCell: one step of the layers, as torch.nn's cells.

input (B, I) | (I,) unbatched; h, c (B, H) | (H,); returns h' (or ``(h', c')``) alike.
The step is cells.py's, differentiated by autograd; there is no engine to choose.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from rnncore import cells
from rnncore.kinds import cell_kind
from rnncore.layers import checks, jit


class _CellBase(nn.Module):
    mode = "rnn"
    _torch_cls = nn.RNNCell

    def __init__(self, input_size: int, hidden_size: int, bias: bool = True,
                 nonlinearity: str = "tanh", device=None, dtype=None):
        super().__init__()
        checks.check_cell_args(input_size, hidden_size)
        checks.check_nonlinearity(nonlinearity)
        self.input_size, self.hidden_size, self.bias = input_size, hidden_size, bias
        self.nonlinearity = nonlinearity
        gates = cell_kind(self.mode).gates * hidden_size
        kw = {"device": device, "dtype": dtype}
        self.weight_ih = nn.Parameter(torch.empty(gates, input_size, **kw))
        self.weight_hh = nn.Parameter(torch.empty(gates, hidden_size, **kw))
        if bias:
            self.bias_ih = nn.Parameter(torch.empty(gates, **kw))
            self.bias_hh = nn.Parameter(torch.empty(gates, **kw))
        else:
            self.register_parameter("bias_ih", None)
            self.register_parameter("bias_hh", None)
        stdv = 1.0 / math.sqrt(hidden_size) if hidden_size > 0 else 0
        for w in self.parameters():
            nn.init.uniform_(w, -stdv, stdv)

    def extra_repr(self) -> str:
        return f"{self.input_size}, {self.hidden_size}, bias={self.bias}"

    def __prepare_scriptable__(self) -> nn.Module:
        """What torch.jit.script compiles: torch.nn's cell with these Parameters (jit.py)."""
        extra = (self.nonlinearity,) if self.mode == "rnn" else ()
        return jit.torch_twin(self, self.input_size, self.hidden_size, self.bias, *extra)

    def forward(self, input: Tensor, hx=None):
        """h' (RNN, GRU) or (h', c') (LSTM) from input (B, I) | (I,) and hx (B, H) | (H,)."""
        kind = cell_kind(self.mode)
        x, state, batched = checks.cell_input(self, input, hx, kind.state_parts)
        step = cells.cell_step(self.mode, self.nonlinearity)
        state, _ = step(F.linear(x, self.weight_ih, self.bias_ih), state, self.weight_hh,
                        self.bias_hh)
        state = tuple(s if batched else s.squeeze(0) for s in state)
        return state if kind.has_cell_state else state[0]


class RNNCell(_CellBase):
    """One step of :class:`RNN`; arguments as :class:`torch.nn.RNNCell`."""

    mode = "rnn"
    _torch_cls = nn.RNNCell


class LSTMCell(_CellBase):
    """One step of :class:`LSTM`; returns ``(h', c')`` as :class:`torch.nn.LSTMCell`."""

    mode = "lstm"
    _torch_cls = nn.LSTMCell

    def __init__(self, input_size: int, hidden_size: int, bias: bool = True, device=None,
                 dtype=None):
        super().__init__(input_size, hidden_size, bias, device=device, dtype=dtype)


class GRUCell(_CellBase):
    """One step of :class:`GRU`; arguments as :class:`torch.nn.GRUCell`."""

    mode = "gru"
    _torch_cls = nn.GRUCell

    def __init__(self, input_size: int, hidden_size: int, bias: bool = True, device=None,
                 dtype=None):
        super().__init__(input_size, hidden_size, bias, device=device, dtype=dtype)
