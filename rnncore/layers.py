"""Recurrent layers that are drop-in replacements for ``torch.nn.RNN / LSTM / GRU``.

Same constructor arguments, parameter names (``weight_ih_l0``, ``bias_hh_l1_reverse``, ...),
gate order (LSTM i,f,g,o; GRU r,z,n), initialisation (U(-1/sqrt(H), 1/sqrt(H))) and
``forward(input, hx=None)`` returns, so state dicts move both ways. One extra argument,
``engine``, picks how the sequence is computed:

- ``"bptt"``    our hand-derived forward/backward through time (functional.py);
- ``"autograd"`` a Python loop over cell steps (cells.py) that autograd differentiates:
                 the reference the tests and the app compare against;
- ``"native"``  torch's own kernels (oneDNN on CPU, cuDNN on CUDA), for comparison.

Shapes (L layers, D = 2 if bidirectional else 1, time-major unless ``batch_first``):
input (T, B, I) | (B, T, I) | (T, I) unbatched | PackedSequence;
h_0, c_0 (L*D, B, H) | (L*D, H); output (T, B, D*H); h_n, c_n (L*D, B, H).
"""
from __future__ import annotations

import math
import warnings

import torch
import torch.nn.functional as F
from torch import Tensor, _VF, nn
from torch.nn.utils.rnn import PackedSequence

from rnncore import cells
from rnncore.functional import recurrence, schedule
from rnncore.functional.reference import scan as _autograd_scan
from rnncore.kinds import ENGINES, cell_kind, check_engine, layer_weights, weight_names  # noqa: F401


