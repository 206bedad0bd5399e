"""Leaky units against the LSTM: how far back a state still moves the last one.

For a layer with step s_t = step(x_proj_t, s_{t-1}) (``cells.cell_step`` signature), inputs
held fixed, J_t = ds_t/ds_{t-1} (S x S, S = H or 2H for LSTM's (h, c)) from autograd
(``torch.func.jacrev`` of the step, no structure assumed) and

    G_L = dh_{T-1}/dh_{T-1-L} = P_h J_{T-1} ... J_{T-L} E_h        L = 1..T   (H x H)

as ``gradflow.jacobians`` defines it (LSTM: c_{T-1-L} held fixed). ``lag_norms`` returns
||G_L||_2. A leaky unit (``rnncore.textbook.leaky``) has J_t = alpha I + (1 - alpha)
diag(1 - u_t^2) W_hh, so as alpha -> 1 the product tends to I: the gradient survives, and
the state keeps a fixed share alpha of itself whatever the input. The LSTM's cell path is
diag(f_t), with f_t chosen per character.

``leaky_sweep`` runs one poem through leaky units for each alpha (the weights of one fresh
tanh RNN, so alpha is the only difference; alpha = 0 is that RNN), a fresh LSTM of the
same size and, if asked, the bundled trained LSTM (its top layer).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from torch import Tensor

from rnncore.cells import cell_step
from rnncore.gradflow.config import GradFlowConfig, GradFlowError
from rnncore.gradflow.probe import prepare
from rnncore.gradflow.unroll import unroll
from rnncore.kinds import layer_weights

ALPHAS = (0.0, 0.5, 0.9, 0.99)


def step_jacobians(step, x_proj: Tensor, init: tuple[Tensor, ...], w_hh: Tensor,
                   b_hh: Tensor | None) -> tuple[Tensor, Tensor]:
    """Run ``step`` from ``init`` over x_proj (T, G*H) and return (J (T, S, S), the states
    entering each step (T, S)); the state tuple is concatenated along units."""
    H = init[0].shape[-1]

    def one(s: Tensor, xp: Tensor) -> Tensor:
        state = tuple(p[None] for p in s.split(H))
        return torch.cat(step(xp[None], state, w_hh, b_hh)[0], -1)[0]

    with torch.no_grad():
        prev, s = [], torch.cat(init, -1)
        for t in range(x_proj.shape[0]):
            prev.append(s)
            s = one(s, x_proj[t])
        prev = torch.stack(prev)
    return torch.func.vmap(torch.func.jacrev(one))(prev, x_proj.detach()), prev


def lag_norms(jac: Tensor, hidden_size: int) -> np.ndarray:
    """||P_h J_{T-1} ... J_{T-L} E_h||_2 for L = 1..T from J (T, S, S)."""
    T, S = jac.shape[0], jac.shape[1]
    rows = torch.eye(hidden_size, S, dtype=jac.dtype)
    blocks = []
    for L in range(1, T + 1):
        rows = rows @ jac[T - L]
        blocks.append(rows[:, :hidden_size])
    return torch.linalg.matrix_norm(torch.stack(blocks), ord=2).numpy()


@dataclass
class LeakySweep:
    """``lags``: model, alpha (NaN for LSTMs), lag, norm (= ||G_lag||_2).
    ``retention``: model, t, char, mean, low, high -- each step's share of the old state
    kept on the unit's own path: alpha for a leaky unit (the same at every step), the
    forget gate f_t for an LSTM (mean and min/max over units)."""

    chars: list[str]
    lags: pd.DataFrame
    retention: pd.DataFrame

    def far_norm(self, model: str) -> float:
        """||G_T||: the norm at the longest lag."""
        df = self.lags[self.lags.model == model]
        return float(df.sort_values("lag").norm.iloc[-1])

    def per_step_factor(self, model: str) -> float:
        """exp of the least-squares slope of ln ||G_L|| vs L (the mean per-step factor)."""
        df = self.lags[(self.lags.model == model) & (self.lags.norm > 0)]
        if len(df) < 2:
            return math.nan
        return float(math.exp(np.polyfit(df.lag, np.log(df.norm), 1)[0]))

    def describe(self) -> str:
        """What the numbers say, in two sentences (computed, not fixed text)."""
        T = int(self.lags.lag.max())
        leaky = [m for m in dict.fromkeys(self.lags.model) if m.startswith("leaky")]
        lstms = [m for m in dict.fromkeys(self.lags.model) if not m.startswith("leaky")]
        part = ", ".join(f"{m} {self.far_norm(m):.1e} (×{self.per_step_factor(m):.3f}/step)"
                         for m in leaky + lstms)
        text = f"After {T} characters ‖∂h_T/∂h_(T−L)‖ is {part}. "
        best = max(leaky, key=self.far_norm)
        beaten = [m for m in lstms if self.far_norm(best) > self.far_norm(m)]
        if beaten:
            text += (f"The most leaky unit ({best}) carries more gradient over the whole poem "
                     f"than the {' and the '.join(beaten)}. ")
        gated = self.retention[~self.retention.model.str.startswith("leaky")]
        for model, df in gated.groupby("model", sort=False):
            lo, hi = df["mean"].idxmin(), df["mean"].idxmax()
            text += (f"The {model}'s forget gate moves with the character: its mean over "
                     f"units ranges from {df['mean'][lo]:.2f} (at “{df.char[lo]}”) to "
                     f"{df['mean'][hi]:.2f} (at “{df.char[hi]}”), single units from "
                     f"{df.low.min():.2f} to {df.high.max():.2f}. ")
        return text + "A leaky unit keeps the same share α of its state at every character."


def _lstm_rows(probe, name: str) -> tuple[list, list]:
    """Lag rows and forget-gate rows of a CharRNN LSTM probe's top layer."""
    layer = probe.num_layers - 1
    with torch.no_grad():
        _, traces = unroll(probe.model, probe.inputs)
    tr = traces[layer]
    _, w_hh, _, b_hh = layer_weights(probe.model.rnn, layer)
    init = tuple(s[0] for s in tr.init)
    jac, _ = step_jacobians(cell_step("lstm"), tr.x_proj[:, 0].detach(), init, w_hh.detach(),
                            None if b_hh is None else b_hh.detach())
    norms = lag_norms(jac, probe.hidden_size)
    lag_rows = [(name, math.nan, L + 1, float(n)) for L, n in enumerate(norms)]
    ret_rows = []
    for t, f in enumerate(tr.gates["f"]):
        f = f[0].detach()
        ret_rows.append((name, t, probe.chars[t], float(f.mean()), float(f.min()),
                         float(f.max())))
    return lag_rows, ret_rows


