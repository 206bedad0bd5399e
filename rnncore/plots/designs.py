"""Figures of the chapter's design comparisons (``rnncore.textbook.patterns``,
``rnncore.textbook.depth``; the Architectures page): the design patterns at equal CPU time
and depth in three places at equal parameter count."""
from __future__ import annotations

import plotly.graph_objects as go
from plotly.subplots import make_subplots

from rnncore.plots._base import CELL_COLORS, LEGEND_INSIDE, _layout, log_ticks

PATTERN_COLORS = ("#d62728", "#1f77b4", "#9467bd", "#17becf", "#8c564b")
PLACE_COLORS = {"shallow": CELL_COLORS["rnn"], "input": "#2ca02c", "transition": "#1f77b4",
                "output": "#ff7f0e"}


def patterns_figure(results: dict) -> go.Figure:
    """Left: held-out bits per character against CPU seconds of training; right: held-out
    bits when each step reads only the last c characters (dotted: the whole poem).
    ``results``: label -> ``PatternsResult.to_dict()``; the first solid, later dashed."""
    fig = make_subplots(rows=1, cols=2, subplot_titles=(
        "at equal CPU time", "reading only the last c characters"))
    contexts = set()
    for k, (label, r) in enumerate(results.items()):
        dash = "solid" if k == 0 else "dash"
        for i, m in enumerate(r["models"]):
            color = PATTERN_COLORS[i % len(PATTERN_COLORS)]
            name = m["name"] + (f" · {label}" if k else "")
            curve = m["fit"]["curve"]
            fig.add_scatter(x=[c[1] for c in curve], y=[c[2] for c in curve],
                            mode="lines+markers", name=name, legendgroup=name,
                            line=dict(color=color, dash=dash), row=1, col=1)
            cs = sorted(int(c) for c in m["context"])
            contexts.update(cs)
            fig.add_scatter(x=cs, y=[m["context"][c] for c in cs],
                            mode="lines+markers", name=name, legendgroup=name,
                            showlegend=False, line=dict(color=color, dash=dash), row=1, col=2)
            fig.add_scatter(x=[min(cs), max(cs)], y=[m["full_bits"]] * 2, mode="lines",
                            legendgroup=name, showlegend=False, hoverinfo="skip",
                            line=dict(color=color, dash="dot", width=1), row=1, col=2)
    _layout(fig, "Pattern 1 (hidden recurrence) vs pattern 2 (output recurrence)", "", "",
            legend=dict(orientation="h", x=0, y=-0.25, yanchor="top"))
    fig.update_xaxes(title_text="CPU seconds of training (one thread)", row=1, col=1)
    fig.update_xaxes(title_text="characters of context c", **log_ticks(contexts), row=1,
                     col=2)
    fig.update_yaxes(title_text="held-out bits per character", row=1, col=1)
    return fig


def depth_figure(results: dict) -> go.Figure:
    """Left: held-out bits per character along training, one line per place; right: the
    final bits against CPU milliseconds per step. ``results``: label ->
    ``DepthResult.to_dict()``; the first solid, later dashed (open markers)."""
    fig = make_subplots(rows=1, cols=2, subplot_titles=(
        "along training (equal steps)", "final loss against time per step"))
    for k, (label, r) in enumerate(results.items()):
        for m in r["models"]:
            color, fit = PLACE_COLORS[m["place"]], m["fit"]
            name = f"{m['place']} (H={m['hidden_size']})" + (f" · {label}" if k else "")
            fig.add_scatter(x=[c[0] for c in fit["curve"]], y=[c[2] for c in fit["curve"]],
                            mode="lines+markers", name=name, legendgroup=name,
                            line=dict(color=color, dash="solid" if k == 0 else "dash"),
                            row=1, col=1)
            fig.add_scatter(x=[1000 * fit["sec_per_step"]], y=[fit["val_bpc"]],
                            mode="markers+text", text=[m["place"]], textposition="top center",
                            legendgroup=name, showlegend=False,
                            marker=dict(color=color, size=11,
                                        symbol="circle" if k == 0 else "circle-open"),
                            row=1, col=2)
    _layout(fig, "Depth in three places at equal parameter count", "", "",
            legend=LEGEND_INSIDE)
    fig.update_xaxes(title_text="training step", row=1, col=1)
    fig.update_xaxes(title_text="CPU ms per step (one thread)", row=1, col=2)
    fig.update_yaxes(title_text="held-out bits per character", row=1, col=1)
    return fig