class RNNBase(nn.Module):
    """Shared machinery of RNN, LSTM and GRU; subclasses only fix ``mode``."""

    mode = "rnn"

    def __init__(self, input_size: int, hidden_size: int, num_layers: int = 1,
                 bias: bool = True, batch_first: bool = False, dropout: float = 0.0,
                 bidirectional: bool = False, nonlinearity: str = "tanh",
                 engine: str = "bptt", device=None, dtype=None):
        super().__init__()
        for name, value in (("input_size", input_size), ("hidden_size", hidden_size),
                            ("num_layers", num_layers)):
            if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        if not isinstance(dropout, (int, float)) or isinstance(dropout, bool) \
                or not 0 <= dropout <= 1:
            raise ValueError(f"dropout must be a number in [0, 1], got {dropout!r}")
        if nonlinearity not in ("tanh", "relu"):
            raise ValueError(f"nonlinearity must be 'tanh' or 'relu', got {nonlinearity!r}")
        if dropout > 0 and num_layers == 1:
            warnings.warn("dropout option adds dropout after all but last recurrent layer, "
                          f"so non-zero dropout expects num_layers greater than 1, but got "
                          f"dropout={dropout} and num_layers={num_layers}")
        self.input_size, self.hidden_size, self.num_layers = input_size, hidden_size, num_layers
        self.bias, self.batch_first, self.dropout = bias, batch_first, float(dropout)
        self.bidirectional, self.nonlinearity = bidirectional, nonlinearity
        self.proj_size = 0
        self.engine = check_engine(engine)
        gates = self.kind.gates * hidden_size
        kw = {"device": device, "dtype": dtype}
        self._flat_weights_names: list[str] = []
        for layer in range(num_layers):
            layer_input = input_size if layer == 0 else hidden_size * self.num_directions
            for direction in range(self.num_directions):
                w_ih, w_hh, b_ih, b_hh = weight_names(layer, direction)
                shapes = {w_ih: (gates, layer_input), w_hh: (gates, hidden_size)}
                if bias:
                    shapes[b_ih] = shapes[b_hh] = (gates,)
                for name, shape in shapes.items():
                    setattr(self, name, nn.Parameter(torch.empty(shape, **kw)))
                    self._flat_weights_names.append(name)
        self.reset_parameters()

    @property
    def kind(self):
        """This layer's ``kinds.CellKind`` (gate count, gate names, state parts)."""
        return cell_kind(self.mode)

    @property
    def num_directions(self) -> int:
        return 2 if self.bidirectional else 1

    @property
    def _flat_weights(self) -> list[Tensor]:
        return [getattr(self, n) for n in self._flat_weights_names]

    def reset_parameters(self) -> None:
        stdv = 1.0 / math.sqrt(self.hidden_size)
        for w in self.parameters():
            nn.init.uniform_(w, -stdv, stdv)

    def extra_repr(self) -> str:
        s = f"{self.input_size}, {self.hidden_size}"
        if self.num_layers != 1:
            s += f", num_layers={self.num_layers}"
        if self.mode == "rnn" and self.nonlinearity != "tanh":
            s += f", nonlinearity={self.nonlinearity!r}"
        for name, default in (("bias", True), ("batch_first", False), ("dropout", 0.0),
                              ("bidirectional", False)):
            if getattr(self, name) != default:
                s += f", {name}={getattr(self, name)}"
        return s + f", engine={self.engine!r}"

    def __setattr__(self, name, value):
        if name == "engine":
            check_engine(value)
        super().__setattr__(name, value)

    # ---------------------------------------------------------------- input handling
    def forward(self, input, hx=None):
        packed = isinstance(input, PackedSequence)
        if packed:
            data, batch_sizes, sorted_idx, unsorted_idx = input
            B = int(batch_sizes[0])
            batched = True
        else:
            if input.dim() not in (2, 3):
                raise ValueError(f"input must be 2-D (unbatched) or 3-D, got {input.dim()}-D")
            batched = input.dim() == 3
            if not batched:
                input = input.unsqueeze(1)
            elif self.batch_first:
                input = input.transpose(0, 1)
            data, sorted_idx, unsorted_idx = input, None, None
            B = input.shape[1]
        if data.shape[-1] != self.input_size:
            raise ValueError(f"input.size(-1) must be equal to input_size. "
                             f"Expected {self.input_size}, got {data.shape[-1]}")
        hx = self._check_hx(hx, B, batched, data)
        if sorted_idx is not None:
            hx = tuple(h.index_select(1, sorted_idx) for h in hx)

        if self.engine == "native":
            out, state = self._native(data, batch_sizes if packed else None, hx)
        else:
            if packed:
                sizes = tuple(int(b) for b in batch_sizes)
                flat = data
            else:
                sizes = (B,) * data.shape[0]
                flat = data.reshape(-1, data.shape[-1])
            out, state = self._layers(flat, sizes, hx)
            if not packed:
                out = out.view(data.shape[0], B, out.shape[-1])   # -1 is ambiguous for B = 0

        if unsorted_idx is not None:
            state = tuple(h.index_select(1, unsorted_idx) for h in state)
        if packed:
            output = PackedSequence(out, batch_sizes, sorted_idx, unsorted_idx)
        else:
            output = out
            if not batched:
                output = out.squeeze(1)
                state = tuple(h.squeeze(1) for h in state)
            elif self.batch_first:
                output = out.transpose(0, 1)
        return output, (state if self.kind.has_cell_state else state[0])

    def _check_hx(self, hx, B, batched, like) -> tuple[Tensor, ...]:
        shape = (self.num_layers * self.num_directions, B, self.hidden_size)
        if hx is None:
            return tuple(like.new_zeros(shape) for _ in range(self.kind.state_parts))
        if self.kind.has_cell_state:
            if not isinstance(hx, (tuple, list)) or len(hx) != 2:
                raise ValueError("hx must be a tuple (h_0, c_0) for LSTM")
            hx = tuple(hx)
        else:
            if not isinstance(hx, Tensor):
                raise ValueError(f"hx must be a Tensor for {type(self).__name__}")
            hx = (hx,)
        out = []
        for name, h in zip(("h_0", "c_0"), hx):
            want = shape if batched else (shape[0], shape[2])
            if tuple(h.shape) != want:
                raise ValueError(f"hx ({name}) must have shape {tuple(want)}, "
                                 f"got {tuple(h.shape)}")
            out.append(h if batched else h.unsqueeze(1))
        return tuple(out)

    # ---------------------------------------------------------------- engines
    def _native(self, data, batch_sizes, hx):
        args = (self._flat_weights, self.bias, self.num_layers, self.dropout, self.training,
                self.bidirectional)
        fn = {"lstm": _VF.lstm, "gru": _VF.gru,
              "rnn": _VF.rnn_tanh if self.nonlinearity == "tanh" else _VF.rnn_relu}[self.mode]
        h = hx if self.kind.has_cell_state else hx[0]
        with warnings.catch_warnings():
            # cuDNN asks for one contiguous weight buffer; separate Parameters still work.
            warnings.filterwarnings("ignore", message=".*contiguous chunk of memory.*")
            if batch_sizes is not None:
                res = fn(data, batch_sizes, h, *args)
            else:
                res = fn(data, h, *args, False)
        return res[0], tuple(res[1:])

    def _layers(self, flat: Tensor, sizes: tuple[int, ...], hx: tuple[Tensor, ...]):
        """Stacked layers over a flat time-major batch (N, I) -> (N, D*H)."""
        h_n, c_n = [], []
        lstm = self.kind.has_cell_state
        x = flat
        for layer in range(self.num_layers):
            outs = []
            for d in range(self.num_directions):
                k = layer * self.num_directions + d
                h0 = hx[0][k]
                c0 = hx[1][k] if lstm else None
                res = self._run(x, sizes, h0, c0, layer, d)
                outs.append(res[0])
                h_n.append(res[1])
                if lstm:
                    c_n.append(res[2])
            x = outs[0] if len(outs) == 1 else torch.cat(outs, dim=1)
            if self.dropout and self.training and layer < self.num_layers - 1:
                x = F.dropout(x, self.dropout, training=True)
        state = (torch.stack(h_n),) + ((torch.stack(c_n),) if lstm else ())
        return x, state

    def _run(self, x, sizes, h0, c0, layer, direction):
        w_ih, w_hh, b_ih, b_hh = layer_weights(self, layer, direction)
        sched = schedule(sizes, bool(direction))
        relu = self.nonlinearity == "relu"
        if self.engine == "bptt":
            return recurrence(self.mode, x, w_ih, b_ih, h0, c0, w_hh, b_hh, sched, relu,
                              tag=(layer, direction))
        return _autograd_scan(self.mode, F.linear(x, w_ih, b_ih), h0, c0, w_hh, b_hh,
                              sched, self.nonlinearity)


