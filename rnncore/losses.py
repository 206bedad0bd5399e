"""Softmax cross-entropy summed over positions, with a backward that reuses its own buffer.

For logits z (N, V) and targets y (N,) (rows with y = ``ignore_index`` skipped):

    L = sum_n [ logsumexp(z_n) - z_n[y_n] ] = - sum_n log softmax(z_n)[y_n]
    dL/dz_n = softmax(z_n) - onehot(y_n)          (0 for ignored rows)

``F.cross_entropy`` computes the same value, but its backward holds three (N, V) tensors at
once (the saved log-probabilities, NLL's dense gradient and log-softmax's gradient). Here
the forward saves only log softmax(z) (N, V), and the backward turns that buffer into
dL/dz in place (exp, subtract the one-hot, scale), so the head's backward needs one
(N, V) tensor, the activation size the loss must keep anyway. The price: the graph can
be backpropagated once (a second ``backward`` through it raises autograd's in-place error).
"""
from __future__ import annotations

import torch
from torch import Tensor


class _CrossEntropySum(torch.autograd.Function):
    # a dozen small ops run once per truncated window: scalar ``where`` arguments, one
    # read-back of the target range and a bool-by-scalar product keep that count low
    @staticmethod
    def forward(ctx, logits: Tensor, targets: Tensor, ignore_index: int) -> Tensor:
        valid = targets != ignore_index                                 # (N,)
        idx = torch.where(valid, targets, 0).unsqueeze(1)               # (N, 1) real ids
        if idx.numel():  # one reduction checks every real target's range
            lo, hi = torch.aminmax(idx)
            if int(lo) < 0 or int(hi) >= logits.shape[1]:
                raise ValueError(f"targets must be in [0, {logits.shape[1]}) or {ignore_index}")
        logp = torch.log_softmax(logits, dim=1)                         # (N, V)
        picked = logp.gather(1, idx).squeeze(1)                         # (N,)
        loss = torch.where(valid, picked, 0.0).sum().neg()
        ctx.save_for_backward(logp, idx, valid)
        return loss

    @staticmethod
    def backward(ctx, grad: Tensor):
        logp, idx, valid = ctx.saved_tensors
        g = logp.exp_()                                                 # softmax, in place
        g.scatter_add_(1, idx, g.new_full((g.shape[0], 1), -1.0))
        g.mul_(valid.unsqueeze(1) * grad)                               # 0 on ignored rows
        return g, None, None


def cross_entropy_sum(logits: Tensor, targets: Tensor, ignore_index: int = -100) -> Tensor:
    """sum_n -log softmax(logits_n)[targets_n] over rows whose target is not
    ``ignore_index``: ``F.cross_entropy(logits, targets, ignore_index=ignore_index,
    reduction="sum")`` with a backward that holds one (N, V) tensor instead of three.

    logits (N, V) float, targets (N,) long; returns a 0-d tensor."""
    if logits.dim() != 2 or targets.shape != logits.shape[:1]:
        raise ValueError(f"need logits (N, V) and targets (N,), got {tuple(logits.shape)} "
                         f"and {tuple(targets.shape)}")
    return _CrossEntropySum.apply(logits, targets, ignore_index)
