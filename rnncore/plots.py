"""Every plotly figure builder of the project.

The Streamlit pages and the benchmark reports both call these, so a chart looks the same
wherever it is shown. Builders are pure: data in (arrays, DataFrames, dicts), a
``plotly.graph_objects.Figure`` out; no computation of the quantities themselves.
"""
from __future__ import annotations

import plotly.graph_objects as go

TEMPLATE = "plotly_white"
CELL_COLORS = {"rnn": "#d62728", "lstm": "#1f77b4", "gru": "#2ca02c"}


def _layout(fig: go.Figure, title: str, xaxis: str, yaxis: str, **kw) -> go.Figure:
    fig.update_layout(template=TEMPLATE, title=title, xaxis_title=xaxis, yaxis_title=yaxis,
                      margin=dict(l=50, r=20, t=50, b=45), **kw)
    return fig


# --- training ---------------------------------------------------------------------------
# ``steps`` / ``evals`` are lists of the record dicts ``rnncore.jobs`` collects:
# step {"step", "elapsed_s", "bpc", "grad_norm", "clipped", "tokens_per_s"},
# eval {"step", "elapsed_s", "train_bpc", "val_bpc"}; missing keys/None values are skipped.

# top right inside the plot area (a legend above the plot would cover the title)
_LEGEND_INSIDE = dict(x=0.99, xanchor="right", y=0.99, yanchor="top",
                      bgcolor="rgba(255,255,255,0.7)")


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
                   legend=_LEGEND_INSIDE)


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
                   legend=_LEGEND_INSIDE)


def throughput_figure(steps) -> go.Figure:
    """Training throughput in characters (tokens) per second per step."""
    fig = go.Figure()
    x, y = _series(steps, "tokens_per_s")
    if x:
        fig.add_scatter(x=x, y=y, mode="lines", name="chars/s", line=dict(color="#9467bd"))
    return _layout(fig, "Throughput", "step", "characters / s", showlegend=False)



# --- gradient flow ----------------------------------------------------------------------
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
    ``reference``: {label: (lags, values)} drawn dashed (e.g. a bound)."""
    fig = go.Figure()
    for label, (lags, norms) in curves.items():
        cell = str(label).split()[0].strip(",;:").lower()
        fig.add_scatter(x=list(lags), y=list(norms), mode="lines", name=label,
                        line=dict(color=CELL_COLORS.get(cell), width=2.5))
    for (label, (lags, values)), dash in zip((reference or {}).items(),
                                             ("dash", "dot", "dashdot", "longdash")):
        fig.add_scatter(x=list(lags), y=list(values), mode="lines", name=label,
                        line=dict(color="#7f7f7f", dash=dash))
    fig.update_yaxes(type="log", exponentformat="power")
    return _layout(fig, "‖∂h_T/∂h_(T−L)‖ vs lag", "lag L (steps back)", "spectral norm (log)",
                   legend=_LEGEND_INSIDE)


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
                   "gate value", legend=_LEGEND_INSIDE)


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
    fig.update_xaxes(type="log")
    return _layout(fig, "Truncation: error of the gradient vs full BPTT",
                   "truncation length k (randomized: mean cut distance p/(1−p))",
                   "‖g_trunc − g_full‖ / ‖g_full‖",
                   legend=_LEGEND_INSIDE)


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


# --- benchmarks -------------------------------------------------------------------------
# Rows are the records written by ``benchmarks/report.py`` (lists of dicts, one per
# measurement); the builders only group and draw them.

ENGINE_COLORS = {"bptt": "#1f77b4", "autograd": "#ff7f0e", "native": "#7f7f7f"}
_BENCH_METRICS = {
    "ratio_to_native": "time / torch.nn time",
    "median_s": "forward+backward time (s)",
    "gflops": "achieved GFLOP/s",
    "fraction_of_peak": "fraction of fp32 matmul peak",
}


def layer_benchmark_figure(rows: list[dict], metric: str = "ratio_to_native",
                           targets: dict | None = None) -> go.Figure:
    """Grouped bars: one group per (cell, size), one bar per engine, height ``metric``.

    ``targets`` maps ``"cell|size"`` to the bptt engine's target ratio, drawn as a marker."""
    if metric not in _BENCH_METRICS:
        raise ValueError(f"unknown metric {metric!r} (choose from {', '.join(_BENCH_METRICS)})")
    groups: list[str] = []
    for r in rows:
        g = f"{r['cell']} {r['size']}"
        if g not in groups:
            groups.append(g)
    fig = go.Figure()
    for engine in dict.fromkeys(r["engine"] for r in rows):
        sel = {f"{r['cell']} {r['size']}": r.get(metric) for r in rows if r["engine"] == engine}
        fig.add_bar(name=engine, x=groups, y=[sel.get(g) for g in groups],
                    marker_color=ENGINE_COLORS.get(engine))
    if targets:
        xs = [g for g in groups if g.replace(" ", "|", 1) in targets]
        fig.add_scatter(name="bptt target", x=xs, y=[targets[g.replace(" ", "|", 1)] for g in xs],
                        mode="markers", marker=dict(symbol="line-ew-open", size=30, color="black"))
    return _layout(fig, "Layer forward+backward", "cell and size (B, T, I, H)",
                   _BENCH_METRICS[metric], barmode="group")