class RNN(RNNBase):
    r"""Elman RNN: :math:`h_t = \tanh(W_{ih} x_t + b_{ih} + W_{hh} h_{t-1} + b_{hh})`
    (or ReLU). Arguments as :class:`torch.nn.RNN`, plus ``engine``."""

    mode = "rnn"


class LSTM(RNNBase):
    r"""LSTM with torch's gate order i, f, g, o:

    .. math::
        i,f,o = \sigma(W_{i\cdot} x_t + b_{i\cdot} + W_{h\cdot} h_{t-1} + b_{h\cdot}),\;
        g = \tanh(\dots),\; c_t = f c_{t-1} + i g,\; h_t = o \tanh(c_t)

    Returns ``output, (h_n, c_n)``. Arguments as :class:`torch.nn.LSTM` (``proj_size`` is
    not supported), plus ``engine``."""

    mode = "lstm"

    def __init__(self, *args, proj_size: int = 0, **kwargs):
        if proj_size:
            raise ValueError("proj_size is not supported by rnncore.LSTM; use proj_size=0")
        kwargs.pop("nonlinearity", None)
        super().__init__(*args, **kwargs)


class GRU(RNNBase):
    r"""GRU with torch's gate order r, z, n:

    .. math::
        r,z = \sigma(\dots),\; n = \tanh(W_{in} x_t + b_{in} + r (W_{hn} h_{t-1} + b_{hn})),\;
        h_t = (1 - z) n + z h_{t-1}

    Arguments as :class:`torch.nn.GRU`, plus ``engine``."""

    mode = "gru"

    def __init__(self, *args, **kwargs):
        kwargs.pop("nonlinearity", None)
        super().__init__(*args, **kwargs)


