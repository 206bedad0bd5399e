"""Gradient-flow charts (the Gradient Flow page)."""
from __future__ import annotations

import plotly.graph_objects as go

from rnncore.plots._base import CELL_COLORS, LEGEND_INSIDE, _layout, log_decades, log_ticks

# Inputs are what ``rnncore.gradflow`` returns (DataFrames / arrays); characters label the
# time axis by position (numeric x + tick text, so repeated characters stay apart).


def _char_axis(fig: go.Figure, chars, row=None, col=None) -> None:
    fig.update_xaxes(tickmode="array", tickvals=list(range(len(chars))),
                     ticktext=[c if len(c) == 1 else "␂" for c in chars], tickangle=0,
                     tickfont=dict(size=11), row=row, col=col)


def grad_norm_heatmap_figure(norms_by_cell: dict, chars) -> go.Figure:
    """Rows = cells, columns = time steps; colour = log10 ||dL/dh_t||.
    ``norms_by_cell``: {cell: 1-D array of norms over t}; ``chars``: the T input characters."""
    import numpy as np

    cells = list(norms_by_cell)
    z = np.array([np.log10(np.maximum(np.asarray(norms_by_cell[c], dtype=float), 1e-300))
                  for c in cells])
    hover = [[f"{c.upper()} t={t} {chars[t]}: ‖dL/dh_t‖ = {10 ** v:.3g}"
              for t, v in enumerate(row)] for c, row in zip(cells, z)]
    fig = go.Figure(go.Heatmap(z=z, x=list(range(len(chars))), y=[c.upper() for c in cells],
                               colorscale="Viridis", colorbar=dict(title="log10 norm"),
                               text=hover, hoverinfo="text"))
    _char_axis(fig, chars)
    return _layout(fig, "‖∂L/∂h_t‖ along the poem", "input character (time step t)", "cell")


def jacobian_lag_figure(curves: dict, reference: dict | None = None) -> go.Figure:
    """||dh_{T-1}/dh_{T-1-L}||_2 vs lag L on a log axis. ``curves``: {label: (lags, norms)};
    ``reference``: {label: (lags, values)} drawn dashed (e.g. a bound). The y axis spans
    the measured curves (a decade of margin), so a reference that runs off to 1e18 leaves
    the chart instead of flattening them."""
    fig = go.Figure()
    for label, (lags, norms) in curves.items():
        cell = str(label).split()[0].strip(",;:").lower()
        fig.add_scatter(x=list(lags), y=list(norms), mode="lines", name=label,
                        line=dict(color=CELL_COLORS.get(cell), width=2.5))
    for (label, (lags, values)), dash in zip((reference or {}).items(),
                                             ("dash", "dot", "dashdot", "longdash")):
        fig.add_scatter(x=list(lags), y=list(values), mode="lines", name=label,
                        line=dict(color="#7f7f7f", dash=dash))
    measured = [v for _, norms in curves.values() for v in norms]
    fig.update_yaxes(**log_decades(measured, pad=1.0))
    return _layout(fig, "‖∂h_T/∂h_(T−L)‖ vs lag", "lag L (steps back)", "spectral norm (log)",
                   legend=LEGEND_INSIDE)


def gate_stats_figure(frames: dict) -> go.Figure:
    """Per-step gate statistics (``gradflow.gate_stats``): median line with the 10-90 %
    band over units, one colour per cell. ``frames``: {cell: DataFrame}."""
    fig = go.Figure()
    for cell, df in frames.items():
        color = CELL_COLORS.get(cell, "#9467bd")  # e.g. "trained lstm"
        gate = str(df["gate"].iloc[0])
        fig.add_scatter(x=list(df["t"]), y=list(df["q90"]), mode="lines", line=dict(width=0),
                        showlegend=False, hoverinfo="skip", legendgroup=cell)
        fig.add_scatter(x=list(df["t"]), y=list(df["q10"]), mode="lines", line=dict(width=0),
                        fill="tonexty", fillcolor=_rgba(color, 0.18),
                        name=f"{cell.upper()} {gate} 10–90 %", legendgroup=cell,
                        hoverinfo="skip")
        fig.add_scatter(x=list(df["t"]), y=list(df["mean"]), mode="lines",
                        name=f"{cell.upper()} mean {gate}", line=dict(color=color),
                        legendgroup=cell)
    _char_axis(fig, list(next(iter(frames.values()))["char"]) if frames else [])
    fig.update_yaxes(range=[0, 1])
    return _layout(fig, "Gate values along the poem", "input character (time step t)",
                   "gate value", legend=LEGEND_INSIDE)


def _rgba(hex_color: str, alpha: float) -> str:
    h = hex_color.lstrip("#")
    r, g, b = (int(h[i:i + 2], 16) for i in (0, 2, 4))
    return f"rgba({r},{g},{b},{alpha})"


def truncation_bias_figure(frame) -> go.Figure:
    """``gradflow.truncation_bias`` rows: relative error ||g_k - g|| / ||g|| of regular
    truncation vs k (line), and of randomized truncation (mean over draws, and one draw
    on average) placed at its mean cut distance p / (1 - p)."""
    fig = go.Figure()
    reg = frame[frame["scheme"] == "regular"].sort_values("truncation_len")
    fig.add_scatter(x=list(reg["truncation_len"]), y=list(reg["rel_error"]),
                    mode="lines+markers", name="regular truncation", line=dict(color="#1f77b4"))
    rnd = frame[frame["scheme"] == "randomized"]
    if len(rnd):
        x = [p / (1 - p) if p < 1 else float(reg["truncation_len"].max()) for p in rnd["prob"]]
        labels = [f"p = {p:g}" for p in rnd["prob"]]
        draws = int(rnd["draws"].iloc[0])
        fig.add_scatter(x=x, y=list(rnd["rel_error"]), mode="markers+text", text=labels,
                        textposition="top center", name=f"randomized, mean of {draws} draws",
                        marker=dict(color="#2ca02c", size=10, symbol="diamond"))
        if "mean_rel_error" in rnd:
            fig.add_scatter(x=x, y=list(rnd["mean_rel_error"]), mode="markers",
                            name="randomized, a single draw (average)",
                            marker=dict(color="#d62728", size=9, symbol="x"))
    fig.update_xaxes(**log_ticks(reg["truncation_len"]))
    return _layout(fig, "Truncation: error of the gradient vs full BPTT",
                   "truncation length k (randomized: mean cut distance p/(1−p))",
                   "‖g_trunc − g_full‖ / ‖g_full‖",
                   legend=LEGEND_INSIDE)


def activation_heatmap_figure(values, chars, name: str = "h", max_units: int = 64) -> go.Figure:
    """Units x characters heatmap of one activation (``gradflow.activations().values``),
    values (T, H); at most ``max_units`` units are drawn."""
    import numpy as np

    v = np.asarray(values, dtype=float)[:, :max_units].T
    symmetric = name in ("h", "c", "g", "n", "a")
    fig = go.Figure(go.Heatmap(
        z=v, x=list(range(len(chars))), colorscale="RdBu_r" if symmetric else "Viridis",
        zmid=0 if symmetric else None, colorbar=dict(title=name),
        text=[[f"unit {u}, t={t} {chars[t]}: {v[u, t]:.3f}" for t in range(v.shape[1])]
              for u in range(v.shape[0])], hoverinfo="text"))
    _char_axis(fig, chars)
    return _layout(fig, f"Activation {name} per unit along the poem",
                   "input character (time step t)", "unit")
