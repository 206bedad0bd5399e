"""The character-level language model: embedding -> rnncore recurrent layer -> output head.

Shapes (batch first): tokens (B, T) long -> embeddings (B, T, E) -> rnn outputs (B, T, H)
-> logits (B, T, V), with log_softmax(logits) the exact log-distribution (``rnncore.heads``:
the full softmax's logits, or the adaptive softmax's log-probabilities themselves).
``state`` is ``h`` (L, B, H) for ``rnn``/``gru`` and ``(h, c)`` for ``lstm``. Teacher
forcing is ``forward`` on the true inputs; generation calls ``step`` one token at a time
with the carried state.

Loss on a batch: ``cross_entropy(logits.reshape(-1, V), targets.reshape(-1),
ignore_index=-100)`` = mean over real positions of ``-log softmax(logits)[target]``.
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from rnncore.configs import DictConfig
from rnncore.data import Vocab
from rnncore.heads import HEAD_CHOICES, head_shapes, make_head
from rnncore.kinds import (CELLS, ENGINES, cell_kind, check_engine,  # noqa: F401 (CELLS, ENGINES re-exported)
                           weight_names)

State = Tensor | tuple[Tensor, Tensor]
# Training holds about 7 float32 copies of the weights (weights, gradients, Adam's two
# moments, the non-finite guard's snapshot of weights and moments): 500M parameters is
# ~14 GB, what a 24 GB machine can hold beside the activations.
MAX_PARAMETERS = 500_000_000
MAX_LAYERS = 64


class ModelConfigError(ValueError):
    """An invalid model setting (one-line message)."""


@dataclass
class ModelConfig(DictConfig):
    """Architecture of a ``CharRNN``; ``engine`` only picks how BPTT is computed.
    ``head`` is "full", "adaptive" or "auto" (``rnncore.heads``: adaptive from
    ``AUTO_ADAPTIVE_MIN_VOCAB`` characters on; the trainer saves the resolved name); the
    default stays "full", which a checkpoint without the field means. ``head_cutoffs`` and
    ``head_div_value`` only matter for "adaptive" (``heads.clamp_cutoffs`` fits them to V)."""

    config_error = ModelConfigError

    cell: str = "lstm"
    vocab_size: int = 0
    embedding_dim: int = 128
    hidden_size: int = 256
    num_layers: int = 2
    dropout: float = 0.0
    engine: str = "bptt"
    head: str = "full"
    head_cutoffs: tuple[int, ...] = (1000, 3000)
    head_div_value: float = 4.0

    def __post_init__(self) -> None:
        try:
            cell_kind(self.cell)
            check_engine(self.engine)
        except ValueError as err:
            raise ModelConfigError(str(err)) from None
        for name in ("vocab_size", "embedding_dim", "hidden_size", "num_layers"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
                raise ModelConfigError(f"{name} must be a positive integer, got {value!r}")
        if self.vocab_size <= Vocab.eos_id:
            raise ModelConfigError(
                f"vocab_size must exceed the 4 special tokens, got {self.vocab_size}")
        if not 0.0 <= float(self.dropout) < 1.0:
            raise ModelConfigError(f"dropout must be in [0, 1), got {self.dropout}")
        if self.head not in HEAD_CHOICES:
            raise ModelConfigError(f"head must be one of {', '.join(HEAD_CHOICES)}, "
                                   f"got {self.head!r}")
        cuts = self.head_cutoffs
        if (not isinstance(cuts, (list, tuple)) or not all(
                isinstance(c, int) and not isinstance(c, bool) for c in cuts)
                or not cuts or cuts[0] <= Vocab.eos_id
                or any(a >= b for a, b in zip(cuts, cuts[1:]))):
            raise ModelConfigError("head_cutoffs must be increasing integers past the special "
                                   f"tokens, got {cuts!r}")
        self.head_cutoffs = tuple(cuts)  # JSON gives a list back
        if not float(self.head_div_value) >= 1.0:
            raise ModelConfigError(f"head_div_value must be >= 1, got {self.head_div_value}")
        if self.num_layers > MAX_LAYERS:
            raise ModelConfigError(f"num_layers must be at most {MAX_LAYERS}, got "
                                   f"{self.num_layers}")
        count = sum(math.prod(shape) for shape in parameter_shapes(self).values())
        if count > MAX_PARAMETERS:
            raise ModelConfigError(
                f"the model would have {count:,} parameters ({count * 4 / 2**30:.1f} GB of "
                f"float32 weights); at most {MAX_PARAMETERS:,} (reduce hidden_size, "
                f"num_layers, embedding_dim or the vocabulary)")


def parameter_shapes(cfg: ModelConfig) -> dict[str, tuple[int, ...]]:
    """The shape of every tensor in a ``CharRNN(cfg)``'s state dict, computed without
    building it (a checkpoint's tensors are checked against these before any allocation)."""
    G, H, E, V = cell_kind(cfg.cell).gates, cfg.hidden_size, cfg.embedding_dim, cfg.vocab_size
    shapes = {"embedding.weight": (V, E)}
    for layer in range(cfg.num_layers):
        w_ih, w_hh, b_ih, b_hh = weight_names(layer)
        shapes.update({f"rnn.{w_ih}": (G * H, E if layer == 0 else H),
                       f"rnn.{w_hh}": (G * H, H), f"rnn.{b_ih}": (G * H,),
                       f"rnn.{b_hh}": (G * H,)})
    head = head_shapes(cfg.head, H, V, cfg.head_cutoffs, cfg.head_div_value)
    shapes.update({f"head.{name}": shape for name, shape in head.items()})
    return shapes


def start_state_shapes(cfg: ModelConfig) -> dict[str, tuple[int, ...]]:
    """The optional poem start state's tensors (``CharRNN.set_start_state``): h, and c for
    LSTM, each (L, 1, H); a state dict holds them only once one is set."""
    shape = (cfg.num_layers, 1, cfg.hidden_size)
    return {"start_h": shape, **({"start_c": shape}
                                 if cell_kind(cfg.cell).has_cell_state else {})}


def _layer_class(cell: str):
    # imported here so `rnncore.data`/`rnncore.checkpoint` stay importable on their own
    from rnncore.layers import GRU, LSTM, RNN

    return {"rnn": RNN, "lstm": LSTM, "gru": GRU}[cell]


def detach_state(state: State | None) -> State | None:
    """Cut the graph at a chunk boundary (truncated BPTT) but keep the values."""
    if state is None:
        return None
    if isinstance(state, tuple):
        return tuple(s.detach() for s in state)
    return state.detach()


class CharRNN(nn.Module):
    """``embedding`` (V, E) -> ``rnn`` (rnncore RNN/LSTM/GRU, batch_first) -> dropout ->
    ``head`` (``rnncore.heads``: ``FullHead`` Linear(H, V) or ``AdaptiveHead``)."""

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        if not isinstance(cfg, ModelConfig):
            raise TypeError("CharRNN expects a ModelConfig")
        self.cfg = cfg
        self.embedding = nn.Embedding(cfg.vocab_size, cfg.embedding_dim, padding_idx=Vocab.pad_id)
        self.rnn = _layer_class(cfg.cell)(
            cfg.embedding_dim,
            cfg.hidden_size,
            num_layers=cfg.num_layers,
            batch_first=True,
            # inter-layer dropout only exists with 2+ layers (torch warns otherwise)
            dropout=cfg.dropout if cfg.num_layers > 1 else 0.0,
            engine=cfg.engine,
        )
        self.dropout = nn.Dropout(cfg.dropout)
        self.head = make_head(cfg.head, cfg.hidden_size, cfg.vocab_size, cfg.head_cutoffs,
                              cfg.head_div_value)
        # The state a poem starts from (``set_start_state``): None (zeros) until estimated.
        # Persistent buffers: saved with the weights once set, absent before.
        self.register_buffer("start_h", None)
        self.register_buffer("start_c", None)

    @property
    def engine(self) -> str:
        return self.rnn.engine

    @engine.setter
    def engine(self, value: str) -> None:
        self.rnn.engine = check_engine(value)
        self.cfg = dataclasses.replace(self.cfg, engine=value)

    def init_state(self, batch_size: int, device: torch.device | str | None = None) -> State:
        """Zero state: h (L, B, H), plus c for LSTM, in the parameters' dtype."""
        weight = self.embedding.weight
        device = weight.device if device is None else device
        shape = (self.cfg.num_layers, batch_size, self.cfg.hidden_size)
        h = torch.zeros(shape, device=device, dtype=weight.dtype)
        if cell_kind(self.cfg.cell).has_cell_state:
            return h, torch.zeros_like(h)
        return h

    def set_start_state(self, state: State | None) -> None:
        """Keep ``state`` (h (L, 1, H), plus c for LSTM) as the state every poem starts
        from (``poem_start_state``); None goes back to the zero state."""
        if state is None:
            self.start_h = self.start_c = None
            return
        h, *c = state if isinstance(state, tuple) else (state,)
        c = c[0] if c else None
        weight = self.embedding.weight
        self.start_h = h.detach().to(weight.device, weight.dtype).clone()
        self.start_c = None if c is None else c.detach().to(weight.device, weight.dtype).clone()

    def load_state_dict(self, state_dict, strict: bool = True, assign: bool = False):
        """``nn.Module.load_state_dict``, taking the poem start state (``start_h``,
        ``start_c``) when the dict has one and dropping this model's when it has none."""
        state_dict = dict(state_dict)
        start = tuple(state_dict.pop(k) for k in ("start_h", "start_c") if k in state_dict)
        kept = self.start_h, self.start_c
        self.start_h = self.start_c = None      # so a dict without one is not "missing" it
        try:
            result = super().load_state_dict(state_dict, strict=strict, assign=assign)
        except Exception:
            self.start_h, self.start_c = kept
            raise
        self.set_start_state(start or None)
        return result

    def poem_start_state(self, batch_size: int) -> State | None:
        """The state a poem starts from, (L, B, H) per part: the estimated one
        (``trainer.start_state``) or, when there is none, None (the zero state).

        A model trained on a stream of poems (truncated BPTT carries the state from one poem
        into the next) never starts a poem from zeros; reading one from zeros puts it off
        its training distribution for many characters."""
        if self.start_h is None:
            return None
        h = self.start_h.expand(-1, batch_size, -1).contiguous()
        if self.start_c is None:
            return h
        return h, self.start_c.expand(-1, batch_size, -1).contiguous()

    def forward(self, tokens: Tensor, state: State | None = None) -> tuple[Tensor, State]:
        """tokens (B, T) long -> logits (B, T, V) (log_softmax of them: the exact
        log-probabilities), final state."""
        if tokens.dim() != 2:
            raise ValueError(f"tokens must be (batch, time), got shape {tuple(tokens.shape)}")
        x = self.embedding(tokens)
        out, state = self.rnn(x, state)
        return self.head(self.dropout(out)), state

    def embed_time_major(self, tokens: Tensor) -> Tensor:
        """tokens (B, W) -> embeddings (B, W, E) as a view of time-major (W, B, E) storage:
        the recurrent layers run time-major, so they read it without a transposing copy."""
        return self.embedding(tokens.t()).transpose(0, 1)

    def head_loss_sum(self, out: Tensor, targets: Tensor) -> Tensor:
        """out (W, B, H) time-major recurrent outputs, targets (W, B) -> the loss summed
        over the real targets, sum -log p(y | dropout(out)) (``head.loss_sum``, exact for
        every head; targets equal to ``IGNORE_INDEX`` are skipped).

        Time-major because that is how the layers store their output: (B, W, H) would be a
        transposed view that the head's GEMM first copies (and keeps for its backward)."""
        out = self.dropout(out)
        return self.head.loss_sum(out.reshape(-1, out.shape[-1]), targets.reshape(-1))

    @torch.no_grad()
    def step(self, tokens: Tensor, state: State | None = None) -> tuple[Tensor, State]:
        """One generation step: tokens (B,) -> logits (B, V), next state (no grad)."""
        logits, state = self.forward(tokens.reshape(-1, 1), state)
        return logits[:, 0], state

    def num_parameters(self, trainable_only: bool = False) -> int:
        return sum(p.numel() for p in self.parameters() if p.requires_grad or not trainable_only)
