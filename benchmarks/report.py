"""Write and read benchmark reports.

Every run gets its own directory ``<out>/<YYYYmmdd-HHMMSS>-<device>[-quick]/`` (nothing
earlier is overwritten; layout in benchmarks/README.md): ``results.json``, one CSV per
section, ``report.md`` and the figures as HTML (+ PNG when plotly's static export works).
"""
from __future__ import annotations

import csv
import datetime
import json
import math
import os
import sys
from pathlib import Path
from typing import Callable

from benchmarks import measure_step as mstep
from benchmarks.config import BenchConfig
from benchmarks.run import FORMAT, _noop, run_benchmark
# re-exported: callers import these from here (this module once held them all)
from benchmarks.run import fidelity_strategies, memory_truncation, run_step  # noqa: F401
from benchmarks.targets import check_targets, linear_slope  # noqa: F401
from rnncore.commands import json_ready

SECTIONS = ("layers", "bptt_steps", "fidelity", "convergence", "step", "targets")


class BenchmarkResultsError(ValueError):
    """A results directory that is missing or unreadable."""


# --- writing -------------------------------------------------------------------------------

def _write_csv(path: Path, rows: list[dict], machine: dict) -> None:
    keys: list[str] = []
    for r in rows:
        keys += [k for k in r if k not in keys and not isinstance(r[k], (list, dict))]
    meta = ["device", "cpu_model", "cpu_cores", "torch_version", "date"]
    with open(path, "w", newline="", encoding="utf-8") as f:
        w = csv.DictWriter(f, fieldnames=keys + [f"machine_{m}" for m in meta],
                           extrasaction="ignore")
        w.writeheader()
        for r in rows:
            w.writerow({**r, **{f"machine_{m}": machine.get(m) for m in meta}})


def figure_names(results: dict) -> list[str]:
    """The figures ``build_figures`` draws for ``results``, found without drawing them."""
    steps = results.get("bptt_steps") or []
    have = {"layers": bool(results.get("layers")), "layers_gflops": bool(results.get("layers")),
            "bptt_time": any(r.get("timed") for r in steps),
            "bptt_memory": any("peak_bytes" in r for r in steps),
            "fidelity": bool(results.get("fidelity")),
            "convergence": bool(results.get("convergence")), "step": bool(results.get("step")),
            "qps": bool(results.get("qps")), "decoding": bool(results.get("decoding"))}
    return [name for name, present in have.items() if present]


def build_figures(results: dict, names: list[str] | None = None) -> dict:
    """name -> plotly Figure for every section that has data (``figure_names``), or for
    those of ``names`` that it has."""
    from rnncore import plots

    layers, steps = results.get("layers") or [], results.get("bptt_steps") or []
    builders = {
        "layers": lambda: plots.layer_benchmark_figure(
            layers, "ratio_to_native",
            {f"{r['cell']}|{r['size']}": r["target_ratio"] for r in layers
             if r["engine"] == "bptt"}),
        "layers_gflops": lambda: plots.layer_benchmark_figure(layers, "gflops"),
        "bptt_time": lambda: plots.bptt_time_figure([r for r in steps if r.get("timed")]),
        "bptt_memory": lambda: plots.bptt_memory_figure(
            [r for r in steps if "peak_bytes" in r]),
        "fidelity": lambda: plots.gradient_fidelity_figure(results["fidelity"]),
        "convergence": lambda: plots.convergence_figure(results["convergence"]),
        "step": lambda: plots.step_breakdown_figure(results["step"]),
        "qps": lambda: plots.qps_figure(results["qps"]["runs"]),
        "decoding": lambda: plots.decoding_figure(results["decoding"]),
    }
    return {name: builders[name]() for name in figure_names(results)
            if names is None or name in names}


DEFAULT_CHROMIUM = "/usr/bin/chromium"


def export_pngs(figs: dict, run_dir: str | os.PathLike) -> tuple[list[str], str | None]:
    """Write ``<name>.png`` for every figure through kaleido (>= 1, which drives a
    Chrome/Chromium: ``BROWSER_PATH`` is set to /usr/bin/chromium when that exists and
    ``BROWSER_PATH`` is unset). All figures go through one browser session
    (``plotly.io.write_images``). Returns (names written, None) or ([], one-line reason):
    a failed export never raises, the figures are then HTML only."""
    if not figs:
        return [], None
    try:
        import kaleido  # noqa: F401
    except ImportError:
        return [], "kaleido is not installed (pip install -r requirements.txt)"
    if not os.environ.get("BROWSER_PATH") and Path(DEFAULT_CHROMIUM).exists():
        os.environ["BROWSER_PATH"] = DEFAULT_CHROMIUM
    import plotly.io as pio

    paths = [Path(run_dir) / f"{name}.png" for name in figs]
    try:
        pio.write_images(list(figs.values()), paths)
    except Exception as exc:  # noqa: BLE001 -- any export failure just means "HTML only"
        for p in paths:  # no half-written images next to the HTML
            if p.exists():
                p.unlink()
        msg = " ".join(str(exc).split()).split(". ")[0]  # one line: the first sentence
        return [], f"{type(exc).__name__}: {msg[:160]}" if msg else type(exc).__name__
    return [name for name, p in zip(figs, paths) if p.is_file() and p.stat().st_size > 0], None


