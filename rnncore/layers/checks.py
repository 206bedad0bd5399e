"""torch.nn's argument and shape checks for the recurrent layers and cells, in torch's
order, with torch's exception types and messages, so code that catches or matches
torch's errors works unchanged.

rnncore's contract is that a user error is a ``ValueError``. Where torch raises a
``RuntimeError`` (a shape) or a ``TypeError`` (a type), ours is both: ``ShapeError`` and
``ArgTypeError`` derive from ValueError and from torch's class.
"""
from __future__ import annotations

import warnings

import torch
from torch import Tensor


class ShapeError(ValueError, RuntimeError):
    """A tensor or size of the wrong shape (torch.nn raises RuntimeError)."""


class ArgTypeError(ValueError, TypeError):
    """An argument of the wrong type (torch.nn raises TypeError)."""


def _check_int(name: str, value) -> None:
    # a bool is an int to Python (and to torch): refused, True is no size
    if not isinstance(value, int) or isinstance(value, bool):
        raise ArgTypeError(f"{name} should be of type int, got: {type(value).__name__}")


def check_nonlinearity(nonlinearity) -> None:
    if nonlinearity not in ("tanh", "relu"):
        raise ValueError(f"Unknown nonlinearity '{nonlinearity}'. Select from 'tanh' or 'relu'.")


def check_layer_args(input_size, hidden_size, num_layers, bias, batch_first, dropout,
                     proj_size) -> None:
    """torch.nn.RNNBase's constructor checks, plus the types of num_layers and proj_size
    (which torch leaves to a TypeError from deeper down)."""
    if not isinstance(dropout, (int, float)) or isinstance(dropout, bool) \
            or not 0 <= dropout <= 1:
        raise ValueError("dropout should be a number in range [0, 1] representing the "
                         "probability of an element being zeroed")
    if dropout > 0 and num_layers == 1:
        warnings.warn("dropout option adds dropout after all but last recurrent layer, "
                      f"so non-zero dropout expects num_layers greater than 1, but got "
                      f"dropout={dropout} and num_layers={num_layers}", stacklevel=4)
    for name, value in (("bias", bias), ("batch_first", batch_first)):
        if not isinstance(value, bool):
            raise ArgTypeError(f"{name} should be of type bool, got: {type(value).__name__}")
    for name, value in (("input_size", input_size), ("hidden_size", hidden_size),
                        ("num_layers", num_layers)):
        _check_int(name, value)
        if value <= 0:
            raise ValueError(f"{name} must be greater than zero")
    _check_int("proj_size", proj_size)
    if proj_size < 0:
        raise ValueError("proj_size should be a positive integer or zero to disable projections")
    if proj_size >= hidden_size:
        raise ValueError("proj_size has to be smaller than hidden_size")


def check_cell_args(input_size, hidden_size) -> None:
    """Cell sizes: ints, zero allowed (as torch.nn's cells, which check nothing and let
    torch.empty refuse a negative size with a RuntimeError)."""
    for name, value in (("input_size", input_size), ("hidden_size", hidden_size)):
        _check_int(name, value)
        if value < 0:
            raise ShapeError(f"{name} must not be negative, got {value}")


# ------------------------------------------------------------------------------- layers
def hx_parts(layer, hx) -> tuple[Tensor, ...]:
    """The initial state as a tuple: (h_0, c_0) for LSTM, (h_0,) otherwise."""
    if layer.kind.has_cell_state:
        if not isinstance(hx, (tuple, list)) or len(hx) != 2:
            raise ValueError("hx must be a tuple (h_0, c_0) for LSTM")
        return tuple(hx)
    if not isinstance(hx, Tensor):
        raise ValueError(f"hx must be a Tensor for {type(layer).__name__}")
    return (hx,)


