"""Benchmark charts (the Benchmarks page and the reports under benchmarks/results)."""
from __future__ import annotations

import plotly.graph_objects as go

from rnncore.plots._base import CELL_COLORS, LEGEND_INSIDE, _layout, log_decades, log_ticks

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
    return _layout(fig, f"Layer forward+backward: {_BENCH_METRICS[metric]}",
                   "cell and size (B, T, I, H)", _BENCH_METRICS[metric], barmode="group")


_UNEVEN_COLOR, _RANDOM_COLOR = "#d62728", "#9467bd"


def _rank(row: dict) -> int:
    """Legend order: full BPTT, TBPTT with k1 = k2, k1 < k2, randomized."""
    if row.get("kind") == "full":
        return 0
    if row.get("kind") == "randomized":
        return 3
    uneven = row.get("update_interval", row.get("truncation_len")) != row.get(
        "truncation_len") or "k1=" in str(row.get("strategy"))  # convergence rows: the label
    return 2 if uneven else 1


def strategy_style(row: dict, ks: list[int]) -> dict:
    """A strategy's line: full BPTT black, TBPTT k = k1 = k2 blue from light (small k) to
    dark, TBPTT k1 < k2 red dashed, randomized purple dotted (the same in every panel)."""
    rank = _rank(row)
    if rank == 0:
        return dict(color="#000000", width=2.5)
    if rank == 3:
        return dict(color=_RANDOM_COLOR, dash="dot")
    if rank == 2:
        return dict(color=_UNEVEN_COLOR, dash="dash")
    k = row.get("truncation_len")
    share = 0.3 + 0.7 * ks.index(k) / max(1, len(ks) - 1) if k in ks else 0.6
    return dict(color=f"rgb({int(198 - 160 * share)},{int(219 - 150 * share)},"
                      f"{int(239 - 100 * share)})")


def _strategy_panels(rows: list[dict], x: str, y: str, shared_y: bool) -> go.Figure:
    """One panel per cell, one line per strategy in each; the legend lists each strategy
    once and toggles it in every panel."""
    from plotly.subplots import make_subplots

    cells = list(dict.fromkeys(r["cell"] for r in rows))
    fig = make_subplots(rows=1, cols=max(1, len(cells)), shared_yaxes=shared_y,
                        subplot_titles=[c.upper() for c in cells], horizontal_spacing=0.06)
    ks = sorted({r["truncation_len"] for r in rows if _rank(r) == 1})
    for col, cell in enumerate(cells, start=1):
        lines = _group([r for r in rows if r["cell"] == cell], ("strategy",))
        for (label,), pts in sorted(lines.items(), key=lambda item: (
                _rank(item[1][0]), item[1][0].get("truncation_len") or 0)):
            pts = sorted(pts, key=lambda r: r[x])
            fig.add_scatter(x=[p[x] for p in pts], y=[p[y] for p in pts],
                            mode="lines+markers", name=label, legendgroup=label,
                            showlegend=col == 1, line=strategy_style(pts[0], ks),
                            row=1, col=col)
    return fig


def _group(rows: list[dict], keys: tuple[str, ...]) -> dict:
    out: dict = {}
    for r in rows:
        out.setdefault(tuple(r[k] for k in keys), []).append(r)
    return out


def bptt_time_figure(rows: list[dict]) -> go.Figure:
    """Training-step time per token vs sequence length T: a panel per cell, a line per
    strategy."""
    fig = _strategy_panels(rows, "seq_len", "us_per_token", shared_y=False)
    fig.update_xaxes(**log_ticks(r["seq_len"] for r in rows))
    return _layout(fig, "One training step over T characters", "sequence length T",
                   "time per token (µs)", margin=dict(t=80))


