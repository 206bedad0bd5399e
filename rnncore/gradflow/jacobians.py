"""Jacobian products dh_{T-1}/dh_{T-1-L}: how far back a change in the state still moves
the last one, and how that depends on the spectral radius of W_hh.

Per layer, with the layer's inputs held fixed and J_t = ds_t/ds_{t-1} (S x S, S = H, or
2H for LSTM's (h, c))::

    dh_{T-1}/dh_{T-1-L} = P_h J_{T-1} ... J_{T-L} E_h        L = 1..T

the h->h block of the state product (LSTM: c_{T-1-L} held fixed); lag T is the
derivative with respect to the initial (zero) state. Its spectral norm is reported per
lag with the slope of ln(norm) vs lag (exp(slope): the mean per-step factor) and the
first lag whose norm falls below ``VANISH_RATIO`` of lag 1's.
"""
from __future__ import annotations

import copy
import math
from dataclasses import dataclass
from typing import Sequence

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from torch import Tensor

from rnncore.cells import cell_step
from rnncore.gradflow.config import (EXACT_MAX_HIDDEN, JACOBIAN_METHODS, RHO_VALUES,
                                     SLOPE_FLAT, VANISH_RATIO, check_choice)
from rnncore.gradflow.probe import Probe
from rnncore.gradflow.spectral import rescale_recurrent_, spectral_radii
from rnncore.gradflow.unroll import hidden_grads, unroll
from rnncore.kinds import layer_weights


@dataclass
class StepLinearization:
    """J_t = ds_t/ds_{t-1} of one layer for all t, in the factored form every cell has:
    each output unit j depends on unit j of each gate's recurrent pre-activation
    rec = W_hh h + b_hh and on unit j of the old state (the "direct" path), so

        J_t[p, h-block] = sum_g diag(rec_coef[t, p, g]) W_g + diag(dir_coef[t, p, 0])
        J_t[p, c-block] = diag(dir_coef[t, p, 1])                        (LSTM only)

    with p the output part (h', and c' for LSTM) and W_g the (H, H) gate blocks of W_hh.
    The coefficients are read from autograd on ``rnncore.cells`` (one VJP per output part
    with a ones cotangent: unit-wise structure makes that sum the diagonal), the test suite
    checks the product against torch.func.jacrev of the whole step. Shapes: rec_coef
    (T, P, G, H), dir_coef (T, P, P, H), state size S = P*H.
    """

    cell: str
    w_hh: Tensor
    rec_coef: Tensor
    dir_coef: Tensor
    prev: Tensor            # (T, S) state entering step t (for reference Jacobians)
    x_proj: Tensor          # (T, G*H)
    b_hh: Tensor | None = None
    nonlinearity: str = "tanh"

    @property
    def hidden_size(self) -> int:
        return self.w_hh.shape[1]

    @property
    def seq_len(self) -> int:
        return self.rec_coef.shape[0]

    def jvp(self, t: int, v: Tensor) -> Tensor:
        """J_t v for a batch v (n, S)."""
        H, P = self.hidden_size, self.rec_coef.shape[1]
        v = v.reshape(-1, P, H)
        wv = F.linear(v[:, 0], self.w_hh).reshape(len(v), 1, -1, H)       # (n, 1, G, H)
        out = (self.rec_coef[t] * wv).sum(2) + (self.dir_coef[t] * v[:, None]).sum(2)
        return out.reshape(len(v), P * H)

    def vjp(self, t: int, u: Tensor) -> Tensor:
        """J_t^T u for a batch u (n, S) (rows: u^T J_t)."""
        H, P = self.hidden_size, self.rec_coef.shape[1]
        u = u.reshape(-1, P, 1, H)
        r = (self.rec_coef[t] * u).sum(1).reshape(len(u), -1)             # (n, G*H)
        out = (self.dir_coef[t] * u).sum(1)                                # (n, P, H)
        out[:, 0] += r @ self.w_hh
        return out.reshape(len(u), P * H)

    def dense(self) -> Tensor:
        """All J_t as (T, S, S) (small H only)."""
        S = self.prev.shape[1]
        eye = torch.eye(S, dtype=self.prev.dtype)
        return torch.stack([self.jvp(t, eye).T for t in range(self.seq_len)])


def _step_fn(cell: str, nonlinearity: str, w_hh: Tensor, b_hh: Tensor | None):
    """s (n, S), x_proj (n, G*H) -> s' (n, S), state flattened h then c."""
    step = cell_step(cell, nonlinearity)
    H = w_hh.shape[1]

    def f(s: Tensor, xp: Tensor) -> Tensor:
        return torch.cat(step(xp, s.split(H, dim=-1), w_hh, b_hh)[0], dim=-1)

    return f


