"""Drawing one token per row from constrained scores (B, V): top-k, nucleus, inverse CDF.

Top-k keeps the k best allowed tokens, top-p the nucleus: the allowed tokens v whose more
probable tokens hold less than p of the mass, ``sum_u q_u [q_u > q_v] < p`` with
``q = softmax(s)`` -- the smallest set of best tokens whose mass reaches p (the best one
always stays), ties with its last member included. A token is drawn from ``q`` restricted
to the nucleus and renormalised, by rejection (``_sample_nucleus``: no sort of the
vocabulary), with uniforms from a seeded ``torch.Generator`` (``_Uniforms``), so a seed
gives the same poems.
"""
from __future__ import annotations

import numpy as np
import torch


def _filter_top_k(scores: torch.Tensor, top_k: int) -> torch.Tensor:
    """Set scores below each row's k-th best to -inf (ties with the k-th stay)."""
    if top_k and top_k < scores.shape[-1]:
        kth = torch.topk(scores, top_k, dim=-1).values[:, -1:]
        scores = scores.masked_fill(scores < kth, float("-inf"))
    return scores


def _nucleus_keep(probs: torch.Tensor, top_p: float) -> torch.Tensor:
    """(B, V) bool: the nucleus of each row of ``probs``, by a full sort.

    Token v stays when the mass of the tokens strictly more probable than v is below
    ``top_p``: the smallest set of best tokens whose mass reaches ``top_p`` (the best token
    always stays), plus any token tied with the last one (so the set does not depend on the
    order a sort gives to ties)."""
    sorted_probs, _ = torch.sort(probs, dim=-1, descending=True)
    # drop a token when the mass before it already reaches top_p
    before = torch.cumsum(sorted_probs, dim=-1) - sorted_probs
    n = (before < top_p).sum(-1, keepdim=True).clamp_(min=1)  # kept prefix length
    return probs >= sorted_probs.gather(-1, n - 1)


def _sample_probs(probs: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """One token per row of ``probs`` (B, V) >= 0 (need not sum to 1) by inverting the CDF:
    the first index whose cumulative mass exceeds u ~ U[0, total). Zero-mass tokens can
    never be drawn. (Much faster than ``torch.multinomial`` for one draw from a large V.)"""
    cdf = probs.cumsum(dim=-1)
    u = torch.rand(probs.shape[0], 1, generator=generator) * cdf[:, -1:]
    return torch.searchsorted(cdf, u, right=True)[:, 0].clamp_(max=probs.shape[1] - 1)


NUCLEUS_ROUNDS = 8


class _Uniforms:
    """U[0, 1) floats from a ``torch.Generator``, drawn ``block`` at a time (one torch call
    per block instead of one per decoding step); the same seed gives the same stream."""

    def __init__(self, generator: torch.Generator, block: int = 1024) -> None:
        self.generator, self.block = generator, block
        self.buffer: list[float] = []
        self.next = 0

    def take(self, n: int) -> list[float]:
        start, end = self.next, self.next + n
        if end > len(self.buffer):
            self.buffer = self.buffer[start:] + torch.rand(
                max(n, self.block), generator=self.generator).tolist()
            start, end = 0, n
        self.next = end
        return self.buffer[start:end]


def _sample_nucleus(probs: torch.Tensor, top_p: float, generator) -> list[int]:
    """One token per row from ``probs`` (B, V, rows summing to 1) restricted to its nucleus
    (``_nucleus_keep``) and renormalised -- without sorting the vocabulary.

    Rejection sampling: draw v ~ probs (inverse CDF, u ~ U[0, 1) from ``generator``, a
    ``torch.Generator`` or a ``_Uniforms`` stream over one); keep it when the mass of the
    tokens strictly more probable than v, ``sum_u probs[u] * [probs[u] > probs[v]]``, is
    below ``top_p`` (that is exactly "v is in the nucleus"), else draw again. A draw
    conditioned on landing in the nucleus N has law probs[v] / probs(N) on N, the nucleus
    distribution. Each round accepts with probability probs(N) >= top_p, so after
    ``NUCLEUS_ROUNDS`` rounds the few rows still rejected (tiny ``top_p`` only) are
    finished by the exact sort. The test is a float32 dot product over V.

    The nucleus of a weak model is large (a median of ~400 tokens for the bundled model at
    top_p 0.9), so neither a full sort (~0.2 ms a row) nor a top-k guess pays. The draws
    and tests run row by row in NumPy on the same memory: a handful of scalar steps per
    row, where each torch call would cost several microseconds of dispatch.
    """
    B, V = probs.shape
    uniforms = generator if isinstance(generator, _Uniforms) else _Uniforms(generator, 0)
    pn = probs.numpy()
    cdf = probs.cumsum(dim=-1).numpy()  # torch's cumsum is vectorised, NumPy's is not
    tok = [0] * B
    pending = list(range(B))
    for _ in range(NUCLEUS_ROUNDS):
        rejected = []
        for r, u in zip(pending, uniforms.take(len(pending))):
            row, c = pn[r], cdf[r]
            total = c[-1]
            i = int(c.searchsorted(u * total, side="right"))
            if i >= V:  # u * total rounded up to total: the last token with mass
                i = int(c.searchsorted(total, side="left"))
            if np.dot(row, row > row[i]) < top_p:  # mass strictly above v (BLAS dot)
                tok[r] = i
            else:
                rejected.append(r)
        pending = rejected
        if not pending:
            return tok
    rows = torch.tensor(pending, dtype=torch.long)
    p = probs.index_select(0, rows)
    draws = _sample_probs(p * _nucleus_keep(p, top_p), uniforms.generator)
    for r, i in zip(pending, draws.tolist()):
        tok[r] = i
    return tok


def _draw(scores: torch.Tensor, top_k: int, top_p: float, uniforms: _Uniforms) -> list[int]:
    """Sample one token per row of softmax(scores) after the top-k and top-p filters."""
    probs = torch.softmax(_filter_top_k(scores, top_k), dim=-1)
    if top_p < 1.0:
        return _sample_nucleus(probs, top_p, uniforms)
    return _sample_probs(probs, uniforms.generator).tolist()
