"""Truncation bias: truncated vs full-BPTT gradients of the recurrent parameters.

A truncation is a factor xi_t on the gradient entering the state passed from step t-1 to
step t (``unroll``'s ``boundary_scale``), with the windows and factors the trainer uses
(``rnncore.truncation``):

    regular, k          xi_t = 0 where a window of k steps starts, else 1   (biased)
    randomized, p       xi_t = 1/p with probability p, else 0 (E[xi] = 1)   (unbiased)

Many factor columns share one forward, so each column's gradient is assembled from
per-step deltas (``batched_param_grads``):

    dW_hh = sum_t delta_t h_{t-1}^T     db_hh = sum_t delta_t
    dW_ih = sum_t delta^x_t x_t^T       db_ih = sum_t delta^x_t      (delta^x = dL/dx_proj_t)
"""
from __future__ import annotations

import math
from typing import Sequence

import numpy as np
import pandas as pd
import torch
from torch import Tensor

from rnncore.gradflow.config import MAX_DRAW_VALUES, TRUNCATION_PROBS, GradFlowError
from rnncore.gradflow.probe import Probe
from rnncore.gradflow.unroll import sequence_loss, unroll
from rnncore.kinds import weight_names
from rnncore.truncation import draw_keep_factors, regular_boundary_scale

# regular truncation as a 0/1 factor on each step's incoming state gradient (T,)
regular_truncation_scale = regular_boundary_scale


def randomized_truncation_scale(seq_len: int, prob: float, draws: int,
                                gen: torch.Generator) -> Tensor:
    """(T, draws) randomized-truncation factors, one column per draw."""
    return draw_keep_factors(seq_len, draws, prob, gen)


def rnn_param_grad(probe: Probe, boundary_scale: Sequence[float] | None = None,
                   loss: str = "sum") -> Tensor:
    """Flat gradient (P,) of the recurrent layer's parameters (``named_parameters`` order;
    the head's gradient does not depend on truncation), plain autograd, one sequence."""
    params = list(probe.model.rnn.parameters())
    logits, _ = unroll(probe.model, probe.inputs, boundary_scale=boundary_scale)
    grads = torch.autograd.grad(sequence_loss(logits, probe.targets, loss), params,
                                allow_unused=True)
    return torch.cat([(torch.zeros_like(p) if g is None else g).flatten()
                      for p, g in zip(params, grads)])


def batched_param_grads(probe: Probe, scales: Tensor, loss: str = "sum") -> Tensor:
    """(B, P): one recurrent-parameter gradient per column of ``scales`` (T, B), all from
    a single batched backward (P and its order as ``rnn_param_grad``).

    The B rows run the same sequence, so they share every forward value and differ only
    in how the gradient crosses step boundaries.
    """
    rnn, T = probe.model.rnn, probe.seq_len
    B = scales.shape[1]
    inputs, targets = probe.inputs.expand(B, -1), probe.targets.expand(B, -1)
    top, traces = unroll(probe.model, inputs, boundary_scale=scales,
                         perturb_layers=range(rnn.num_layers), with_head=False)
    # every row has the same outputs, so the head's gradient dL/dh_t (direct part) is
    # computed once and fed to all rows through the exact linear surrogate <g_t, h_t>
    top0 = top[0].detach().requires_grad_(True)
    (direct,) = torch.autograd.grad(
        sequence_loss(probe.model.head(top0)[None], targets[:1], loss), [top0])
    copies = [c for tr in traces for c in tr.b_copies + tr.x_copies]
    grads = torch.autograd.grad((top * direct).sum(), copies)
    parts = {}
    layer_in = probe.model.embedding(probe.inputs)[0].detach()          # (T, I)
    for layer, tr in enumerate(traces):
        base = 2 * T * layer
        d_rec = torch.stack(grads[base:base + T])                      # (T, B, G*H)
        d_x = torch.stack(grads[base + T:base + 2 * T])
        h_prev = torch.stack([tr.prev_state(t)[0][0] for t in range(T)]).detach()
        parts.update(zip(weight_names(layer), (
            torch.einsum("tbg,ti->bgi", d_x, layer_in),                # weight_ih
            torch.einsum("tbg,th->bgh", d_rec, h_prev),                # weight_hh
            d_x.sum(0), d_rec.sum(0))))                                # bias_ih, bias_hh
        layer_in = torch.stack(tr.h)[:, 0].detach()
    return torch.cat([parts[name].reshape(B, -1) for name, _ in rnn.named_parameters()], 1)