def _png_note(problem: str) -> str:
    return f"note: PNG export skipped, figures written as HTML only ({problem})"


def markdown_report(results: dict) -> str:
    m = results["machine"]
    lines = [f"# rnncore benchmarks ({'quick' if results['config'].get('quick') else 'full'})",
             "", f"{m['date']} · {m['device']} · {m.get('gpu', m['cpu_model'])} · "
             f"{m['cpu_cores']} cores · torch {m['torch_version']}", "",
             f"fp32 matmul peak: {results['matmul']['gflops']:.1f} GFLOP/s "
             f"(n={results['matmul']['n']})", "", "## Targets", "",
             "| target | measured | limit | status | detail |", "|---|---|---|---|---|"]
    for t in results["targets"]:
        meas = "n/a" if t["measured"] is None else f"{t['measured']:.3f}"
        lines.append(f"| {t['target']} | {meas} | {t['limit']} | **{t['status']}** | "
                     f"{t['detail']} |")
    if results.get("layers"):
        lines += ["", "## Layers (forward + backward)", "",
                  "| cell | size | engine | ms | x torch.nn | GFLOP/s | of peak |",
                  "|---|---|---|---|---|---|---|"]
        for r in results["layers"]:
            frac = r.get("fraction_of_peak")
            lines.append(f"| {r['cell']} | {r['size']} | {r['engine']} | "
                         f"{r['median_s'] * 1e3:.2f} | {r['ratio_to_native']:.2f} | "
                         f"{r['gflops']:.1f} | {'' if frac is None else f'{frac:.1%}'} |")
    if results.get("step"):
        lines += step_markdown(results["step"], results.get("config", {}),
                               results.get("machine", {}))
    if results.get("png_note"):
        lines += ["", results["png_note"]]
    return "\n".join(lines) + "\n"


def step_markdown(rows: list[dict], cfg: dict, machine: dict) -> list[str]:
    """The step section of report.md: chars/s and each part's share, per engine."""
    first = rows[0]
    lines = ["", "## One training step (truncated BPTT window)", "",
             f"CharRNN LSTM {first['num_layers']} x {first['hidden_size']}, embedding "
             f"{first['embedding_dim']}, V = {first['vocab_size']} ({first['data']} batch), "
             f"batch {first['batch']} x window {first['window']}, dropout "
             f"{first['dropout']:g}, Adam, clip {first['clip']:g}; "
             f"{machine.get('torch_threads', '?')} torch thread(s); median of "
             f"{len(first['times_s'])} interleaved rounds. Parts: recurrent = embedding + "
             "layer forward+backward (fixed upstream gradient); head = Linear + softmax "
             "cross-entropy forward+backward (fixed layer output); update = grad norm, "
             "clip, Adam, finiteness check; remainder = step - sum of the parts.", "",
             "| engine | chars/s | step ms | recurrent | head | update | remainder | "
             "check: grad rel. err |", "|---|---|---|---|---|---|---|---|"]
    by_engine: dict = {}
    for r in rows:
        by_engine.setdefault(r["engine"], {})[r["part"]] = r
    for engine, parts in by_engine.items():
        step = parts["step"]
        cells = [f"{parts[p]['median_s'] * 1e3:.1f} ms ({parts[p]['share']:.1%})"
                 for p in (*mstep.PARTS, "remainder")]
        lines.append(f"| {step['layer']} | {step['chars_per_s']:.0f} | "
                     f"{step['median_s'] * 1e3:.1f} | " + " | ".join(cells)
                     + f" | {step['grad_relative_error']:.1e} |")
    return lines


def new_run_dir(out: str | os.PathLike, device: str, quick: bool) -> Path:
    stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
    base = Path(out) / f"{stamp}-{device}{'-quick' if quick else ''}"
    path, i = base, 1
    while path.exists():  # never overwrite an earlier run
        i += 1
        path = base.with_name(f"{base.name}-{i}")
    return path


def write_report(results: dict, out: str | os.PathLike, png: bool = True) -> Path:
    """Write ``results`` into a new run directory under ``out``; returns that directory."""
    run_dir = new_run_dir(out, results["machine"]["device"], bool(results["config"].get("quick")))
    run_dir.mkdir(parents=True)
    files = {"json": "results.json", "markdown": "report.md"}
    for name in SECTIONS:
        if results.get(name):
            _write_csv(run_dir / f"{name}.csv", results[name], results["machine"])
            files[f"{name}_csv"] = f"{name}.csv"
    write_files(dict(results, files=files), run_dir, markdown_report, png)
    return run_dir


