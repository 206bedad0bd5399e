"""The spectrum of W_hh's gate blocks: measuring it and rescaling it.

W_hh (G*H, H) stacks one (H, H) block W_g per gate in torch's order. Without the
nonlinearity the lag-L Jacobian of a vanilla RNN is W_hh^L, whose norm grows like
rho^L, rho = max |eig(W_hh)|: the textbook vanish (rho < 1) / explode (rho > 1) rule
the rho sweep tests.
"""
from __future__ import annotations

import pandas as pd
import torch
from torch import Tensor

from rnncore.gradflow.config import GradFlowError, check_rho
from rnncore.kinds import cell_kind, cell_of, layer_weights


def gate_blocks(cell: str, w_hh: Tensor, H: int) -> dict[str, Tensor]:
    """{gate: rows of that gate} of anything stacked like W_hh (split along dim 0)."""
    kind = cell_kind(cell)
    # a vanilla RNN's W_hh is one block, reported under its output h, not its pre-activation
    names = kind.gate_names if kind.gates > 1 else ("h",)
    return dict(zip(names, w_hh.split(H, dim=0)))


def spectral_radii(model) -> pd.DataFrame:
    """Columns: layer, gate, spectral_radius (max |eigenvalue|), spectral_norm (max
    singular value) of each W_hh gate block (the whole W_hh for a vanilla RNN)."""
    cell, rnn = cell_of(model), model.rnn
    rows = []
    for layer in range(rnn.num_layers):
        w_hh = layer_weights(rnn, layer)[1].detach().double()
        for gate, block in gate_blocks(cell, w_hh, rnn.hidden_size).items():
            rows.append((layer, gate, float(torch.linalg.eigvals(block).abs().max()),
                         float(torch.linalg.matrix_norm(block, ord=2))))
    return pd.DataFrame(rows, columns=["layer", "gate", "spectral_radius", "spectral_norm"])


@torch.no_grad()
def rescale_recurrent_(model, rho: float) -> None:
    """In place: scale every W_hh gate block so its spectral radius is ``rho``."""
    rho = check_rho(rho)
    cell, rnn = cell_of(model), model.rnn
    for layer in range(rnn.num_layers):
        w_hh = layer_weights(rnn, layer)[1]
        for block in gate_blocks(cell, w_hh, rnn.hidden_size).values():
            radius = float(torch.linalg.eigvals(block.double()).abs().max())
            if radius == 0.0:
                raise GradFlowError("cannot rescale an all-zero recurrent matrix")
            block.mul_(rho / radius)
