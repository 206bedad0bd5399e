"""Figures of the sequence-to-one readers (``rnncore.textbook.reader``) and of the three
ways to end a poem (``rnncore.textbook.stopping``), for the Architectures page."""
from __future__ import annotations

from collections import Counter

import plotly.graph_objects as go

from rnncore.plots._base import CELL_COLORS, LEGEND_INSIDE, _layout

READER_COLORS = {"bag": "#7f7f7f", "forward": CELL_COLORS["lstm"],
                 "bidirectional": CELL_COLORS["rnn"]}
READER_NAMES = {"bag": "bag of characters", "forward": "forward reader",
                "bidirectional": "bidirectional reader"}
LENGTH_COLORS = {"held-out": "#2f2f2f", "eos": "#1f77b4", "stop": "#d62728",
                 "length": "#2ca02c"}
LENGTH_NAMES = {"held-out": "held-out poems", "eos": "<eos> symbol", "stop": "stop unit",
                "length": "predicted length"}


def reader_accuracy_figure(results: dict, title: str) -> go.Figure:
    """Held-out accuracy after each epoch per reader, with the majority-class rate dotted.
    ``results``: label -> ``ReaderResult.to_dict()``; the first solid, later ones dashed."""
    fig = go.Figure()
    for k, (label, r) in enumerate(results.items()):
        for reader, curve in r["accuracy"].items():
            fig.add_scatter(x=list(range(1, len(curve) + 1)), y=curve, mode="lines+markers",
                            name=f"{READER_NAMES[reader]} · {label}",
                            line=dict(color=READER_COLORS[reader], width=2 if k == 0 else 1.5,
                                      dash="solid" if k == 0 else "dash"))
        fig.add_hline(y=r["majority"], line=dict(color="#bbbbbb", dash="dot"),
                      annotation_text=f"majority class · {label}",
                      annotation_position="bottom right")
    fig.update_yaxes(tickformat=".0%", rangemode="tozero")
    return _layout(fig, title, "epoch", "held-out accuracy",
                   legend=dict(orientation="h", x=0, y=-0.2, yanchor="top"))


def length_distribution_figure(lines: dict[str, list[int]], title: str) -> go.Figure:
    """Share of poems with each line count: the held-out poems as bars, each decoder's
    samples as a line. ``lines``: name ("held-out", "eos", "stop", "length") -> counts."""
    fig = go.Figure()
    support = sorted({v for values in lines.values() for v in values})
    for name, values in lines.items():
        counts, n = Counter(values), max(len(values), 1)
        y = [counts[v] / n for v in support]
        label = f"{LENGTH_NAMES.get(name, name)} (mean {sum(values) / n:.1f})"
        if name == "held-out":
            fig.add_bar(x=support, y=y, name=label, marker_color=LENGTH_COLORS[name],
                        opacity=0.35)
        else:
            fig.add_scatter(x=support, y=y, mode="lines+markers", name=label,
                            line=dict(color=LENGTH_COLORS.get(name), width=2))
    fig.update_yaxes(tickformat=".0%")
    return _layout(fig, title, "lines in the poem", "share of poems", legend=LEGEND_INSIDE)
