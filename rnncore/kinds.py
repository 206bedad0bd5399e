"""The names rnncore is built from, written once: cell kinds, engines, output heads (and
which head "auto" picks), torch.nn's weight names.

A layer of kind ``cell`` with hidden size H keeps, per layer l and direction
(``suffix`` "" forward, "_reverse" backward), torch.nn's parameters::

    weight_ih_l{l}{suffix}  (G*H, I)     weight_hh_l{l}{suffix}  (G*H, H)
    bias_ih_l{l}{suffix}    (G*H,)       bias_hh_l{l}{suffix}    (G*H,)

with G gates stacked in torch's order (``CellKind.gate_names``); an LSTM with
``proj_size`` P adds ``weight_hr_l{l}{suffix}`` (P, H) and its ``weight_hh`` is (4H, P).
Code that needs one of these facts asks this module instead of comparing strings or
guessing from shapes.
"""
from __future__ import annotations

from dataclasses import dataclass

ENGINES = ("bptt", "autograd", "native")
# output heads (``rnncore.heads``)
HEADS = ("full", "adaptive")
# "auto" picks by the vocabulary size (``resolve_head``): the choice of the CLI and the app
HEAD_CHOICES = ("auto", *HEADS)
# at V = 4,953 (the bundled corpus) the adaptive head made a whole LSTM 2 x 256 step 1.94x
# faster (benchmarks/results/20261127-221024-head) and was ahead at equal training time in the
# longer side-by-side runs (benchmarks/README.md, "Default head"); the head's share of a
# step, and so the gain, shrinks with V
AUTO_ADAPTIVE_MIN_VOCAB = 2000
# what new runs of the CLI and the app's Train page use (``ModelConfig.head`` stays "full":
# a checkpoint saved before heads existed has a full softmax)
DEFAULT_HEAD = "auto"


def resolve_head(kind: str, vocab_size: int) -> str:
    """``"auto"`` -> ``"adaptive"`` when ``vocab_size >= AUTO_ADAPTIVE_MIN_VOCAB`` else
    ``"full"``; ``"full"``/``"adaptive"`` as they are."""
    if kind == "auto":
        return "adaptive" if vocab_size >= AUTO_ADAPTIVE_MIN_VOCAB else "full"
    if kind not in HEADS:
        raise ValueError(f"unknown head {kind!r} (choose {', '.join(HEAD_CHOICES)})")
    return kind


@dataclass(frozen=True)
class CellKind:
    """What distinguishes the three cells: gate count G, gate names in torch's row order,
    whether the state carries a cell state c beside h (LSTM), and ``direct_gate``, the gate
    g whose diag(g) is the state's own path from step to step, with no W_hh on it
    (LSTM dc'/dc = diag(f), GRU dh'/dh through the interpolation = diag(z); None for RNN)."""

    name: str
    gate_names: tuple[str, ...]
    has_cell_state: bool = False
    direct_gate: str | None = None

    @property
    def gates(self) -> int:
        return len(self.gate_names)

    @property
    def state_parts(self) -> int:
        """Tensors in the recurrent state: (h, c) for LSTM, (h,) otherwise."""
        return 2 if self.has_cell_state else 1


CELL_KINDS = {
    "rnn": CellKind("rnn", ("a",)),                       # a = pre-activation
    "lstm": CellKind("lstm", ("i", "f", "g", "o"), has_cell_state=True, direct_gate="f"),
    "gru": CellKind("gru", ("r", "z", "n"), direct_gate="z"),
}
CELLS = tuple(CELL_KINDS)
GATES = {name: kind.gates for name, kind in CELL_KINDS.items()}


def cell_kind(name: str) -> CellKind:
    """The ``CellKind`` called ``name``; an unknown name is a ``ValueError``."""
    try:
        return CELL_KINDS[name]
    except (KeyError, TypeError):
        raise ValueError(f"unknown cell {name!r} (choose from {', '.join(CELLS)})") from None


def check_engine(name: str) -> str:
    if name not in ENGINES:
        raise ValueError(f"unknown engine {name!r} (choose from {', '.join(ENGINES)})")
    return name


def _suffix(layer: int, direction: int) -> str:
    return f"_l{layer}" + ("_reverse" if direction else "")


def weight_names(layer: int, direction: int = 0) -> tuple[str, str, str, str]:
    """torch.nn's (weight_ih, weight_hh, bias_ih, bias_hh) names of one layer/direction."""
    suffix = _suffix(layer, direction)
    return (f"weight_ih{suffix}", f"weight_hh{suffix}", f"bias_ih{suffix}", f"bias_hh{suffix}")


def proj_weight_name(layer: int, direction: int = 0) -> str:
    """torch.nn.LSTM's name of the projection W_hr of one layer/direction (proj_size > 0)."""
    return f"weight_hr{_suffix(layer, direction)}"


def layer_weights(rnn, layer: int, direction: int = 0) -> tuple:
    """(w_ih, w_hh, b_ih, b_hh) of one layer/direction of a torch.nn or rnncore layer;
    biases are None when the layer has none."""
    return tuple(getattr(rnn, name, None) for name in weight_names(layer, direction))


def cell_of(layer) -> str:
    """The cell kind of a recurrent layer (torch.nn or rnncore), or of a model holding one
    as ``.rnn``: ``mode`` as torch.nn names it ("LSTM", "GRU", "RNN_TANH", "RNN_RELU")."""
    layer = getattr(layer, "rnn", layer)
    mode = str(getattr(layer, "mode", "")).lower()
    if mode.startswith("rnn"):
        return "rnn"
    return cell_kind(mode).name