def _strategy_lines(fig: go.Figure, rows: list[dict], x: str, y: str) -> None:
    """One line per (cell, strategy): colour = cell, solid = full BPTT, one dash style per
    other strategy (the same style for a strategy in every cell)."""
    dashes = ("dot", "dash", "dashdot", "longdash", "longdashdot", "5px,2px,1px,2px")
    others = [s for s in dict.fromkeys(r["strategy"] for r in rows) if s != "full"]
    for (cell, label), pts in _group(rows, ("cell", "strategy")).items():
        pts = sorted(pts, key=lambda r: r[x])
        dash = "solid" if label == "full" else dashes[others.index(label) % len(dashes)]
        fig.add_scatter(x=[p[x] for p in pts], y=[p[y] for p in pts], mode="lines+markers",
                        name=f"{cell} {label}", legendgroup=cell,
                        line=dict(color=CELL_COLORS.get(cell), dash=dash))


def _group(rows: list[dict], keys: tuple[str, ...]) -> dict:
    out: dict = {}
    for r in rows:
        out.setdefault(tuple(r[k] for k in keys), []).append(r)
    return out


def bptt_time_figure(rows: list[dict]) -> go.Figure:
    """Training-step time per token vs sequence length T, one line per cell and strategy."""
    fig = go.Figure()
    _strategy_lines(fig, rows, "seq_len", "us_per_token")
    fig.update_xaxes(type="log")
    return _layout(fig, "One training step over T characters", "sequence length T",
                   "time per token (µs)")


def bptt_memory_figure(rows: list[dict]) -> go.Figure:
    """Measured peak memory vs T per cell and strategy, with the analytic activation memory
    of full BPTT (``analytic_bytes``) as a dashed line."""
    fig = go.Figure()
    _strategy_lines(fig, [dict(r, peak_mib=r["peak_bytes"] / 2**20) for r in rows],
                    "seq_len", "peak_mib")
    for (cell,), pts in _group([r for r in rows if r["strategy"] == "full"], ("cell",)).items():
        pts = sorted(pts, key=lambda r: r["seq_len"])
        fig.add_scatter(x=[p["seq_len"] for p in pts],
                        y=[p["analytic_bytes"] / 2**20 for p in pts], mode="lines",
                        name=f"{cell} analytic (full BPTT)", legendgroup=cell,
                        line=dict(color=CELL_COLORS.get(cell), dash="dash", width=1))
    fig.update_xaxes(type="log")
    fig.update_yaxes(type="log")
    return _layout(fig, "Peak memory of one training step", "sequence length T",
                   "peak memory (MiB)")


def gradient_fidelity_figure(rows: list[dict], metric: str = "cosine") -> go.Figure:
    """Cosine similarity (or relative error) of truncated to full-BPTT gradients vs the
    truncation length k; solid = trained model, dotted = untrained."""
    fig = go.Figure()
    # lines: TBPTT with k1 = k2; other strategies (k1 < k2, randomized) as lone markers
    plain = [r for r in rows if r["kind"] == "truncated"
             and r.get("update_interval", r["truncation_len"]) == r["truncation_len"]]
    for (cell, trained), pts in _group(plain, ("cell", "trained")).items():
        pts = sorted(pts, key=lambda r: r["truncation_len"])
        fig.add_scatter(x=[p["truncation_len"] for p in pts], y=[p[metric] for p in pts],
                        mode="lines+markers", name=f"{cell} {'trained' if trained else 'untrained'}",
                        line=dict(color=CELL_COLORS.get(cell), dash="solid" if trained else "dot"))
    for r in (r for r in rows if not any(r is p for p in plain)):
        fig.add_scatter(x=[r["truncation_len"]], y=[r[metric]], mode="markers",
                        name=f"{r['cell']} {r['strategy']} ({'trained' if r['trained'] else 'untrained'})",
                        marker=dict(color=CELL_COLORS.get(r["cell"]),
                                    symbol="diamond" if r["kind"] == "randomized" else "square",
                                    size=9, opacity=1.0 if r["trained"] else 0.5))
    fig.update_xaxes(type="log")
    label = "cosine similarity to full-BPTT gradient" if metric == "cosine" else \
        "relative error to full-BPTT gradient"
    return _layout(fig, "Truncated-gradient fidelity", "truncation length k", label)


