"""rnncore.RNN, LSTM and GRU: torch.nn's constructor signatures, plus the keyword ``engine``."""
from __future__ import annotations

from torch import nn

from rnncore.layers.base import RNNBase
from rnncore.layers.checks import check_nonlinearity


class RNN(RNNBase):
    r"""Elman RNN: :math:`h_t = \tanh(W_{ih} x_t + b_{ih} + W_{hh} h_{t-1} + b_{hh})`
    (or ReLU). Arguments as :class:`torch.nn.RNN`, plus ``engine``."""

    mode = "rnn"
    _torch_cls = nn.RNN

    def __init__(self, input_size: int, hidden_size: int, num_layers: int = 1,
                 nonlinearity: str = "tanh", bias: bool = True, batch_first: bool = False,
                 dropout: float = 0.0, bidirectional: bool = False, device=None, dtype=None, *,
                 engine: str = "bptt"):
        check_nonlinearity(nonlinearity)
        super().__init__(input_size, hidden_size, num_layers, bias, batch_first, dropout,
                         bidirectional, 0, device, dtype, nonlinearity=nonlinearity,
                         engine=engine)


class LSTM(RNNBase):
    r"""LSTM with torch's gate order i, f, g, o:

    .. math::
        i,f,o = \sigma(W_{i\cdot} x_t + b_{i\cdot} + W_{h\cdot} h_{t-1} + b_{h\cdot}),\;
        g = \tanh(\dots),\; c_t = f c_{t-1} + i g,\; h_t = o \tanh(c_t)

    With ``proj_size`` P > 0, :math:`h_t = W_{hr} (o \tanh(c_t))`, W_hr (P, H) per layer
    and direction (``weight_hr_l{k}[_reverse]``): h_0, h_n are (L*D, B, P), c_0, c_n stay
    (L*D, B, H) and the output is (T, B, D*P). Returns ``output, (h_n, c_n)``. Arguments as
    :class:`torch.nn.LSTM`, plus ``engine``."""

    mode = "lstm"
    _torch_cls = nn.LSTM

    def __init__(self, input_size: int, hidden_size: int, num_layers: int = 1,
                 bias: bool = True, batch_first: bool = False, dropout: float = 0.0,
                 bidirectional: bool = False, proj_size: int = 0, device=None, dtype=None, *,
                 engine: str = "bptt"):
        super().__init__(input_size, hidden_size, num_layers, bias, batch_first, dropout,
                         bidirectional, proj_size, device, dtype, engine=engine)


class GRU(RNNBase):
    r"""GRU with torch's gate order r, z, n:

    .. math::
        r,z = \sigma(\dots),\; n = \tanh(W_{in} x_t + b_{in} + r (W_{hn} h_{t-1} + b_{hn})),\;
        h_t = (1 - z) n + z h_{t-1}

    Arguments as :class:`torch.nn.GRU`, plus ``engine``."""

    mode = "gru"
    _torch_cls = nn.GRU

    def __init__(self, input_size: int, hidden_size: int, num_layers: int = 1,
                 bias: bool = True, batch_first: bool = False, dropout: float = 0.0,
                 bidirectional: bool = False, device=None, dtype=None, *,
                 engine: str = "bptt"):
        super().__init__(input_size, hidden_size, num_layers, bias, batch_first, dropout,
                         bidirectional, 0, device, dtype, engine=engine)