def linearize(probe: Probe, layer: int = -1, model=None) -> StepLinearization:
    """The per-step Jacobians of ``layer`` along the probe's sequence (inputs from the
    layer below held fixed)."""
    model = probe.model if model is None else model
    layer = probe.layer_index(layer)
    with torch.no_grad():
        _, traces = unroll(model, probe.inputs)
    tr = traces[layer]
    T, H, P = probe.seq_len, probe.hidden_size, probe.kind.state_parts
    prev = torch.stack([torch.cat(tr.prev_state(t), -1)[0] for t in range(T)])
    xp = tr.x_proj[:, 0].detach()
    _, w_hh, _, b_hh = layer_weights(model.rnn, layer)
    w_hh = w_hh.detach()
    b_hh = None if b_hh is None else b_hh.detach()
    nonlinearity = getattr(model.rnn, "nonlinearity", "tanh")
    # feed rec = W_hh h + b_hh as a bias with a zero W_hh: h then only enters directly
    rec = F.linear(prev[:, :H], w_hh, b_hh).requires_grad_(True)
    direct = prev.clone().requires_grad_(True)
    out = _step_fn(probe.cell, nonlinearity, torch.zeros_like(w_hh), rec)(direct, xp)
    rec_coef, dir_coef = [], []
    for part in range(P):
        cot = torch.zeros_like(out)
        cot[:, part * H:(part + 1) * H] = 1.0
        g_rec, g_dir = torch.autograd.grad(out, [rec, direct], cot, retain_graph=True,
                                           allow_unused=True)
        rec_coef.append(g_rec.reshape(T, -1, H))
        dir_coef.append(torch.zeros_like(direct).reshape(T, P, H) if g_dir is None
                        else g_dir.reshape(T, P, H))
    return StepLinearization(probe.cell, w_hh, torch.stack(rec_coef, 1),
                             torch.stack(dir_coef, 1), prev, xp, b_hh, nonlinearity)


def step_jacobians_autograd(lin: StepLinearization) -> Tensor:
    """Reference J_t for every t: (T, S, S) from torch.func.jacrev of the whole cell step
    (no structure assumed)."""
    fn = _step_fn(lin.cell, lin.nonlinearity, lin.w_hh, lin.b_hh)
    single = lambda s, xp: fn(s[None], xp[None])[0]  # noqa: E731
    return torch.func.vmap(torch.func.jacrev(single))(lin.prev, lin.x_proj)


def _exact_norms(lin: StepLinearization) -> np.ndarray:
    """||P_h J_{T-1}...J_{T-L} E_h||_2 for L = 1..T: the h rows of the product, built by
    one batched VJP per step (H rows at a time), then one batched SVD."""
    T, H, S = lin.seq_len, lin.hidden_size, lin.prev.shape[1]
    rows = torch.eye(H, S, dtype=lin.prev.dtype)
    blocks = []
    for L in range(1, T + 1):
        rows = lin.vjp(T - L, rows)
        blocks.append(rows[:, :H])
    return torch.linalg.matrix_norm(torch.stack(blocks), ord=2).numpy()


def _power_norms(lin: StepLinearization, iters: int, seed: int = 0, tol: float = 1e-7
                 ) -> np.ndarray:
    """The same norms by power iteration on M^T M with JVP/VJP only (no S x S matrix).

    All lags at once: row j of the batch holds lag L = T - j's vector; the forward sweep
    applies J_t to rows 0..t, the backward sweep J_t^T to rows 0..t, so each row sees
    exactly J_{T-1}...J_{T-L} and its transpose. Cost per iteration ~ T^2/2 VJPs, so
    ``exact`` (T*H VJPs) is cheaper unless H is large.
    """
    T, H, S = lin.seq_len, lin.hidden_size, lin.prev.shape[1]
    gen = torch.Generator().manual_seed(seed)
    v = torch.randn(T, H, generator=gen, dtype=lin.prev.dtype)
    v = v / v.norm(dim=1, keepdim=True)
    sigma = torch.zeros(T, dtype=lin.prev.dtype)

    def embed(u: Tensor) -> Tensor:
        return torch.cat([u, u.new_zeros(u.shape[0], S - H)], 1) if S > H else u

    for _ in range(iters):
        x = embed(v)
        for t in range(T):
            x = torch.cat([lin.jvp(t, x[:t + 1]), x[t + 1:]])
        new_sigma = x[:, :H].norm(dim=1)
        u = embed(x[:, :H] / new_sigma.clamp_min(1e-300)[:, None])
        for t in range(T - 1, -1, -1):
            u = torch.cat([lin.vjp(t, u[:t + 1]), u[t + 1:]])
        v = u[:, :H] / u[:, :H].norm(dim=1, keepdim=True).clamp_min(1e-300)
        done = torch.all((new_sigma - sigma).abs() <= tol * new_sigma.clamp_min(1e-300))
        sigma = new_sigma
        if done:
            break
    return sigma.flip(0).numpy()          # row j = lag T - j -> lags 1..T