def convergence_figure(rows: list[dict]) -> go.Figure:
    """Validation bits per character vs wall-clock seconds, one line per cell and strategy."""
    fig = go.Figure()
    _strategy_lines(fig, rows, "seconds", "val_bpc")
    return _layout(fig, "Convergence at equal wall-clock budget", "wall-clock (s)",
                   "validation bits per character")


STEP_PART_COLORS = {"recurrent": "#1f77b4", "head": "#ff7f0e", "update": "#2ca02c",
                    "remainder": "#bdbdbd"}
_STEP_PART_NAMES = {"recurrent": "embedding + recurrent layer (fwd+bwd)",
                    "head": "head + softmax loss (fwd+bwd)",
                    "update": "grad norm, clip, Adam",
                    "remainder": "remainder (step - parts)"}


def step_breakdown_figure(rows: list[dict]) -> go.Figure:
    """Where one training step's time goes: per engine, stacked bars of the parts' median
    milliseconds (recurrent, head, update, remainder; a negative remainder is drawn below
    zero), each labelled with its share of the step, and the whole step's median as a
    marker labelled with its characters per second.

    ``rows``: ``benchmarks/measure_step.py`` records with ``engine``, ``layer``, ``part``
    (step, recurrent, head, update, remainder), ``median_s``, ``share``, ``chars_per_s``."""
    engines = list(dict.fromkeys(r["engine"] for r in rows))
    by = {(r["engine"], r["part"]): r for r in rows}
    labels = [next((r.get("layer") for r in rows if r["engine"] == e and r.get("layer")), e)
              for e in engines]
    fig = go.Figure()
    for part in ("recurrent", "head", "update", "remainder"):
        pts = [by.get((e, part)) for e in engines]
        if not any(pts):
            continue
        fig.add_bar(name=_STEP_PART_NAMES[part], x=labels,
                    y=[p["median_s"] * 1e3 if p else None for p in pts],
                    text=[f"{p['share']:.0%}" if p else "" for p in pts],
                    textposition="inside", marker_color=STEP_PART_COLORS[part])
    steps = [by.get((e, "step")) for e in engines]
    if any(steps):
        fig.add_scatter(name="whole step", x=labels,
                        y=[s["median_s"] * 1e3 if s else None for s in steps],
                        mode="markers+text", textposition="top center",
                        text=[f"{s['chars_per_s']:,.0f} chars/s" if s else "" for s in steps],
                        marker=dict(symbol="line-ew-open", size=40, color="black",
                                    line=dict(width=2)))
    # room above the tallest bar for the chars/s labels (and below zero for a negative
    # remainder)
    ms = [r["median_s"] * 1e3 for r in rows if r.get("median_s") is not None]
    positive = [sum(max(by[(e, p)]["median_s"], 0) * 1e3 for p in
                    ("recurrent", "head", "update", "remainder") if (e, p) in by)
                for e in engines]
    top, bottom = max(ms + positive + [0.0]), min(ms + [0.0])
    if top > 0:
        fig.update_yaxes(range=[bottom * 1.15, top * 1.18])
    # a share label too small to read in a thin bar is hidden (the legend and hover say it)
    return _layout(fig, "One training step: time per part", "recurrent layer",
                   "median time (ms)", barmode="relative",
                   uniformtext=dict(minsize=10, mode="hide"))


# --- the textbook chapter's experiments (rnncore.textbook) -------------------------------

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
                   "‖∂h_T/∂h_(T−L)‖₂", legend=_LEGEND_INSIDE)


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
                   "", legend=_LEGEND_INSIDE)


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
