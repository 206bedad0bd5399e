"""The unrolled model (autograd through ``rnncore.cells``, one step at a time) and dL/dh_t.

Per layer, with x_proj_t = W_ih x_t + b_ih (x_t the layer's input at step t)::

    s_t = step(x_proj_t, s_{t-1}, W_hh, b_hh),    s_{-1} = 0,    h_t = s_t[0]

``s_t`` is ``(h_t,)`` (RNN, GRU) or ``(h_t, c_t)`` (LSTM). For a vanilla RNN,
h_t = tanh(a_t), a_t = W_hh h_{t-1} + x_proj_t + b_hh, o_t = V h_t + c, and BPTT reads

    dL/dh_t = W_hh^T (dL/dh_{t+1} * f'(a_{t+1})) + V^T dL/do_t

``hidden_grads`` takes the total dL/dh_t from the ``"bptt"`` engine's recorder;
``hidden_grads_autograd`` is its reference through ``unroll``.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from torch import Tensor

from rnncore.cells import cell_step
from rnncore.gradflow.config import LOSSES, GradFlowError, check_choice
from rnncore.gradflow.probe import Probe
from rnncore.kinds import cell_kind, cell_of, layer_weights


@dataclass
class LayerTrace:
    """One layer's unrolled forward. ``states[t]`` is the state tuple after step t and
    ``init`` the one entering step 0; ``gates[name][t]`` (B, H); ``x_proj`` (T, B, G*H).
    ``w_copies``/``b_copies`` are the per-step zero perturbations of W_hh / b_hh,
    ``x_copies`` of x_proj (see ``unroll``)."""

    x_proj: Tensor
    init: tuple[Tensor, ...]
    states: list[tuple[Tensor, ...]]
    gates: dict[str, list[Tensor]]
    w_copies: list[Tensor] | None = None
    b_copies: list[Tensor] | None = None
    x_copies: list[Tensor] | None = None

    def prev_state(self, t: int) -> tuple[Tensor, ...]:
        return self.init if t == 0 else self.states[t - 1]

    @property
    def h(self) -> list[Tensor]:
        return [s[0] for s in self.states]


def _grad_boundary(state: tuple[Tensor, ...], scale) -> tuple[Tensor, ...]:
    """Same value; the gradient flowing back through it is multiplied by ``scale``
    (0 = detach, the truncation cut; 1/p = randomized truncation's reweighting).
    ``scale`` is a float or a (B,) tensor (one factor per batch row)."""
    if isinstance(scale, Tensor):
        scale = scale.to(state[0].dtype)[:, None]
    elif scale == 1.0:
        return state
    elif scale == 0.0:
        return tuple(s.detach() for s in state)
    return tuple(s.detach() + scale * (s - s.detach()) for s in state)


def unroll(model, inputs: Tensor, *, boundary_scale=None, perturb_layers: Iterable[int] = (),
           weight_copies: bool = False, retain_grad: bool = False, with_head: bool = True
           ) -> tuple[Tensor, list[LayerTrace]]:
    """Forward ``model`` one step at a time with autograd through ``rnncore.cells``.

    inputs (B, T) long -> logits (B, T, V), one ``LayerTrace`` per layer.
    ``boundary_scale``: (T,) floats or a (T, B) tensor; entry t scales the gradient through
    every layer's state entering step t (t >= 1), per batch row for a tensor.
    ``perturb_layers``: those layers get per-step zero tensors (B, G*H) added to the
    recurrent pre-activation (``b_copies``) and to x_proj (``x_copies``); their gradients
    are delta_t = dL/d(W_hh h_{t-1} + b_hh) and dL/d(x_proj_t), per row. With
    ``weight_copies`` also per-step zero (G*H, H) tensors added to W_hh (``w_copies``),
    whose gradients are the per-step terms of the tied-weight sum.
    ``retain_grad`` keeps ``.grad`` on every h_t (the total dL/dh_t after backward).
    ``with_head=False`` returns the top layer's outputs (B, T, H) instead of the logits.
    """
    rnn = model.rnn
    cell = cell_of(model)
    step = cell_step(cell, getattr(rnn, "nonlinearity", "tanh"))
    x = model.embedding(inputs).transpose(0, 1)  # (T, B, E) time-major
    T, B = x.shape[:2]
    H = rnn.hidden_size
    perturb_layers = {l % rnn.num_layers for l in perturb_layers}
    traces = []
    for layer in range(rnn.num_layers):
        w_ih, w_hh, b_ih, b_hh = layer_weights(rnn, layer)
        x_proj = F.linear(x, w_ih, b_ih)
        state = tuple(x.new_zeros(B, H) for _ in range(cell_kind(cell).state_parts))
        trace = LayerTrace(x_proj, state, [], {})
        if layer in perturb_layers:
            gh = w_hh.shape[0]
            trace.b_copies = [x.new_zeros(B, gh, requires_grad=True) for _ in range(T)]
            trace.x_copies = [x.new_zeros(B, gh, requires_grad=True) for _ in range(T)]
            if weight_copies:
                trace.w_copies = [torch.zeros_like(w_hh, requires_grad=True) for _ in range(T)]
        for t in range(T):
            if t > 0 and boundary_scale is not None:
                state = _grad_boundary(state, boundary_scale[t])
            w, b, xp = w_hh, b_hh, x_proj[t]
            if trace.b_copies is not None:
                b = (b_hh if b_hh is not None else 0.0) + trace.b_copies[t]
                xp = xp + trace.x_copies[t]
                if trace.w_copies is not None:
                    w = w_hh + trace.w_copies[t]
            state, gates = step(xp, state, w, b)
            if retain_grad:
                state[0].retain_grad()
            trace.states.append(state)
            for name, value in gates.items():
                trace.gates.setdefault(name, []).append(value)
        traces.append(trace)
        x = torch.stack(trace.h)
    out = x.transpose(0, 1)
    return (model.head(out) if with_head else out), traces


def sequence_loss(logits: Tensor, targets: Tensor, loss: str = "sum") -> Tensor:
    """Cross-entropy summed over time (``"sum"``) or on the last step only (``"last"``)."""
    check_choice("loss", loss, LOSSES)
    if loss == "last":
        logits, targets = logits[:, -1:], targets[:, -1:]
    return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), targets.reshape(-1),
                           reduction="sum")


def hidden_grads(probe: Probe, loss: str = "last") -> np.ndarray:
    """Total dL/dh_t from the ``"bptt"`` engine's recorder: (L, T, H) float64."""
    from rnncore import record_hidden_grads

    model = probe.model
    engine = model.rnn.engine
    model.rnn.engine = "bptt"
    try:
        with record_hidden_grads() as rec:
            logits, _ = model(probe.inputs)
            # the recorder fills during the backward; any parameter will do as its target
            torch.autograd.grad(sequence_loss(logits, probe.targets, loss),
                                [layer_weights(model.rnn, 0)[1]])
    finally:
        model.rnn.engine = engine
    out = np.zeros((probe.num_layers, probe.seq_len, probe.hidden_size))
    for record in rec.records:
        if record.direction == 0:
            out[record.layer] = record.grad[:, 0].detach().cpu().numpy()
    if len({r.layer for r in rec.records}) != probe.num_layers:
        raise GradFlowError("the bptt engine recorded no hidden gradients")
    return out


def hidden_grads_autograd(probe: Probe, loss: str = "last") -> np.ndarray:
    """The same (L, T, H) from autograd through the unrolled cells (retain_grad on h_t)."""
    logits, traces = unroll(probe.model, probe.inputs, retain_grad=True)
    sequence_loss(logits, probe.targets, loss).backward()
    probe.model.zero_grad(set_to_none=True)
    return np.stack([np.stack([h.grad[0].numpy() if h.grad is not None
                               else np.zeros(probe.hidden_size) for h in tr.h])
                     for tr in traces])


def hidden_grad_norms(probe: Probe, losses: Iterable[str] = LOSSES) -> pd.DataFrame:
    """Columns: loss, layer, t, char, grad_norm (= ||dL/dh_t||_2)."""
    rows = []
    for loss in losses:
        norms = np.linalg.norm(hidden_grads(probe, loss), axis=-1)
        for layer in range(norms.shape[0]):
            for t in range(norms.shape[1]):
                rows.append((loss, layer, t, probe.chars[t], float(norms[layer, t])))
    return pd.DataFrame(rows, columns=["loss", "layer", "t", "char", "grad_norm"])