@dataclass
class JacobianResult:
    """``frame``: lag, norm (spectral norm of dh_{T-1}/dh_{T-1-lag}), log10_norm.
    ``slope``: least-squares slope of ln(norm) vs lag (per step; exp(slope) is the
    average per-step factor). ``vanish_lag``: first lag with norm < 1e-3 * norm(lag 1)."""

    cell: str
    layer: int
    method: str
    frame: pd.DataFrame
    slope: float
    vanish_lag: int | None

    def to_dict(self) -> dict:
        return {"cell": self.cell, "layer": self.layer, "method": self.method,
                "slope": self.slope, "vanish_lag": self.vanish_lag,
                "norms": self.frame["norm"].tolist()}


def _summarise_norms(norms: np.ndarray) -> tuple[float, int | None]:
    """(slope, vanish_lag) of lags 1..T's norms, as ``JacobianResult`` describes them."""
    lags = np.arange(1, len(norms) + 1)
    ok = np.isfinite(norms) & (norms > 0)
    slope = float(np.polyfit(lags[ok], np.log(norms[ok]), 1)[0]) if ok.sum() >= 2 else math.nan
    below = np.nonzero(norms < VANISH_RATIO * norms[0])[0]
    return slope, (int(lags[below[0]]) if len(below) else None)


def jacobian_norms(probe: Probe, layer: int = -1, method: str = "auto", iters: int = 30,
                   model=None) -> JacobianResult:
    """Spectral norm of dh_{T-1}/dh_{T-1-L} for L = 1..T (within ``layer``; its inputs
    from the layer below held fixed). ``exact`` multiplies full per-step Jacobians,
    ``power`` uses JVP/VJP only; ``auto`` = exact up to H = 1024 (where it is cheaper)."""
    check_choice("jacobian method", method, JACOBIAN_METHODS)
    if method == "auto":
        method = "exact" if probe.hidden_size <= EXACT_MAX_HIDDEN else "power"
    lin = linearize(probe, layer, model)
    norms = _exact_norms(lin) if method == "exact" else _power_norms(lin, iters)
    slope, vanish = _summarise_norms(norms)
    frame = pd.DataFrame({"lag": np.arange(1, len(norms) + 1), "norm": norms,
                          "log10_norm": np.log10(np.maximum(norms, 1e-300))})
    return JacobianResult(probe.cell, probe.layer_index(layer), method, frame, slope, vanish)


def _verdict(slope: float) -> str:
    """What a per-step slope of ln(norm) says: vanish, explode, or flat (|slope| <=
    SLOPE_FLAT)."""
    if not math.isfinite(slope):
        return "undefined"
    return "vanish" if slope < -SLOPE_FLAT else "explode" if slope > SLOPE_FLAT else "flat"


def rho_sweep(probe: Probe, rhos: Sequence[float] = RHO_VALUES,
              layer: int = -1, method: str = "auto", iters: int = 30) -> pd.DataFrame:
    """Rescale W_hh to each rho and measure what happens at long lags.

    Columns: rho, measured_rho (after rescaling), jac_lag1, jac_lag_mid, jac_lag_max,
    slope, decay_per_step (exp slope), linear_slope (ln rho: the slope if tanh' were 1
    and the norm followed the spectral radius), vanish_lag, grad_ratio
    (||dL/dh_0|| / ||dL/dh_{T-1}|| for loss on the last step), mean_deriv (mean f'(a)
    for RNN, mean gate derivative proxy otherwise: mean of 1 - h^2), saturated (fraction
    of |h| > 0.99), textbook ("vanish" if rho < 1, "explode" if rho > 1, else "flat"),
    observed (from the measured slope), agrees, norms (the whole curve, lags 1..T).
    """
    layer = probe.layer_index(layer)
    rows = []
    base_state = copy.deepcopy(probe.model.state_dict())
    try:
        for rho in rhos:
            rescale_recurrent_(probe.model, rho)
            radii = spectral_radii(probe.model)
            jac = jacobian_norms(probe, layer, method, iters)
            norms = jac.frame["norm"].to_numpy()
            g = np.linalg.norm(hidden_grads(probe, "last")[layer], axis=-1)
            with torch.no_grad():
                _, traces = unroll(probe.model, probe.inputs)
            h = torch.stack(traces[layer].h).numpy()
            textbook = "vanish" if rho < 1 else "explode" if rho > 1 else "flat"
            observed = _verdict(jac.slope)
            rows.append(dict(
                rho=float(rho), measured_rho=float(radii[radii.layer == layer]
                                                   .spectral_radius.max()),
                jac_lag1=float(norms[0]), jac_lag_mid=float(norms[len(norms) // 2 - 1]),
                jac_lag_max=float(norms[-1]), slope=jac.slope,
                decay_per_step=math.exp(jac.slope) if math.isfinite(jac.slope) else math.nan,
                linear_slope=math.log(rho), vanish_lag=jac.vanish_lag,
                grad_ratio=float(g[0] / g[-1]) if g[-1] > 0 else math.nan,
                mean_deriv=float(np.mean(1 - h ** 2)), saturated=float(np.mean(np.abs(h) > 0.99)),
                textbook=textbook, observed=observed, agrees=textbook == observed,
                norms=norms.tolist()))
            probe.model.load_state_dict(base_state)
    finally:
        probe.model.load_state_dict(base_state)
    return pd.DataFrame(rows)
