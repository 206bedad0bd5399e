"""Figures of the textbook chapter's experiments (``rnncore.textbook``, the Architectures
page): leaky units against the LSTM, chain against tree, teacher forcing against free
running."""
from __future__ import annotations

import plotly.graph_objects as go

from rnncore.plots._base import CELL_COLORS, LEGEND_INSIDE, _layout
from rnncore.plots.gradflow import _char_axis, _rgba


def _leaky_color(model: str) -> str:
    """Leaky units from light (alpha 0) to dark red (alpha near 1); LSTMs in the LSTM colour."""
    if not model.startswith("leaky"):
        return CELL_COLORS["lstm"]
    alpha = float(model.split("=")[1])
    return f"rgba(214, 39, 40, {0.25 + 0.75 * alpha:.2f})"


def leaky_lag_figure(lags) -> go.Figure:
    """||dh_T/dh_(T-L)||_2 vs lag L, log scale, one line per model. ``lags``: a frame with
    model, lag, norm (``LeakySweep.lags``); an untrained LSTM is dotted."""
    fig = go.Figure()
    for model, df in lags.groupby("model", sort=False):
        df = df.sort_values("lag")
        fig.add_scatter(x=df["lag"], y=df["norm"], mode="lines", name=model,
                        line=dict(color=_leaky_color(model), width=2,
                                  dash="dot" if model.startswith("fresh") else "solid"))
    fig.update_yaxes(type="log", exponentformat="power")
    return _layout(fig, "Gradient reaching back L characters", "lag L (characters)",
                   "‖∂h_T/∂h_(T−L)‖₂", legend=LEGEND_INSIDE)


def retention_figure(retention, chars) -> go.Figure:
    """Share of the old state kept on each unit's own path, per character: alpha for leaky
    units, the forget gate f_t for LSTMs (mean over units, band = min to max).
    ``retention``: model, t, mean, low, high (``LeakySweep.retention``)."""
    fig = go.Figure()
    for model, df in retention.groupby("model", sort=False):
        df = df.sort_values("t")
        color = _leaky_color(model)
        if not model.startswith("leaky"):
            fig.add_scatter(x=list(df["t"]) + list(df["t"])[::-1],
                            y=list(df["high"]) + list(df["low"])[::-1], fill="toself",
                            fillcolor=_rgba(color, 0.08 if model.startswith("fresh") else 0.15),
                            line=dict(width=0), hoverinfo="skip", showlegend=False)
        fig.add_scatter(x=df["t"], y=df["mean"], mode="lines", name=model,
                        line=dict(color=color, width=2,
                                  dash="dot" if model.startswith("fresh") else "solid"))
    _char_axis(fig, chars)
    return _layout(fig, "What each step keeps of the old state: α (leaky) vs f_t (LSTM)",
                   "character", "share kept",
                   legend=dict(orientation="h", x=0, y=-0.25, yanchor="top"))


def tree_chain_figure(frame, chars) -> go.Figure:
    """||d root/d x_i||_2 for a chain and a balanced tree: against the character i (left)
    and against the leaf's path length in combines (right). ``frame``: structure, leaf,
    path, norm (``TreeResult.frame``)."""
    from plotly.subplots import make_subplots

    fig = make_subplots(rows=1, cols=2, subplot_titles=(
        "against the character", "against the path to the root"))
    colors = {"chain": CELL_COLORS["rnn"], "tree": CELL_COLORS["gru"]}
    for structure, df in frame.groupby("structure", sort=False):
        df = df.sort_values("leaf")
        c = colors.get(structure)
        fig.add_scatter(x=df["leaf"], y=df["norm"], mode="lines+markers", name=structure,
                        line=dict(color=c), marker=dict(size=4), row=1, col=1)
        fig.add_scatter(x=df["path"], y=df["norm"], mode="markers", name=structure,
                        marker=dict(color=c, size=6), showlegend=False, row=1, col=2)
    fig.update_yaxes(type="log", exponentformat="power")
    fig.update_yaxes(title_text="‖∂root/∂x_i‖₂", row=1, col=1)
    fig.update_xaxes(title_text="combines between x_i and the root", row=1, col=2)
    # half a page is too narrow for one tick label per character: hover names them instead
    fig.update_traces(text=[c for c in chars], hovertemplate="%{text}: %{y:.2e}", row=1, col=1)
    return _layout(fig, "Chain (depth T) vs balanced tree (depth log₂ T)", "character i",
                   "", legend=LEGEND_INSIDE)


EXPOSURE_COLORS = {"teacher": "#1f77b4", "free": "#d62728", "other": "#7f7f7f"}
EXPOSURE_NAMES = {"teacher": "true history (teacher forcing)",
                  "free": "own samples (free running)",
                  "other": "another poem's true history"}


def exposure_figure(results: dict) -> go.Figure:
    """Bits of the true next token per position under each history, ±1 standard error.
    ``results``: label -> ``ExposureResult.to_dict()``; the first is drawn solid with bands,
    later ones dashed."""
    fig = go.Figure()
    for k, (label, r) in enumerate(results.items()):
        x = r["positions"]
        for h in ("teacher", "free", "other"):
            y, e, c = r[h], r["sem_" + h], EXPOSURE_COLORS[h]
            if k == 0:
                fig.add_scatter(x=list(x) + list(x)[::-1],
                                y=[a + b for a, b in zip(y, e)] + [a - b for a, b in
                                                                   zip(y, e)][::-1],
                                fill="toself", fillcolor=_rgba(c, 0.15), line=dict(width=0),
                                hoverinfo="skip", showlegend=False)
            fig.add_scatter(x=x, y=y, mode="lines", name=f"{EXPOSURE_NAMES[h]} · {label}",
                            line=dict(color=c, width=2 if k == 0 else 1.5,
                                      dash="solid" if k == 0 else "dash"))
    return _layout(fig, "Loss of the true next character along the poem", "position t",
                   "bits", legend=dict(orientation="h", x=0, y=-0.2, yanchor="top"))
