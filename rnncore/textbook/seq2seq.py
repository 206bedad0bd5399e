"""An RNN encoder-decoder: a fixed-length context c, or attention over every encoder state.

Source x_1..x_S (the 上句 of a couplet), target y_1..y_W (the 下句), y_0 = ``<bos>``;
B rows, embedding D, hidden H (even), context C::

    encoder   h_j = [h→_j ; h←_j]         bidirectional GRU (rnncore.layers), (B, S, H)
    context   c   = tanh(W_c [h→_S ; h←_1] + b_c)                           (B, C)
    decoder   s_0 = tanh(W_s c + b_s),  s_t = GRU([E y_(t-1) ; c], s_(t-1))  (B, W, H)
    attention e_tj = s_t · (W_a h_j),  α_t = softmax_j(e_t),  a_t = Σ_j α_tj h_j  (Luong
              "general"), o_t = tanh(W_o [s_t ; a_t] + b_o); without attention o_t = s_t
    output    log p(y_t | y_<t, x) = head(o_t)     (rnncore.heads: full or adaptive softmax)

``context_size`` C = 0 is the unconditional baseline: s_0 = 0, no c, no encoder -- the same
decoder and head reading the 下句 alone. A small C is the chapter's bottleneck: everything
the decoder learns of x passes through C numbers; attention adds a context a_t that is
recomputed at every output step from all S encoder states.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import Tensor, nn

from rnncore.configs import DictConfig
from rnncore.heads import HEADS, make_head
from rnncore.layers import GRU


class Seq2SeqError(ValueError):
    """A bad encoder-decoder configuration or model file (one-line message)."""


@dataclass
class Seq2SeqConfig(DictConfig):
    """Sizes of one encoder-decoder; ``context_size`` 0 = no encoder (the unconditional
    decoder), ``attention`` needs an encoder."""

    config_error = Seq2SeqError

    vocab_size: int = 100
    embedding_dim: int = 128
    hidden_size: int = 192
    context_size: int = 192
    attention: bool = False
    head: str = "adaptive"
    cutoffs: list = field(default_factory=lambda: [600, 2400])
    dropout: float = 0.1

    def __post_init__(self) -> None:
        for name in ("vocab_size", "embedding_dim", "hidden_size"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 2:
                raise Seq2SeqError(f"{name} must be an integer >= 2, got {value!r}")
        if self.hidden_size % 2:
            raise Seq2SeqError("hidden_size must be even (a bidirectional encoder)")
        if isinstance(self.context_size, bool) or not isinstance(self.context_size, int) \
                or self.context_size < 0:
            raise Seq2SeqError(f"context_size must be >= 0, got {self.context_size!r}")
        if self.attention and not self.context_size:
            raise Seq2SeqError("attention needs an encoder (context_size > 0)")
        if self.head not in HEADS:
            raise Seq2SeqError(f"unknown head {self.head!r} (choose {', '.join(HEADS)})")
        if not 0.0 <= float(self.dropout) < 1.0:
            raise Seq2SeqError(f"dropout must be in [0, 1), got {self.dropout}")
        self.cutoffs = [int(c) for c in self.cutoffs]

    @property
    def conditional(self) -> bool:
        return self.context_size > 0


def attend(query: Tensor, keys: Tensor, weight: Tensor) -> tuple[Tensor, Tensor]:
    """Luong "general" attention: query s (B, T, H), keys h (B, S, H), W_a (H, H) ->
    context a (B, T, H) and weights α (B, T, S), ``e_tj = s_t · (W_a h_j)``,
    ``α_t = softmax_j(e_t)``, ``a_t = Σ_j α_tj h_j`` (the keys are the values)."""
    scores = torch.bmm(query, torch.matmul(keys, weight.T).transpose(1, 2))   # (B, T, S)
    alpha = torch.softmax(scores, dim=-1)
    return torch.bmm(alpha, keys), alpha


class Seq2Seq(nn.Module):
    """The encoder-decoder of the module docstring; ``forward(src, inp)`` -> log-probs."""

    def __init__(self, cfg: Seq2SeqConfig) -> None:
        super().__init__()
        self.cfg = cfg
        D, H, C = cfg.embedding_dim, cfg.hidden_size, cfg.context_size
        self.embedding = nn.Embedding(cfg.vocab_size, D)
        self.drop = nn.Dropout(cfg.dropout)
        if cfg.conditional:
            self.encoder = GRU(D, H // 2, batch_first=True, bidirectional=True)
            self.to_context = nn.Linear(H, C)
            self.to_state = nn.Linear(C, H)
        self.decoder = GRU(D + C, H, batch_first=True)
        if cfg.attention:
            self.attn = nn.Parameter(torch.empty(H, H))
            nn.init.xavier_uniform_(self.attn)
            self.combine = nn.Linear(2 * H, H)
        self.head = make_head(cfg.head, H, cfg.vocab_size, cfg.cutoffs)

    def encode(self, src: Tensor) -> tuple[Tensor | None, Tensor | None, Tensor]:
        """src (B, S) -> encoder states (B, S, H), c (B, C) and s_0 (1, B, H); the
        unconditional model returns (None, None, zeros)."""
        B, H = src.shape[0], self.cfg.hidden_size
        if not self.cfg.conditional:
            return None, None, src.new_zeros(1, B, H, dtype=self.embedding.weight.dtype)
        states, h_n = self.encoder(self.drop(self.embedding(src)))   # h_n (2, B, H/2)
        c = torch.tanh(self.to_context(torch.cat([h_n[0], h_n[1]], -1)))
        return states, c, torch.tanh(self.to_state(c))[None]

    def decode(self, inp: Tensor, states: Tensor | None, c: Tensor | None, s: Tensor
               ) -> tuple[Tensor, Tensor, Tensor | None]:
        """inp (B, T) -> head features o (B, T, H), the last decoder state (1, B, H) and the
        attention weights (B, T, S) (None without attention)."""
        x = self.drop(self.embedding(inp))
        if c is not None:
            x = torch.cat([x, c[:, None].expand(-1, x.shape[1], -1)], -1)
        out, s = self.decoder(x, s)
        if not self.cfg.attention:
            return out, s, None
        a, alpha = attend(out, states, self.attn)
        return torch.tanh(self.combine(torch.cat([out, a], -1))), s, alpha

    def forward(self, src: Tensor, inp: Tensor) -> Tensor:
        """src (B, S), inp (B, T) (``<bos>`` then the target shifted) -> log p (B, T, V)."""
        states, c, s = self.encode(src)
        o, _, _ = self.decode(inp, states, c, s)
        return self.head.log_prob(o.reshape(-1, o.shape[-1])).view(*inp.shape, -1)

    def loss_sum(self, src: Tensor, inp: Tensor, tgt: Tensor) -> Tensor:
        """Σ -ln p(y_t | y_<t, x) over every target of tgt (B, T) (nats)."""
        states, c, s = self.encode(src)
        o, _, _ = self.decode(inp, states, c, s)
        return self.head.loss_sum(o.reshape(-1, o.shape[-1]), tgt.reshape(-1))

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())


META_KEY = "rnncore-seq2seq"


def save_seq2seq(model: Seq2Seq, itos: list[str], path: str | Path, extra: dict | None = None
                 ) -> None:
    """Weights in float16 with the config, vocabulary and ``extra`` in the safetensors
    header (one file)."""
    from safetensors.torch import save_file

    meta = {"config": model.cfg.to_dict(), "itos": list(itos), "extra": extra or {}}
    tensors = {k: v.detach().to(torch.float16).contiguous()
               for k, v in model.state_dict().items()}
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    save_file(tensors, str(path), metadata={META_KEY: json.dumps(meta, ensure_ascii=False)})


def load_seq2seq(path: str | Path) -> tuple[Seq2Seq, list[str], dict]:
    """(model in float32, eval mode; vocabulary itos; extra) from ``save_seq2seq``'s file;
    ``Seq2SeqError`` for a missing or malformed file."""
    from safetensors import safe_open
    from safetensors.torch import load_file

    try:
        with safe_open(str(path), "pt") as f:
            meta = json.loads((f.metadata() or {})[META_KEY])
        cfg = Seq2SeqConfig.from_dict(meta["config"])
        itos = meta["itos"]
        if not isinstance(itos, list) or len(itos) != cfg.vocab_size:
            raise Seq2SeqError("vocabulary and config disagree")
        model = Seq2Seq(cfg)
        model.load_state_dict({k: v.float() for k, v in load_file(str(path)).items()})
    except (OSError, KeyError, TypeError, ValueError, RuntimeError) as exc:
        raise Seq2SeqError(f"cannot load the encoder-decoder {path}: "
                           f"{str(exc).splitlines()[0] if str(exc) else type(exc).__name__}"
                           ) from None
    return model.eval(), itos, meta.get("extra", {})
