"""Gates and activations: the path a gated cell keeps open with no W_hh on it.

    LSTM   c_t = f_t * c_{t-1} + i_t * g_t          dc_t/dc_{t-1} = diag(f_t)  (h_{t-1} fixed)
    GRU    h_t = (1 - z_t) * n_t + z_t * h_{t-1}    dh_t/dh_{t-1} = diag(z_t)  (r, z, n fixed)

so along that path the gradient from step T back to step t is scaled by prod_{s>t} g_s,
g = ``CellKind.direct_gate``; it travels far only while the gate stays near 1. A vanilla
RNN has no such gate. ``activations`` lists every gate (and h) per character.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from torch import Tensor

from rnncore import cells
from rnncore.gradflow.config import GradFlowError
from rnncore.gradflow.probe import Probe
from rnncore.gradflow.unroll import unroll
from rnncore.kinds import layer_weights

QUANTILES = (0.1, 0.25, 0.5, 0.75, 0.9)


def gate_path_jacobians(probe: Probe, layer: int = -1) -> tuple[Tensor, Tensor]:
    """(J (T, H, H), gate (T, H)) from autograd on the cell.

    LSTM: J_t = dc_t/dc_{t-1} with h_{t-1} held fixed; gate = f_t.
    GRU: J_t = dh_t/dh_{t-1} through the interpolation only, with r, z, n held at their
    values (the recurrent projection W_hh h_{t-1} + b_hh is fed in as a constant bias and
    W_hh as zero); gate = z_t. In PyTorch's convention h_t = (1 - z) n + z h_{t-1}
    this is diag(z_t); were it h_t = (1 - z) h_{t-1} + z n it would be diag(1 - z_t).
    """
    kind = probe.kind
    if kind.direct_gate is None:
        raise GradFlowError("gate paths exist for lstm and gru only")
    layer = probe.layer_index(layer)
    with torch.no_grad():
        _, traces = unroll(probe.model, probe.inputs)
    tr = traces[layer]
    T = probe.seq_len
    _, w_hh, _, b_hh = layer_weights(probe.model.rnn, layer)
    w_hh = w_hh.detach()
    b_hh = None if b_hh is None else b_hh.detach()
    xp = tr.x_proj[:, 0]
    h_prev = torch.stack([tr.prev_state(t)[0][0] for t in range(T)])
    rec = F.linear(h_prev, w_hh, b_hh)      # (T, G*H): h_{t-1}'s contribution, held fixed
    gate = torch.stack(tr.gates[kind.direct_gate])[:, 0]
    if kind.has_cell_state:
        c_prev = torch.stack([tr.prev_state(t)[1][0] for t in range(T)])
        # h enters the LSTM step only through W_hh h + b_hh: feed that as the bias with an
        # empty h / W_hh, so the Jacobian is taken with h_{t-1} fixed and costs no matmul
        no_h, no_w = xp.new_zeros(1, 0), xp.new_zeros(w_hh.shape[0], 0)

        def c_next(c, x, r):
            return cells.lstm_cell(x[None], no_h, c[None], no_w, r[None])[0][1][0]

        return torch.func.vmap(torch.func.jacrev(c_next))(c_prev, xp, rec), gate
    zero_w = torch.zeros_like(w_hh)

    def h_next(h, x, r):
        return cells.gru_cell(x[None], h[None], zero_w, r[None])[0][0]

    return torch.func.vmap(torch.func.jacrev(h_next))(h_prev, xp, rec), gate


def gate_path_check(probe: Probe, layer: int = -1) -> pd.DataFrame:
    """Per step: t, char, gate ('f' or 'z'), err_diag_gate = max|J - diag(gate)|,
    err_diag_one_minus = max|J - diag(1 - gate)|, offdiag_max = max off-diagonal |J|."""
    J, gate = gate_path_jacobians(probe, layer)
    eye = torch.eye(J.shape[-1], dtype=J.dtype)
    off = (J * (1 - eye)).abs().amax(dim=(1, 2))
    err = (J - torch.diag_embed(gate)).abs().amax(dim=(1, 2))
    err_alt = (J - torch.diag_embed(1 - gate)).abs().amax(dim=(1, 2))
    return pd.DataFrame({"t": np.arange(probe.seq_len), "char": probe.chars,
                         "gate": probe.kind.direct_gate, "err_diag_gate": err.numpy(),
                         "err_diag_one_minus": err_alt.numpy(), "offdiag_max": off.numpy()})


def gate_stats(probe: Probe, gate: str | None = None, layer: int = -1) -> pd.DataFrame:
    """Per step over the H units of ``layer``: t, char, gate, mean, q10..q90, frac_gt_0.9,
    and retention = prod_{s>t} mean gate (the average path factor from step t to the end).
    Default gate: the direct-path gate, ``f`` (LSTM) or ``z`` (GRU)."""
    kind = probe.kind
    if kind.direct_gate is None:
        raise GradFlowError("gate statistics exist for lstm and gru only")
    gate = gate or kind.direct_gate
    if gate not in kind.gate_names:
        raise GradFlowError(f"{probe.cell} has no gate {gate!r} "
                            f"(choose from {', '.join(kind.gate_names)})")
    acts = activations(probe, layer).values[gate]       # (T, H)
    frame = pd.DataFrame({"t": np.arange(probe.seq_len), "char": probe.chars, "gate": gate,
                          "mean": acts.mean(1)})
    for q in QUANTILES:
        frame[f"q{int(round(q * 100))}"] = np.quantile(acts, q, axis=1)
    frame["frac_gt_0.9"] = (acts > 0.9).mean(1)
    means = frame["mean"].to_numpy()
    frame["retention"] = np.append(np.cumprod(means[::-1][:-1])[::-1], 1.0)
    return frame


@dataclass
class Activations:
    """``values[name]``: (T, H) per character for h (and c, i, f, g, o for LSTM; r, z, n
    for GRU; a = pre-activation for RNN)."""

    cell: str
    layer: int
    chars: list[str]
    values: dict[str, np.ndarray] = field(default_factory=dict)

    def frame(self, name: str) -> pd.DataFrame:
        """Units as rows, one column per step labelled ``"t:char"`` (heatmap-ready)."""
        if name not in self.values:
            raise GradFlowError(f"no activation {name!r} (have {', '.join(self.values)})")
        cols = [f"{t}:{c}" for t, c in enumerate(self.chars)]
        return pd.DataFrame(self.values[name].T, columns=cols).rename_axis("unit")

    def long_frame(self) -> pd.DataFrame:
        """Columns: name, t, char, unit, value."""
        parts = []
        for name, arr in self.values.items():
            T, H = arr.shape
            parts.append(pd.DataFrame({"name": name, "t": np.repeat(np.arange(T), H),
                                       "char": np.repeat(self.chars, H),
                                       "unit": np.tile(np.arange(H), T),
                                       "value": arr.reshape(-1)}))
        return pd.concat(parts, ignore_index=True)


def activations(probe: Probe, layer: int = -1) -> Activations:
    """h and every gate of ``layer`` along the probe's sequence (batch row 0)."""
    layer = probe.layer_index(layer)
    with torch.no_grad():
        _, traces = unroll(probe.model, probe.inputs)
    tr = traces[layer]
    values = {"h": torch.stack(tr.h)[:, 0].numpy()}
    for name, seq in tr.gates.items():
        values[name] = torch.stack(seq)[:, 0].numpy()
    return Activations(probe.cell, layer, list(probe.chars), values)