def write_files(results: dict, run_dir: Path, markdown: Callable[[dict], str],
                png: bool) -> None:
    """Into ``run_dir``: every figure of ``results`` (HTML, and PNG when ``png`` and the
    export works), ``report.md`` (``markdown(results)``) and ``results.json`` with
    ``files``, ``png_export`` and any ``png_note``."""
    figs = build_figures(results)
    files = dict(results.get("files") or {})
    for name, fig in figs.items():
        fig.write_html(run_dir / f"{name}.html", include_plotlyjs="cdn")
        files[f"{name}_html"] = f"{name}.html"
    written, problem = export_pngs(figs, run_dir) if png else ([], None)
    files.update({f"{name}_png": f"{name}.png" for name in written})
    results = dict(results, files=files, png_export=bool(written))
    if problem:
        results["png_note"] = _png_note(problem)
        print(results["png_note"], file=sys.stderr)
    (run_dir / "report.md").write_text(markdown(results), encoding="utf-8")
    (run_dir / "results.json").write_text(json.dumps(json_ready(results), indent=1),
                                          encoding="utf-8")


def rebuild_figures(run_dir: str | os.PathLike, png: bool = True, html: bool = False) -> dict:
    """Redraw the figures of an existing run from its ``results.json``: the PNGs (when the
    static export works; e.g. for a run written without kaleido) and the HTML of figures
    that have none, or of all with ``html=True`` (after a plotting change; plotly's HTML
    holds random element ids, so an unchanged figure still rewrites differently). Nothing
    is measured; in results.json only ``files``/``png_export`` change. Returns
    {"html": [names written], "png": [names written], "note": one line or None}."""
    run_dir = Path(run_dir)
    if not (run_dir / "results.json").is_file():
        raise BenchmarkResultsError(f"{run_dir} is not a benchmark run directory "
                                    "(no results.json)")
    figs = build_figures(load_results(run_dir))
    html_written = []
    for name, fig in figs.items():
        if html or not (run_dir / f"{name}.html").is_file():
            fig.write_html(run_dir / f"{name}.html", include_plotlyjs="cdn")
            html_written.append(name)
    written, problem = export_pngs(figs, run_dir) if png else ([], None)
    raw = json.loads((run_dir / "results.json").read_text(encoding="utf-8"))
    files = dict(raw.get("files") or {})
    files.update({f"{name}_html": f"{name}.html" for name in figs})
    files.update({f"{name}_png": f"{name}.png" for name in written})
    raw["files"] = files
    raw["png_export"] = bool(written) or bool(raw.get("png_export"))
    (run_dir / "results.json").write_text(json.dumps(json_ready(raw), indent=1),
                                          encoding="utf-8")
    return {"html": html_written, "png": written,
            "note": _png_note(problem) if problem else None}


# --- reading (the app's Benchmarks page) ---------------------------------------------------

def list_runs(out: str | os.PathLike) -> list[Path]:
    """Run directories under ``out`` (those with a results.json), oldest first."""
    out = Path(out)
    if not out.is_dir():
        return []
    return sorted(p for p in out.iterdir() if (p / "results.json").is_file())


def load_results(path: str | os.PathLike) -> dict:
    """The results of one run: ``path`` is a run directory or a directory of runs (the
    newest is taken). Returns the ``results.json`` dict (keys ``machine``, ``config``,
    ``matmul``, ``layers``, ``bptt_steps``, ``fidelity``, ``convergence``, ``targets``,
    ``files``) with ``run_dir`` added; figures are rebuilt with ``build_figures(results)``."""
    path = Path(path)
    if not (path / "results.json").is_file():
        runs = list_runs(path)
        if not runs:
            raise BenchmarkResultsError(f"no benchmark results in {path}")
        path = runs[-1]
    try:
        results = json.loads((path / "results.json").read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise BenchmarkResultsError(f"cannot read {path / 'results.json'}: {exc}") from None
    if not isinstance(results, dict) or results.get("format") != FORMAT:
        raise BenchmarkResultsError(f"{path / 'results.json'} is not an rnncore benchmark report")
    for name in SECTIONS:
        results.setdefault(name, [])
    results["run_dir"] = str(path)
    return results


def run_quick_benchmark(out: str | os.PathLike | None = None, device: str = "cpu",
                        sections: tuple[str, ...] = ("layers", "bptt", "convergence"),
                        cells: tuple[str, ...] = ("lstm", "gru", "rnn"),
                        progress: Callable = _noop) -> dict:
    """A small benchmark now (quick preset: about 1 min per cell on 2 idle CPU cores, ~3 min
    for all three); writes a report under ``out`` when given (then ``results['run_dir']``
    says where) and returns the results dict in ``load_results``'s shape. ``progress`` gets
    one line per measurement."""
    cfg = BenchConfig.preset(quick=True, device=device, cells=tuple(cells))
    results = run_benchmark(cfg, sections, progress)
    if out is not None:
        run_dir = write_report(results, out, png=False)
        return load_results(run_dir)
    results = json_ready(results)
    results["run_dir"] = None
    return results
