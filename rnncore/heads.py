"""Output heads of a ``CharRNN``: hidden states (N, H) -> a distribution over V tokens.

Every head has one interface::

    head(x (..., H)) -> logits (..., V)   log_softmax(logits) is the exact log-distribution
    log_prob(x (N, H)) -> (N, V)           log p(v | x), rows logsumexp to 0
    loss_sum(x (N, H), y (N,)) -> ()       sum_n -log p(y_n | x_n) over y_n != IGNORE_INDEX

``FullHead`` is ``Linear(H, V)`` + softmax, ``p = softmax(W x + b)``.

``AdaptiveHead`` is the adaptive softmax (Grave et al. 2017). Token ids are sorted by
descending frequency (after the specials), so the cutoffs ``c_0 < c_1 < ... < c_k = V``
split them into a shortlist [0, c_0) and k tail clusters [c_{i-1}, c_i) of ever rarer
tokens. The head scores the shortlist and one slot per cluster; cluster i projects x down
to ``d_i = H // div^(i+1)`` before its own softmax::

    s = log_softmax(W_h x + b_h)                              (c_0 + k,)
    log p(v) = s[v]                                           v < c_0
    log p(v) = s[c_0 + i] + log_softmax(U_i (P_i x))[v - c_{i-1}]    v in cluster i

an exact distribution over all V tokens. Training only needs the tail of the cluster each
target is in, so a step costs ~H (c_0 + k) per position plus the clusters' share of the
targets times H d_i + d_i (c_i - c_{i-1}), instead of H V. It is
``torch.nn.AdaptiveLogSoftmaxWithLoss`` (parameters ``head``, ``tail.i.0`` = P_i,
``tail.i.1`` = U_i) with a head bias; ``loss_sum`` skips ignored targets. Our own
implementation of the same algorithm took as long (LSTM 2 x 256, B 32, T 64, one thread:
182 vs 179 ms for the head's forward + backward at V = 4,953, 197 vs 200 ms at V = 8,422).
"""
from __future__ import annotations

import torch
from torch import Tensor, nn

from rnncore.data import IGNORE_INDEX
# the heads' names and the "auto" rule: rnncore.kinds (re-exported here)
from rnncore.kinds import (AUTO_ADAPTIVE_MIN_VOCAB, DEFAULT_HEAD, HEAD_CHOICES,  # noqa: F401
                           HEADS, resolve_head)
from rnncore.losses import cross_entropy_sum


def clamp_cutoffs(cutoffs, vocab_size: int) -> tuple[int, ...]:
    """The cutoffs below ``vocab_size`` (every cluster non-empty); if none is, one cluster
    holds the rarer half of the vocabulary."""
    return tuple(c for c in cutoffs if c < vocab_size) or (vocab_size // 2,)


class FullHead(nn.Linear):
    """``Linear(H, V)``: logits ``W x + b``, ``p = softmax(logits)`` (state-dict names
    ``weight``, ``bias``, as the plain Linear head of older checkpoints)."""

    def log_prob(self, x: Tensor) -> Tensor:
        return torch.log_softmax(self(x), dim=-1)

    def loss_sum(self, x: Tensor, targets: Tensor) -> Tensor:
        return cross_entropy_sum(self(x), targets, ignore_index=IGNORE_INDEX)


class AdaptiveHead(nn.AdaptiveLogSoftmaxWithLoss):
    """Adaptive softmax over ``vocab_size`` tokens (see the module docstring);
    ``cutoffs`` are clamped to the vocabulary (``clamp_cutoffs``)."""

    def __init__(self, in_features: int, vocab_size: int, cutoffs, div_value: float = 4.0
                 ) -> None:
        super().__init__(in_features, vocab_size, list(clamp_cutoffs(cutoffs, vocab_size)),
                         div_value=div_value, head_bias=True)

    def forward(self, x: Tensor) -> Tensor:
        """x (..., H) -> log p (..., V): normalized, so they serve as the logits too."""
        return self.log_prob(x.reshape(-1, x.shape[-1])).reshape(*x.shape[:-1], -1)

    def loss_sum(self, x: Tensor, targets: Tensor) -> Tensor:
        """sum_n -log p(y_n | x_n) over y_n != IGNORE_INDEX; x (N, H), targets (N,)."""
        keep = targets != IGNORE_INDEX
        if not bool(keep.all()):  # torch's loss takes real targets only
            x, targets = x[keep], targets[keep]
        return -super().forward(x, targets).output.sum()


def head_shapes(kind: str, in_features: int, vocab_size: int, cutoffs=(),
                div_value: float = 4.0) -> dict[str, tuple[int, ...]]:
    """The shape of every tensor of ``make_head(...)``'s state dict, computed without
    building it (a checkpoint's header is checked against these before any allocation)."""
    H, V = in_features, vocab_size
    kind = resolve_head(kind, V)
    if kind == "full":
        return {"weight": (V, H), "bias": (V,)}
    cuts = [*clamp_cutoffs(cutoffs, V), V]
    head = cuts[0] + len(cuts) - 1          # the shortlist and one slot per cluster
    shapes = {"head.weight": (head, H), "head.bias": (head,)}
    for i in range(len(cuts) - 1):
        d = int(H // (div_value ** (i + 1)))
        shapes[f"tail.{i}.0.weight"] = (d, H)
        shapes[f"tail.{i}.1.weight"] = (cuts[i + 1] - cuts[i], d)
    return shapes


def make_head(kind: str, in_features: int, vocab_size: int, cutoffs=(), div_value: float = 4.0
              ) -> nn.Module:
    """The head named ``kind`` (one of ``HEAD_CHOICES``; "auto": ``resolve_head``)."""
    if resolve_head(kind, vocab_size) == "full":
        return FullHead(in_features, vocab_size)
    return AdaptiveHead(in_features, vocab_size, cutoffs, div_value)