def leaky_sweep(alphas=ALPHAS, hidden_size: int = 64, embedding_dim: int = 32,
                seq_len: int = 64, poem_index: int = 0, seed: int = 0,
                trained_lstm: bool = True) -> LeakySweep:
    """Lag curves of leaky units (each alpha, one fresh tanh RNN's weights), a fresh LSTM of
    the same size and (``trained_lstm``) the bundled LSTM, on the same poem, float64."""
    from rnncore.textbook.leaky import LeakyRNN, check_alpha

    alphas = [check_alpha(a) for a in alphas]
    if not alphas:
        raise GradFlowError("give at least one alpha")
    base = dict(hidden_size=hidden_size, embedding_dim=embedding_dim, seq_len=seq_len,
                poem_index=poem_index, seed=seed)
    rnn = prepare(GradFlowConfig(cell="rnn", **base))
    x = rnn.model.embedding(rnn.inputs)[0].detach()             # (T, E)
    lag_rows, ret_rows = [], []
    for alpha in alphas:
        layer = LeakyRNN(embedding_dim, hidden_size, alpha=alpha).double()
        layer.load_state_dict(rnn.model.rnn.state_dict())       # same names as rnncore.RNN
        w_ih, w_hh, b_ih, b_hh = (p.detach() for p in layer_weights(layer, 0))
        name = f"leaky α={alpha:g}"
        jac, _ = step_jacobians(layer.step_fn(), F.linear(x, w_ih, b_ih),
                                (x.new_zeros(hidden_size),), w_hh, b_hh)
        lag_rows += [(name, alpha, L + 1, float(n))
                     for L, n in enumerate(lag_norms(jac, hidden_size))]
        ret_rows += [(name, t, c, alpha, alpha, alpha) for t, c in enumerate(rnn.chars)]
    models = [("fresh LSTM", prepare(GradFlowConfig(cell="lstm", **base)))]
    if trained_lstm:
        from rnncore.generate import default_model_path

        models.append(("trained LSTM", prepare(GradFlowConfig(
            checkpoint=str(default_model_path()), seq_len=seq_len, poem_index=poem_index,
            seed=seed))))
    for name, probe in models:
        rows = _lstm_rows(probe, name)
        lag_rows += rows[0]
        ret_rows += rows[1]
    return LeakySweep(list(rnn.chars),
                      pd.DataFrame(lag_rows, columns=["model", "alpha", "lag", "norm"]),
                      pd.DataFrame(ret_rows, columns=["model", "t", "char", "mean", "low",
                                                      "high"]))
