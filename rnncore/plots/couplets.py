"""Figures of the encoder-decoder on couplets (``rnncore.textbook.couplets``, the
Architectures page): held-out bits of the 下句 given the 上句, per variant and per
character."""
from __future__ import annotations

import plotly.graph_objects as go

from rnncore.plots._base import _layout

COUPLET_COLORS = {"unconditional": "#7f7f7f", "fixed_small": "#ff7f0e", "fixed": "#1f77b4",
                  "attention": "#2ca02c"}


def couplet_figure(results: dict) -> go.Figure:
    """Left: bits per character of the 下句 for each variant (error bar: the standard error
    of its saving over the unconditional decoder); right: the same per character of the
    line. ``results``: label -> ``CoupletsResult.to_dict()``; the first is drawn solid,
    later ones dashed / hatched."""
    from plotly.subplots import make_subplots

    from rnncore.textbook.couplets import LABELS

    fig = make_subplots(rows=1, cols=2, column_widths=[0.4, 0.6], subplot_titles=(
        "whole 下句", "per character of the 下句"))
    for k, (label, r) in enumerate(results.items()):
        for v, bpc in r["bpc"].items():
            name = f"{LABELS[v]} · {label}"
            color = COUPLET_COLORS[v]
            fig.add_bar(x=[LABELS[v]], y=[bpc], name=name, marker_color=color,
                        marker_pattern_shape="" if k == 0 else "/", opacity=1 if k == 0
                        else 0.6, error_y=dict(type="data", array=[r["sem_saving"].get(v, 0)]),
                        legendgroup=name, showlegend=False, row=1, col=1,
                        hovertemplate=f"{name}: %{{y:.3f}} bits/char<extra></extra>")
            y = r["per_position"][v]
            fig.add_scatter(x=list(range(1, len(y) + 1)), y=y, mode="lines+markers", name=name,
                            legendgroup=name, line=dict(color=color, width=2 if k == 0 else
                                                        1.5, dash="solid" if k == 0 else "dash"),
                            marker=dict(size=5), row=1, col=2)
    fig.update_layout(barmode="group")
    fig.update_yaxes(title_text="bits per character", row=1, col=1)
    fig.update_xaxes(title_text="character of the 下句", dtick=1, row=1, col=2)
    return _layout(fig, "Held-out 下句 given the 上句: fixed c vs attention vs no 上句", "",
                   "", legend=dict(orientation="h", x=0, y=-0.25, yanchor="top"))
