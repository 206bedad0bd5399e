"""What every figure shares: the template, the cell colours, the layout, log axes."""
from __future__ import annotations

import math

import plotly.graph_objects as go

TEMPLATE = "plotly_white"
CELL_COLORS = {"rnn": "#d62728", "lstm": "#1f77b4", "gru": "#2ca02c"}
# top right inside the plot area (a legend above the plot would cover the title)
LEGEND_INSIDE = dict(x=0.99, xanchor="right", y=0.99, yanchor="top",
                     bgcolor="rgba(255,255,255,0.7)")


def _layout(fig: go.Figure, title: str, xaxis: str, yaxis: str, **kw) -> go.Figure:
    margin = {**dict(l=50, r=20, t=50, b=45), **kw.pop("margin", {})}
    fig.update_layout(template=TEMPLATE, title=title, yaxis_title=yaxis, margin=margin, **kw)
    fig.update_xaxes(title_text=xaxis)  # every panel's
    return fig


def log_ticks(values) -> dict:
    """Axis settings for a log axis over a few known values (sequence lengths, k): a tick
    at each value, written in full ("4096", not "4k" or a bare "2" between decades)."""
    vals = sorted({float(v) for v in values if v and v > 0})
    return dict(type="log", tickmode="array", tickvals=vals, ticktext=[f"{v:g}" for v in vals])


def log_decades(values=(), pad: float = 0.0, exponentformat: str = "power") -> dict:
    """Axis settings for a log axis labelled at powers of ten only (10⁻³, 10⁰, 10³, or 1,
    10, 100 with ``exponentformat="none"``); with ``values``, the range covers them,
    widened by ``pad`` decades on each side."""
    axis = dict(type="log", dtick=1, exponentformat=exponentformat)
    vals = [float(v) for v in values if v is not None and v > 0 and math.isfinite(v)]
    if vals:
        axis["range"] = [math.log10(min(vals)) - pad, math.log10(max(vals)) + pad]
    return axis
