"""``RNNBase``: what rnncore.RNN, LSTM and GRU share (parameters, input handling, engines).

Shapes (L layers, D = 2 if bidirectional else 1, H_out = proj_size or hidden_size,
time-major unless ``batch_first``): input (T, B, I) | (B, T, I) | (T, I) unbatched |
PackedSequence; h_0 (L*D, B, H_out) | (L*D, H_out); c_0 (L*D, B, H) | (L*D, H);
output (T, B, D*H_out); h_n, c_n as h_0, c_0.
"""
from __future__ import annotations

import math
import warnings

import torch
import torch.nn.functional as F
from torch import Tensor, _VF, nn
from torch.nn.utils.rnn import PackedSequence

from rnncore.functional import recurrence, schedule
from rnncore.functional.reference import scan as _autograd_scan
from rnncore.functional.projection import projected_recurrence
from rnncore.kinds import cell_kind, check_engine, layer_weights, proj_weight_name, weight_names
from rnncore.layers import checks, jit


class RNNBase(nn.Module):
    """Shared machinery of RNN, LSTM and GRU; subclasses fix ``mode``, ``_torch_cls`` and
    the constructor signature (torch.nn's, plus the keyword ``engine``)."""

    mode = "rnn"
    _torch_cls = nn.RNN

    def __init__(self, input_size: int, hidden_size: int, num_layers: int = 1,
                 bias: bool = True, batch_first: bool = False, dropout: float = 0.0,
                 bidirectional: bool = False, proj_size: int = 0, device=None, dtype=None, *,
                 nonlinearity: str = "tanh", engine: str = "bptt"):
        super().__init__()
        checks.check_layer_args(input_size, hidden_size, num_layers, bias, batch_first,
                                dropout, proj_size)
        self.input_size, self.hidden_size, self.num_layers = input_size, hidden_size, num_layers
        self.bias, self.batch_first, self.dropout = bias, batch_first, float(dropout)
        self.bidirectional, self.nonlinearity = bidirectional, nonlinearity
        self.proj_size = proj_size
        self.engine = check_engine(engine)
        gates = self.kind.gates * hidden_size
        h_out = proj_size or hidden_size
        kw = {"device": device, "dtype": dtype}
        # torch.nn's names and order: per layer and direction w_ih, w_hh[, b_ih, b_hh][, w_hr]
        self._flat_weights_names: list[str] = []
        self._all_weights: list[list[str]] = []
        for layer in range(num_layers):
            layer_input = input_size if layer == 0 else h_out * self.num_directions
            for direction in range(self.num_directions):
                w_ih, w_hh, b_ih, b_hh = weight_names(layer, direction)
                shapes = {w_ih: (gates, layer_input), w_hh: (gates, h_out)}
                if bias:
                    shapes[b_ih] = shapes[b_hh] = (gates,)
                if proj_size:
                    shapes[proj_weight_name(layer, direction)] = (proj_size, hidden_size)
                for name, shape in shapes.items():
                    setattr(self, name, nn.Parameter(torch.empty(shape, **kw)))
                self._flat_weights_names.extend(shapes)
                self._all_weights.append(list(shapes))
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

    @property
    def all_weights(self) -> list[list[nn.Parameter]]:
        """Parameters per layer and direction, in torch.nn's order."""
        return [[getattr(self, n) for n in names] for names in self._all_weights]

    def flatten_parameters(self) -> None:
        """A no-op, as torch.nn's is off cuDNN: every engine reads the Parameters as they are."""

    def reset_parameters(self) -> None:
        stdv = 1.0 / math.sqrt(self.hidden_size)
        for w in self.parameters():
            nn.init.uniform_(w, -stdv, stdv)

    def extra_repr(self) -> str:
        s = f"{self.input_size}, {self.hidden_size}"
        if self.proj_size:
            s += f", proj_size={self.proj_size}"
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

    def __prepare_scriptable__(self) -> nn.Module:
        """What torch.jit.script compiles: torch.nn's layer with these Parameters (jit.py)."""
        kw = {"num_layers": self.num_layers, "bias": self.bias, "batch_first": self.batch_first,
              "dropout": self.dropout, "bidirectional": self.bidirectional}
        if self.mode == "rnn":
            kw["nonlinearity"] = self.nonlinearity
        if self.proj_size:
            kw["proj_size"] = self.proj_size
        return jit.scripted_twin(self, self.input_size, self.hidden_size, **kw)

    # ---------------------------------------------------------------- input handling
    def forward(self, input, hx=None):
        parts = None if hx is None else checks.hx_parts(self, hx)
        packed = isinstance(input, PackedSequence)
        if packed:
            data, batch_sizes, sorted_idx, unsorted_idx = input
            batched = True
        else:
            batched = checks.check_unpacked(self, input, parts)
            if not batched:
                input = input.unsqueeze(1)
            elif self.batch_first:
                input = input.transpose(0, 1)
            data, sorted_idx, unsorted_idx = input, None, None
        checks.check_input(self, data, packed)
        B = int(batch_sizes[0]) if packed else data.size(1)
        hx = self._initial_state(parts, B, batched, data)
        if sorted_idx is not None:
            hx = tuple(h.index_select(1, sorted_idx) for h in hx)
        if not packed:
            checks.check_length(data)

        engine = jit.forward_engine(self)
        if engine == "native":
            out, state = self._native(data, batch_sizes if packed else None, hx)
        else:
            if packed:
                sizes = tuple(int(b) for b in batch_sizes)
                flat = data
            else:
                sizes = (B,) * data.shape[0]
                flat = data.reshape(-1, data.shape[-1])
            out, state = self._layers(flat, sizes, hx, engine)
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

    def _initial_state(self, parts, B, batched, like) -> tuple[Tensor, ...]:
        """(h_0,) or (h_0, c_0) as (L*D, B, .): zeros when not given, else checked."""
        LD = self.num_layers * self.num_directions
        shapes = [(LD, B, self.proj_size or self.hidden_size), (LD, B, self.hidden_size)]
        shapes = shapes[:self.kind.state_parts]
        if parts is None:
            return tuple(like.new_zeros(shape) for shape in shapes)
        if not batched:
            parts = tuple(h.unsqueeze(1) for h in parts)
        checks.check_hidden(parts, shapes)
        return parts

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

    def _layers(self, flat: Tensor, sizes: tuple[int, ...], hx: tuple[Tensor, ...], engine: str):
        """Stacked layers over a flat time-major batch (N, I) -> (N, D*H_out)."""
        h_n, c_n = [], []
        lstm = self.kind.has_cell_state
        x = flat
        for layer in range(self.num_layers):
            outs = []
            for d in range(self.num_directions):
                k = layer * self.num_directions + d
                h0 = hx[0][k]
                c0 = hx[1][k] if lstm else None
                res = self._run(x, sizes, h0, c0, layer, d, engine)
                outs.append(res[0])
                h_n.append(res[1])
                if lstm:
                    c_n.append(res[2])
            x = outs[0] if len(outs) == 1 else torch.cat(outs, dim=1)
            if self.dropout and self.training and layer < self.num_layers - 1:
                x = F.dropout(x, self.dropout, training=True)
        state = (torch.stack(h_n),) + ((torch.stack(c_n),) if lstm else ())
        return x, state

    def _run(self, x, sizes, h0, c0, layer, direction, engine):
        w_ih, w_hh, b_ih, b_hh = layer_weights(self, layer, direction)
        w_hr = getattr(self, proj_weight_name(layer, direction)) if self.proj_size else None
        sched = schedule(sizes, bool(direction))
        tag = (layer, direction)
        if engine == "bptt" and w_hr is not None:
            return projected_recurrence(x, w_ih, b_ih, h0, c0, w_hh, b_hh, w_hr, sched, tag)
        if engine == "bptt":
            return recurrence(self.mode, x, w_ih, b_ih, h0, c0, w_hh, b_hh, sched,
                              self.nonlinearity == "relu", tag=tag)
        return _autograd_scan(self.mode, F.linear(x, w_ih, b_ih), h0, c0, w_hh, b_hh,
                              sched, self.nonlinearity, w_hr)