# ------------------------------------------------------------------------------- cells
class _CellBase(nn.Module):
    mode = "rnn"

    def __init__(self, input_size: int, hidden_size: int, bias: bool = True,
                 nonlinearity: str = "tanh", device=None, dtype=None):
        super().__init__()
        for name, value in (("input_size", input_size), ("hidden_size", hidden_size)):
            if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        if nonlinearity not in ("tanh", "relu"):
            raise ValueError(f"nonlinearity must be 'tanh' or 'relu', got {nonlinearity!r}")
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
        stdv = 1.0 / math.sqrt(hidden_size)
        for w in self.parameters():
            nn.init.uniform_(w, -stdv, stdv)

    def extra_repr(self) -> str:
        return f"{self.input_size}, {self.hidden_size}, bias={self.bias}"

    def _prepare(self, input: Tensor, hx, n_states: int):
        if input.dim() not in (1, 2):
            raise ValueError(f"input must be 1-D (unbatched) or 2-D, got {input.dim()}-D")
        if input.shape[-1] != self.input_size:
            raise ValueError(f"input.size(-1) must be equal to input_size. "
                             f"Expected {self.input_size}, got {input.shape[-1]}")
        batched = input.dim() == 2
        x = input if batched else input.unsqueeze(0)
        if hx is None:
            states = tuple(x.new_zeros(x.shape[0], self.hidden_size) for _ in range(n_states))
        else:
            states = tuple(hx) if n_states == 2 else (hx,)
            want = (x.shape[0], self.hidden_size) if batched else (self.hidden_size,)
            for h in states:
                if tuple(h.shape) != want:
                    raise ValueError(f"hx must have shape {want}, got {tuple(h.shape)}")
            states = tuple(h if batched else h.unsqueeze(0) for h in states)
        return x, states, batched

    def _finish(self, states, batched):
        states = tuple(s if batched else s.squeeze(0) for s in states)
        return states if len(states) == 2 else states[0]


class RNNCell(_CellBase):
    """One step of :class:`RNN`; arguments as :class:`torch.nn.RNNCell`."""

    mode = "rnn"

    def forward(self, input: Tensor, hx: Tensor | None = None) -> Tensor:
        x, (h,), batched = self._prepare(input, hx, 1)
        h, _ = cells.rnn_cell(F.linear(x, self.weight_ih, self.bias_ih), h, self.weight_hh,
                              self.bias_hh, self.nonlinearity)
        return self._finish((h,), batched)


class LSTMCell(_CellBase):
    """One step of :class:`LSTM`; returns ``(h', c')`` as :class:`torch.nn.LSTMCell`."""

    mode = "lstm"

    def __init__(self, input_size, hidden_size, bias=True, device=None, dtype=None):
        super().__init__(input_size, hidden_size, bias, device=device, dtype=dtype)

    def forward(self, input: Tensor, hx=None):
        x, (h, c), batched = self._prepare(input, hx, 2)
        (h, c), _ = cells.lstm_cell(F.linear(x, self.weight_ih, self.bias_ih), h, c,
                                    self.weight_hh, self.bias_hh)
        return self._finish((h, c), batched)


class GRUCell(_CellBase):
    """One step of :class:`GRU`; arguments as :class:`torch.nn.GRUCell`."""

    mode = "gru"

    def __init__(self, input_size, hidden_size, bias=True, device=None, dtype=None):
        super().__init__(input_size, hidden_size, bias, device=device, dtype=dtype)

    def forward(self, input: Tensor, hx: Tensor | None = None) -> Tensor:
        x, (h,), batched = self._prepare(input, hx, 1)
        h, _ = cells.gru_cell(F.linear(x, self.weight_ih, self.bias_ih), h, self.weight_hh,
                              self.bias_hh)
        return self._finish((h,), batched)