def randomized_truncation_grads(probe: Probe, prob: float, draws: int, seed: int = 0
                                ) -> Tensor:
    """(draws, P) gradients, one randomized-truncation draw per row."""
    gen = torch.Generator().manual_seed(seed)
    return batched_param_grads(probe, randomized_truncation_scale(probe.seq_len, prob,
                                                                  draws, gen))


def _cos(a: Tensor, b: Tensor) -> Tensor:
    return (a * b).sum(-1) / (a.norm(dim=-1) * b.norm(dim=-1)).clamp_min(1e-300)


def truncation_bias(probe: Probe, truncation_lens: Sequence[int] | None = None,
                    probs: Sequence[float] = TRUNCATION_PROBS, draws: int = 32,
                    seed: int = 0) -> pd.DataFrame:
    """Truncated vs full-BPTT gradient of the recurrent parameters on the same sequence.

    Rows ``scheme="regular"`` for k = 1, 2, 4, ..., T: cosine, rel_norm (||g_k||/||g||),
    rel_error (||g_k - g||/||g||). Rows ``scheme="randomized"`` per p: cosine, rel_norm
    and rel_error of the mean over ``draws`` (unbiased: they tend to 1, 1 and 0 as draws
    grow), mean_cosine / mean_rel_error of single draws, and rel_std =
    sqrt(mean ||g_i - mean||^2) / ||g|| (the spread of one draw).
    """
    T = probe.seq_len
    if truncation_lens is None:
        truncation_lens = sorted({2 ** i for i in range(int(math.log2(T)) + 1)} | {T})
    for k in truncation_lens:
        if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or not 1 <= k <= T:
            raise GradFlowError(f"truncation length must be an integer in 1..{T}, got {k}")
    for p in probs:
        if not 0.0 < p <= 1.0:
            raise GradFlowError(f"truncation probability must be in (0, 1], got {p}")
    params = sum(p.numel() for p in probe.model.rnn.parameters())
    if draws * params > MAX_DRAW_VALUES:
        raise GradFlowError(f"{draws} draws of {params:,} recurrent parameters need "
                            f"{draws * params * 8 / 2**30:.1f} GB; use at most "
                            f"{max(1, MAX_DRAW_VALUES // params)} draws or a smaller model")
    scales = torch.tensor([regular_truncation_scale(T, int(k)) for k in truncation_lens]
                          + [[1.0] * T], dtype=torch.float64).T
    grads = batched_param_grads(probe, scales)
    full, grads = grads[-1], grads[:-1]
    full_norm = float(full.norm())
    rows = [dict(scheme="regular", truncation_len=int(k), prob=math.nan, draws=1,
                 cosine=float(_cos(g, full)), rel_norm=float(g.norm()) / full_norm,
                 rel_error=float((g - full).norm()) / full_norm)
            for k, g in zip(truncation_lens, grads)]
    gen = torch.Generator().manual_seed(seed)
    for p in probs:
        g = batched_param_grads(probe, randomized_truncation_scale(T, float(p), draws, gen))
        mean = g.mean(0)
        rows.append(dict(scheme="randomized", truncation_len=math.nan, prob=float(p),
                         draws=draws, cosine=float(_cos(mean, full)),
                         rel_norm=float(mean.norm()) / full_norm,
                         rel_error=float((mean - full).norm()) / full_norm,
                         mean_cosine=float(_cos(g, full[None]).mean()),
                         mean_rel_error=float(((g - full).norm(dim=1) / full_norm).mean()),
                         rel_std=float((g - mean).pow(2).sum(1).mean().sqrt()) / full_norm))
    return pd.DataFrame(rows)