def check_unpacked(layer, input: Tensor, parts) -> bool:
    """Dimensions of a padded (not packed) input and of hx; returns whether it is batched."""
    name = layer.kind.name.upper()
    if input.dim() not in (2, 3):
        what = " tensor" if name == "RNN" else ""     # torch's RNN says "tensor", LSTM/GRU not
        raise ValueError(f"{name}: Expected input to be 2D or 3D, got {input.dim()}D{what} "
                         "instead")
    batched = input.dim() == 3
    want = 3 if batched else 2
    if parts is not None and any(h.dim() != want for h in parts):
        which = "batched 3-D" if batched else "unbatched 2-D"
        if len(parts) == 2:
            raise ShapeError(f"For {which} input, hx and cx should also be {want}-D but got "
                             f"({parts[0].dim()}-D, {parts[1].dim()}-D) tensors")
        raise ShapeError(f"For {which} input, hx should also be {want}-D but got "
                         f"{parts[0].dim()}-D tensor")
    return batched


def check_input(layer, data: Tensor, packed: bool) -> None:
    """The time-major input (T, B, I), or a PackedSequence's data (N, I)."""
    weight = getattr(layer, layer._flat_weights_names[0])
    if data.dtype != weight.dtype and not torch._C._is_any_autocast_enabled():
        raise ValueError(f"RNN input dtype ({data.dtype}) does not match weight dtype "
                         f"({weight.dtype}). Convert input: input.to({weight.dtype}), or "
                         f"convert model: model.to({data.dtype})")
    want = 2 if packed else 3
    if data.dim() != want:
        raise ShapeError(f"input must have {want} dimensions, got {data.dim()}")
    if data.size(-1) != layer.input_size:
        raise ShapeError(f"input.size(-1) must be equal to input_size. "
                         f"Expected {layer.input_size}, got {data.size(-1)}")


def check_hidden(parts: tuple[Tensor, ...], shapes: list[tuple[int, int, int]]) -> None:
    """h_0 (and c_0) against their expected (L*D, B, H_out) shapes."""
    for k, (h, want, state) in enumerate(zip(parts, shapes, ("h_0", "c_0"))):
        if tuple(h.size()) != want:
            label = f"hidden[{k}] size" if len(parts) == 2 else "hidden size"
            raise ShapeError(f"Expected {label} {want}, got {list(h.shape)} ({state})")


def check_length(data: Tensor) -> None:
    if data.size(0) == 0:
        raise ShapeError("Expected sequence length to be larger than 0 in RNN")


# -------------------------------------------------------------------------------- cells
def cell_input(cell, input: Tensor, hx, n_states: int):
    """A cell's input and state as batched (B, I) and (B, H) tensors, checked as torch.nn's
    cell and its kernel check them. Returns (x, states, batched)."""
    name = cell._torch_cls.__name__
    if input.dim() not in (1, 2):
        raise ValueError(f"{name}: Expected input to be 1D or 2D, got {input.dim()}D instead")
    parts = None if hx is None else (tuple(hx) if n_states == 2 else (hx,))
    for k, h in enumerate(parts or ()):
        if h.dim() not in (1, 2):
            which = f"hx[{k}]" if n_states == 2 else "hidden"
            raise ValueError(f"{name}: Expected {which} to be 1D or 2D, got {h.dim()}D instead")
    batched = input.dim() == 2
    x = input if batched else input.unsqueeze(0)
    if parts is None:
        parts = tuple(x.new_zeros(x.size(0), cell.hidden_size) for _ in range(n_states))
    elif not batched:
        parts = tuple(h.unsqueeze(0) for h in parts)
    if x.size(1) != cell.input_size:
        raise ShapeError(f"input has inconsistent input_size: got {x.size(1)} "
                         f"expected {cell.input_size}")
    for k, h in enumerate(parts):
        if h.size(0) != x.size(0):
            raise ShapeError(f"Input batch size {x.size(0)} doesn't match hidden{k} batch "
                             f"size {h.size(0)}")
        if h.size(1) != cell.hidden_size:
            raise ShapeError(f"hidden{k} has inconsistent hidden_size: got {h.size(1)}, "
                             f"expected {cell.hidden_size}")
        if h.dim() != 2:    # a 2-D state with an unbatched input that passed the above
            raise ShapeError(f"hx must have shape ({cell.hidden_size},) for an unbatched "
                             f"input, got {tuple(h.size()[1:])}")
    return x, parts, batched