def bptt_memory_figure(rows: list[dict]) -> go.Figure:
    """Measured peak memory vs T per cell and strategy, with the analytic activation memory
    of full BPTT (``analytic_bytes``) as a thin grey line."""
    fig = _strategy_panels([dict(r, peak_mib=r["peak_bytes"] / 2**20) for r in rows],
                           "seq_len", "peak_mib", shared_y=True)
    cells = list(dict.fromkeys(r["cell"] for r in rows))
    for (cell,), pts in _group([r for r in rows if r["strategy"] == "full"], ("cell",)).items():
        pts = sorted(pts, key=lambda r: r["seq_len"])
        fig.add_scatter(x=[p["seq_len"] for p in pts],
                        y=[p["analytic_bytes"] / 2**20 for p in pts], mode="lines",
                        name="analytic activations (full BPTT)", legendgroup="analytic",
                        showlegend=cell == cells[0],
                        line=dict(color="#7f7f7f", dash="dash", width=1),
                        row=1, col=cells.index(cell) + 1)
    fig.update_xaxes(**log_ticks(r["seq_len"] for r in rows))
    fig.update_yaxes(**log_decades(exponentformat="none"))
    return _layout(fig, "Peak memory of one training step", "sequence length T",
                   "peak memory (MiB)", margin=dict(t=80))


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
    fig.update_xaxes(**log_ticks(r["truncation_len"] for r in rows))
    label = "cosine similarity to full-BPTT gradient" if metric == "cosine" else \
        "relative error to full-BPTT gradient"
    return _layout(fig, "Truncated-gradient fidelity", "truncation length k", label)


def convergence_figure(rows: list[dict]) -> go.Figure:
    """Validation bits per character vs wall-clock seconds: a panel per cell, a line per
    strategy."""
    fig = _strategy_panels(rows, "seconds", "val_bpc", shared_y=True)
    return _layout(fig, "Convergence at equal wall-clock budget", "wall-clock (s)",
                   "validation bits per character", margin=dict(t=80))


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


TRAINER_COLORS = {"rnncore": "#1f77b4", "torch.nn": "#7f7f7f"}
_TRAINER_NAMES = {"rnncore": "ours (python -m rnncore train)", "torch.nn": "plain torch.nn loop"}


def qps_figure(runs: list[dict]) -> go.Figure:
    """Held-out bits per character against training seconds, ours against the plain
    torch.nn loop: each seed's curve (scored on a fixed slice of the held-out poems) as a
    thin line, and each trainer's final score (all held-out poems) as a marker at the mean
    training time with the seeds' spread (min to max) as its error bar.

    ``runs``: ``benchmarks/measure_qps.py`` records with ``trainer``, ``seed``,
    ``train_seconds``, ``final_bpc`` and ``curve`` [{seconds, step, bpc}]."""
    fig = go.Figure()
    for trainer in dict.fromkeys(r["trainer"] for r in runs):
        mine = [r for r in runs if r["trainer"] == trainer]
        color, name = TRAINER_COLORS.get(trainer), _TRAINER_NAMES.get(trainer, trainer)
        for i, r in enumerate(mine):
            fig.add_scatter(x=[p["seconds"] for p in r["curve"]],
                            y=[p["bpc"] for p in r["curve"]], mode="lines",
                            line=dict(width=1, color=color), opacity=0.7, legendgroup=trainer,
                            name=f"{name}: one line per seed", showlegend=i == 0,
                            hovertemplate=f"seed {r['seed']}<br>%{{x:.0f}} s: "
                                          "%{y:.3f} bpc<extra></extra>")
        finals = [r["final_bpc"] for r in mine]
        mean = sum(finals) / len(finals)
        seeds = f"{len(mine)} seed{'s' if len(mine) != 1 else ''}"
        fig.add_scatter(x=[sum(r["train_seconds"] for r in mine) / len(mine)], y=[mean],
                        mode="markers", legendgroup=trainer,
                        name=f"{name}: final (all held-out poems), mean and range of {seeds}",
                        marker=dict(size=11, color=color, symbol="diamond"),
                        error_y=dict(type="data", symmetric=False, array=[max(finals) - mean],
                                     arrayminus=[mean - min(finals)], color=color))
    return _layout(fig, "Quality per second: held-out bpc at equal training time",
                   "training time (s)", "held-out bits per character",
                   legend=LEGEND_INSIDE)


