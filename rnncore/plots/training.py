"""Live training charts (the Train page)."""
from __future__ import annotations

import plotly.graph_objects as go

from rnncore.plots._base import LEGEND_INSIDE, _layout

# ``steps`` / ``evals`` are lists of the record dicts ``rnncore.jobs`` collects:
# step {"step", "elapsed_s", "bpc", "grad_norm", "clipped", "tokens_per_s"},
# eval {"step", "elapsed_s", "train_bpc", "val_bpc"}; missing keys/None values are skipped.

def _series(records, key: str) -> tuple[list, list]:
    pairs = [(r["step"], r[key]) for r in records if r.get(key) is not None]
    return [p[0] for p in pairs], [p[1] for p in pairs]


def _moving_average(values: list[float], window: int) -> list[float]:
    """Trailing mean over up to ``window`` values (smooths noisy per-batch losses)."""
    out, total = [], 0.0
    for i, v in enumerate(values):
        total += v
        if i >= window:
            total -= values[i - window]
        out.append(total / min(i + 1, window))
    return out


def training_loss_figure(steps, evals, smooth: int = 20) -> go.Figure:
    """Train bits/char per step (raw, faint, and a trailing mean) and val bits/char per eval."""
    fig = go.Figure()
    x, y = _series(steps, "bpc")
    if x:
        fig.add_scatter(x=x, y=y, mode="lines", name="train (per batch)",
                        line=dict(color="#1f77b4", width=1), opacity=0.35)
        fig.add_scatter(x=x, y=_moving_average(y, max(1, smooth)), mode="lines",
                        name=f"train (mean of {smooth})", line=dict(color="#1f77b4", width=2))
    ex, ey = _series(evals, "val_bpc")
    if ex:
        fig.add_scatter(x=ex, y=ey, mode="lines+markers", name="validation",
                        line=dict(color="#ff7f0e", width=2))
    return _layout(fig, "Loss (bits per character)", "step", "bits / char",
                   legend=LEGEND_INSIDE)


def grad_norm_figure(steps, clip_norm: float | None = None) -> go.Figure:
    """Global gradient norm before clipping per step; clipped steps marked, threshold dashed."""
    fig = go.Figure()
    x, y = _series(steps, "grad_norm")
    if x:
        fig.add_scatter(x=x, y=y, mode="lines", name="‖∇θ L‖", line=dict(color="#7f7f7f"))
        clipped = [(r["step"], r["grad_norm"]) for r in steps
                   if r.get("clipped") and r.get("grad_norm") is not None]
        if clipped:
            fig.add_scatter(x=[c[0] for c in clipped], y=[c[1] for c in clipped],
                            mode="markers", name=f"clipped ({len(clipped)})",
                            marker=dict(color="#d62728", symbol="x", size=7))
    if clip_norm:
        fig.add_hline(y=clip_norm, line=dict(color="#d62728", dash="dash", width=1),
                      annotation_text=f"clip at {clip_norm:g}", annotation_position="top left")
    return _layout(fig, "Gradient norm (before clipping)", "step", "norm",
                   legend=LEGEND_INSIDE)


def _rate_average(steps, window: int) -> tuple[list, list]:
    """(step, characters per second over the trailing ``window`` steps): their characters
    over their seconds, so a few slow steps (an evaluation, a busy core) dent the line
    instead of making it jump."""
    rows = [(r["step"], r["tokens"], r["tokens"] / r["tokens_per_s"]) for r in steps
            if r.get("tokens") and r.get("tokens_per_s")]
    x, y, chars, secs = [], [], 0.0, 0.0
    for i, (step, tokens, seconds) in enumerate(rows):
        chars, secs = chars + tokens, secs + seconds
        if i >= window:
            chars, secs = chars - rows[i - window][1], secs - rows[i - window][2]
        x.append(step)
        y.append(chars / secs if secs > 0 else None)
    return x, y


def throughput_figure(steps, smooth: int = 20) -> go.Figure:
    """Characters per second: each step's (faint) and over the last ``smooth`` steps."""
    fig = go.Figure()
    x, y = _series(steps, "tokens_per_s")
    if x:
        fig.add_scatter(x=x, y=y, mode="lines", name="per step",
                        line=dict(color="#9467bd", width=1), opacity=0.3)
        sx, sy = _rate_average(steps, max(1, smooth))
        fig.add_scatter(x=sx, y=sy, mode="lines", name=f"last {smooth} steps",
                        line=dict(color="#9467bd", width=2))
    return _layout(fig, "Throughput", "step", "characters / s", legend=LEGEND_INSIDE)
