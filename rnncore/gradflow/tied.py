"""Tied weights: W_hh is shared by every step, so its gradient is a sum over steps,

    dL/dW_hh = sum_t delta_t h_{t-1}^T,     delta_t = dL/d(rec_t),  rec_t = W_hh h_{t-1} + b_hh

``tied_weight_grads`` lists the per-step terms and checks their sum against the model's
own W_hh gradient.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch

from rnncore.gradflow.probe import Probe
from rnncore.gradflow.spectral import gate_blocks
from rnncore.gradflow.unroll import sequence_loss, unroll
from rnncore.kinds import layer_weights


@dataclass
class TiedWeightGrad:
    """``per_step``: t, char, contribution_norm (Frobenius), share (of the sum of norms),
    cumulative (||sum_{s<=t}|| / ||total||) and one column per gate block's norm.
    ``total``: sum of the per-step outer products (G*H, H); ``autograd``: W_hh.grad from
    the model's own backward; ``contributions`` (T, G*H, H) only if asked for."""

    per_step: pd.DataFrame
    total: np.ndarray
    autograd: np.ndarray
    max_abs_err: float
    contributions: np.ndarray | None = None


def tied_weight_grads(probe: Probe, layer: int = -1, loss: str = "sum",
                      keep_contributions: bool = False) -> TiedWeightGrad:
    """Per-step terms delta_t h_{t-1}^T of dL/dW_hh, with delta_t = dL/d(rec_t) the
    gradient of the recurrent pre-activation rec_t = W_hh h_{t-1} + b_hh at step t (read
    off a per-step zero bias added to b_hh). Their sum is compared with the W_hh gradient
    of the model's own engine."""
    layer = probe.layer_index(layer)
    model = probe.model
    logits, traces = unroll(model, probe.inputs, perturb_layers=(layer,))
    tr = traces[layer]
    deltas = torch.autograd.grad(sequence_loss(logits, probe.targets, loss), tr.b_copies)
    h_prev = torch.stack([tr.prev_state(t)[0] for t in range(probe.seq_len)]).detach()
    contrib = torch.einsum("tbg,tbh->tgh", torch.stack(deltas), h_prev)
    total = contrib.sum(0)
    w_hh = layer_weights(model.rnn, layer)[1]
    logits, _ = model(probe.inputs)
    (reference,) = torch.autograd.grad(sequence_loss(logits, probe.targets, loss), [w_hh])
    norms = contrib.flatten(1).norm(dim=1)
    cumulative = contrib.cumsum(0).flatten(1).norm(dim=1) / total.norm().clamp_min(1e-300)
    frame = pd.DataFrame({"t": np.arange(probe.seq_len), "char": probe.chars,
                          "contribution_norm": norms.numpy(),
                          "share": (norms / norms.sum().clamp_min(1e-300)).numpy(),
                          "cumulative": cumulative.numpy()})
    H = probe.hidden_size
    for gate, block in gate_blocks(probe.cell, contrib.transpose(0, 1), H).items():
        frame[f"norm_{gate}"] = block.transpose(0, 1).flatten(1).norm(dim=1).numpy()
    return TiedWeightGrad(frame, total.numpy(), reference.numpy(),
                          float((total - reference).abs().max()),
                          contrib.numpy() if keep_contributions else None)