FORM_COLORS = {"wujue": "#9467bd", "qijue": "#2ca02c", "wulv": "#ff7f0e", "qilv": "#1f77b4"}
_FORM_NAMES = {"wujue": "五絕", "qijue": "七絕", "wulv": "五律", "qilv": "七律"}


def decoding_figure(decoding: dict) -> go.Figure:
    """Sampled poems against real ones, per form: the attested-pair share (y) against the
    diversity between poems (left: distinct within-line pairs) and the novelty (right:
    share of 4-grams seen in training), one point per (temperature, top-p) of the sweep
    (the chosen top-p's as a line through the temperatures), held-out real poems as a star
    and the chosen default ringed.

    ``decoding``: ``scripts/decoding_sweep.py``'s record, {"chosen_top_p", "forms": {form:
    {"real": quality, "rows": [quality + temperature, top_p], "chosen": row}}}."""
    from plotly.subplots import make_subplots

    fig = make_subplots(rows=1, cols=2, shared_yaxes=True, horizontal_spacing=0.06,
                        subplot_titles=("diversity between poems", "novelty"))
    panels = (("distinct_pairs", 1), ("seen_4gram_share", 2))
    for i, (form, f) in enumerate(decoding["forms"].items()):
        color, name = FORM_COLORS.get(form), _FORM_NAMES.get(form, form)
        line = sorted((r for r in f["rows"] if r["top_p"] == decoding["chosen_top_p"]),
                      key=lambda r: r["temperature"])
        others = [r for r in f["rows"] if r["top_p"] != decoding["chosen_top_p"]]
        for x, col in panels:
            first = col == 1
            hover = "T %{text}<br>attested %{y:.3f}<extra>" + name + "</extra>"
            fig.add_scatter(x=[r[x] for r in line], y=[r["attested_pair_share"] for r in line],
                            text=[f"{r['temperature']:g}, top-p {r['top_p']:g}" for r in line],
                            mode="lines+markers", line=dict(color=color), legendgroup=form,
                            name=f"{name}: top-p {decoding['chosen_top_p']:g}, by temperature",
                            showlegend=first, hovertemplate=hover, row=1, col=col)
            fig.add_scatter(x=[r[x] for r in others],
                            y=[r["attested_pair_share"] for r in others],
                            text=[f"{r['temperature']:g}, top-p {r['top_p']:g}" for r in others],
                            mode="markers", marker=dict(color=color, size=5), opacity=0.35,
                            legendgroup=form, showlegend=False, hovertemplate=hover,
                            row=1, col=col)
            real, chosen = f["real"], f["chosen"]
            fig.add_scatter(x=[real[x]], y=[real["attested_pair_share"]], mode="markers",
                            marker=dict(color=color, size=14, symbol="star",
                                        line=dict(color="black", width=1)),
                            legendgroup="real", name="held-out real poems of the form",
                            showlegend=first and i == 0,
                            hovertemplate=f"real {name}<br>attested %{{y:.3f}}<extra></extra>",
                            row=1, col=col)
            fig.add_scatter(x=[chosen[x]], y=[chosen["attested_pair_share"]], mode="markers",
                            marker=dict(size=16, symbol="circle-open", color="black",
                                        line=dict(width=2)),
                            legendgroup="chosen", name="the form's default",
                            showlegend=first and i == 0, hoverinfo="skip", row=1, col=col)
    _layout(fig, "Decoding: sampled poems against real ones, per form", "",
            "attested-pair share", margin=dict(t=70), height=520,
            legend=dict(orientation="h", y=-0.18, x=0))
    fig.update_xaxes(title_text="distinct pairs / all pairs", row=1, col=1)
    fig.update_xaxes(title_text="4-grams seen in training", row=1, col=2)
    return fig
