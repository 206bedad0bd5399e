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
targets times H d_i + d_i (c_i - c_{i-1}), instead of H V. The parameters are laid out as
``torch.nn.AdaptiveLogSoftmaxWithLoss``'s (``head``, ``tail.i.0`` = P_i, ``tail.i.1`` = U_i),
with a head bias; our ``loss_sum`` skips ignored targets and backpropagates through
``losses.cross_entropy_sum`` (one (N, c_0 + k) buffer).
"""
from __future__ import annotations

import torch
from torch import Tensor, nn

from rnncore.data import IGNORE_INDEX
from rnncore.losses import cross_entropy_sum

HEADS = ("full", "adaptive")


def clamp_cutoffs(cutoffs, vocab_size: int) -> tuple[int, ...]:
    """The cutoffs below ``vocab_size`` (so every cluster is non-empty); none left means
    the adaptive head is one softmax over the vocabulary."""
    return tuple(c for c in cutoffs if c < vocab_size)


class FullHead(nn.Linear):
    """``Linear(H, V)``: logits ``W x + b``, ``p = softmax(logits)`` (state-dict names
    ``weight``, ``bias``, as the plain Linear head of older checkpoints)."""

    def log_prob(self, x: Tensor) -> Tensor:
        return torch.log_softmax(self(x), dim=-1)

    def loss_sum(self, x: Tensor, targets: Tensor) -> Tensor:
        return cross_entropy_sum(self(x), targets, ignore_index=IGNORE_INDEX)


class AdaptiveHead(nn.Module):
    """Adaptive softmax over ``vocab_size`` tokens (see the module docstring);
    ``cutoffs`` are clamped to the vocabulary (``clamp_cutoffs``)."""

    def __init__(self, in_features: int, vocab_size: int, cutoffs, div_value: float = 4.0
                 ) -> None:
        super().__init__()
        cuts = clamp_cutoffs(cutoffs, vocab_size)
        self.vocab_size = vocab_size
        self.bounds = (*cuts, vocab_size)              # c_0, ..., c_k = V
        self.shortlist = self.bounds[0]
        self.head = nn.Linear(in_features, self.shortlist + len(cuts))
        dims = [max(1, int(in_features // div_value ** (i + 1))) for i in range(len(cuts))]
        self.tail = nn.ModuleList(
            nn.Sequential(nn.Linear(in_features, d, bias=False), nn.Linear(d, hi - lo, bias=False))
            for d, lo, hi in zip(dims, self.bounds, self.bounds[1:]))

    def _clusters(self):
        """(slot in the head, first id, end id, tail) per cluster."""
        return ((self.shortlist + i, lo, hi, tail)
                for i, ((lo, hi), tail) in enumerate(zip(zip(self.bounds, self.bounds[1:]),
                                                         self.tail)))

    def log_prob(self, x: Tensor) -> Tensor:
        """x (N, H) -> log p (N, V), every token's exact log-probability."""
        s = torch.log_softmax(self.head(x), dim=-1)
        parts = [s[:, :self.shortlist]]
        for slot, _, _, tail in self._clusters():
            parts.append(torch.log_softmax(tail(x), dim=-1) + s[:, slot:slot + 1])
        return torch.cat(parts, dim=1)

    def forward(self, x: Tensor) -> Tensor:
        """x (..., H) -> log p (..., V): normalized, so they serve as the logits too."""
        return self.log_prob(x.reshape(-1, x.shape[-1])).reshape(*x.shape[:-1], -1)

    def loss_sum(self, x: Tensor, targets: Tensor) -> Tensor:
        """sum_n -log p(y_n | x_n), exact: the head's cross-entropy on the shortlist id or
        the cluster slot, plus each cluster's on the rows whose target is in it."""
        if x.dim() != 2 or targets.shape != x.shape[:1]:
            raise ValueError(f"need x (N, H) and targets (N,), got {tuple(x.shape)} "
                             f"and {tuple(targets.shape)}")
        head_targets = targets.clone()
        loss = x.new_zeros(())
        for slot, lo, hi, tail in self._clusters():
            rows = ((targets >= lo) & (targets < hi)).nonzero().squeeze(1)
            if rows.numel() == 0:
                continue
            head_targets[rows] = slot
            loss = loss + cross_entropy_sum(tail(x.index_select(0, rows)),
                                            targets.index_select(0, rows) - lo)
        # out-of-range targets stay >= V >= c_0 + k and are refused here
        return loss + cross_entropy_sum(self.head(x), head_targets, ignore_index=IGNORE_INDEX)


def make_head(kind: str, in_features: int, vocab_size: int, cutoffs=(), div_value: float = 4.0
              ) -> nn.Module:
    """The head named ``kind`` (one of ``HEADS``)."""
    if kind == "full":
        return FullHead(in_features, vocab_size)
    if kind == "adaptive":
        return AdaptiveHead(in_features, vocab_size, cutoffs, div_value)
    raise ValueError(f"unknown head {kind!r} (choose {', '.join(HEADS)})")
