"""Run the benchmark sections, check the targets, write and read the report.

Layout (see benchmarks/README.md): every run gets its own directory
``<out>/<YYYYmmdd-HHMMSS>-<device>[-quick]/`` (nothing earlier is overwritten) holding
``results.json`` (everything), one CSV per section, ``targets.csv``, ``report.md`` and the
figures as ``<name>.html`` (+ ``<name>.png`` when plotly's static export works: kaleido and a
Chrome/Chromium; otherwise HTML only, with a one-line note).
``load_results(dir)`` accepts a run directory or the parent (it takes the newest run);
``rebuild_figures(dir)`` redraws a run's figures from its ``results.json``.
"""
from __future__ import annotations

import csv
import datetime
import hashlib
import json
import math
import os
import subprocess
import sys
from pathlib import Path
from typing import Callable

import torch

from benchmarks.config import BenchConfig
from benchmarks.measure import (layer_target, machine_info, matmul_peak_gflops,
                                measure_layer)
from benchmarks import measure_bptt as mb
from benchmarks import measure_step as mstep

FORMAT = "rnncore-benchmarks/1"
SECTIONS = ("layers", "bptt_steps", "fidelity", "convergence", "step", "targets")
FIGURES = ("layers", "layers_gflops", "bptt_time", "bptt_memory", "fidelity", "convergence",
           "step")
RUN_SECTIONS = ("layers", "bptt", "convergence", "step")


class BenchmarkResultsError(ValueError):
    """A results directory that is missing or unreadable."""


# --- running -------------------------------------------------------------------------------

def _noop(_msg: str) -> None:
    pass


def run_layers(cfg: BenchConfig, peak_gflops: float, progress: Callable = _noop) -> list[dict]:
    rows = []
    for i, size in enumerate(cfg.layer_sizes):
        for cell in cfg.cells:
            progress(f"layers: {cell} {size}")
            for r in measure_layer(cell, size, cfg.engines, cfg.device, cfg.warmup,
                                   cfg.repeats, peak_gflops):
                r["size_index"] = i
                r["target_ratio"] = layer_target(cell, i) if r["engine"] == "bptt" else None
                rows.append(r)
    return rows


def memory_truncation(cfg: BenchConfig) -> int:
    """The k whose memory is swept over ``memory_seq_lens`` (64, or the largest k <= 64)."""
    ks = [k for k in cfg.truncations if k <= 64]
    return max(ks) if ks else min(cfg.truncations)


def run_bptt_steps(cfg: BenchConfig, progress: Callable = _noop) -> list[dict]:
    """Step time for every strategy and T (the strategies of one T timed round-robin, see
    ``measure_bptt.measure_steps``); peak memory for full BPTT and TBPTT at
    ``memory_truncation`` over ``memory_seq_lens`` (in a separate pass from the timing:
    the profiler slows the CPU run)."""
    strategies = mb.default_strategies(cfg.truncations, cfg.uneven_truncation,
                                       randomized_k=memory_truncation(cfg))
    k_mem = memory_truncation(cfg)
    mem_labels = {"full", mb.Strategy.truncated(k_mem).label}
    rows = []
    for cell in cfg.cells:
        for seq_len in sorted(set(cfg.seq_lens) | set(cfg.memory_seq_lens)):
            timed = seq_len in cfg.seq_lens
            mem = mem_labels if seq_len in cfg.memory_seq_lens else set()
            todo = [s for s in strategies if (timed or s.label in mem)
                    and (s.kind == "full" or s.truncation_len <= seq_len)]
            if not todo:
                continue
            progress(f"bptt: {cell} T={seq_len}, {len(todo)} strategies round-robin")
            for r in mb.measure_steps(cell, todo, seq_len, batch=cfg.bptt_batch,
                                      embedding_dim=cfg.bptt_embedding,
                                      hidden_size=cfg.bptt_hidden, vocab_size=cfg.bptt_vocab,
                                      device=cfg.device,
                                      repeats=cfg.bptt_repeats if timed else 1,
                                      memory_labels=mem):
                r["timed"] = timed
                rows.append(r)
    return rows


def fidelity_strategies(cfg: BenchConfig) -> list[mb.Strategy]:
    T = cfg.fidelity_seq_len
    out = [mb.Strategy.truncated(k) for k in cfg.truncations if k <= T]
    k1, k2 = cfg.uneven_truncation
    if k2 <= T:
        out.append(mb.Strategy.truncated(k2, k1))
    out.append(mb.Strategy.randomized(T))  # d2l's randomized estimator of the full gradient
    return out


def run_convergence(cfg: BenchConfig, progress: Callable = _noop) -> tuple[list[dict], dict]:
    """Validation bpc vs training seconds for each cell and strategy; returns the rows and
    {cell: model trained with full BPTT} for the fidelity section."""
    from rnncore import data as D

    data = D.prepare_data(D.DataConfig(corpus="tang"))
    strategies = [mb.Strategy.full(), mb.Strategy.truncated(memory_truncation(cfg)),
                  mb.Strategy.truncated(max(cfg.truncations)),
                  mb.Strategy.truncated(cfg.uneven_truncation[1], cfg.uneven_truncation[0]),
                  mb.Strategy.randomized(memory_truncation(cfg))]
    strategies = list({s.label: s for s in strategies}.values())
    rows, trained = [], {}
    for cell in cfg.cells:
        for s in strategies:
            progress(f"convergence: {cell} {s.label} ({cfg.train_seconds:g} s)")
            r, trainer = mb.convergence_run(
                cell, s, seconds=cfg.train_seconds, eval_every_seconds=cfg.eval_every_seconds,
                batch=cfg.train_batch, seq_len=cfg.train_seq_len,
                embedding_dim=cfg.bptt_embedding, hidden_size=cfg.bptt_hidden,
                device=cfg.device, data=data, eval_max_poems=50 if cfg.quick else 300,
                seed=cfg.seed)
            rows += r
            if s.kind == "full":
                trained[cell] = trainer.model
    return rows, trained


def run_fidelity(cfg: BenchConfig, trained: dict, progress: Callable = _noop) -> list[dict]:
    """Truncated vs full gradients on one corpus batch, untrained and trained models."""
    rows = []
    strategies = fidelity_strategies(cfg)
    for cell in cfg.cells:
        progress(f"fidelity: {cell}")
        models = [(False, None)] + ([(True, trained[cell])] if cell in trained else [])
        for is_trained, model in models:
            vocab = cfg.bptt_vocab
            if model is None:
                model = mb.make_model(cell, vocab, cfg.bptt_embedding, cfg.bptt_hidden,
                                      cfg.device)
            vocab = model.cfg.vocab_size
            x, y = mb.corpus_batch(cfg.bptt_batch, cfg.fidelity_seq_len, vocab, offset=7919)
            rows += mb.gradient_fidelity(model, cell, strategies, x.to(cfg.device),
                                         y.to(cfg.device), trained=is_trained)
    return rows


def run_step(cfg: BenchConfig, progress: Callable = _noop) -> list[dict]:
    """The whole truncated training step at the real training size and its parts
    (``benchmarks/measure_step.py``), every engine of ``cfg.step_engines`` interleaved."""
    progress(f"step: {cfg.step_data} batch {cfg.step_batch} x {cfg.step_window}")
    data = mstep.step_batch(cfg.step_data, cfg.step_batch, cfg.step_window, cfg.step_vocab,
                            seed=cfg.seed)
    progress(f"step: {','.join(cfg.step_engines)}, V={data.vocab_size}, "
             f"{cfg.step_warmup} + {cfg.step_repeats} rounds")
    return mstep.measure_step_breakdown(
        tuple(cfg.step_engines), data, embedding_dim=cfg.step_embedding,
        hidden_size=cfg.step_hidden, num_layers=cfg.step_layers, dropout=cfg.step_dropout,
        clip=cfg.step_clip, lr=cfg.step_lr, device=cfg.device, warmup=cfg.step_warmup,
        repeats=cfg.step_repeats, seed=cfg.seed)


def code_version() -> dict:
    """Which code was measured: git HEAD, the files changed since (``git status``), and a
    sha256 over ``rnncore/*.py`` (so a run on an uncommitted tree is still identifiable)."""
    root = Path(__file__).resolve().parents[1]
    out: dict = {}
    try:
        # read-only: GIT_OPTIONAL_LOCKS=0 keeps `git status` from refreshing the index
        env = dict(os.environ, GIT_OPTIONAL_LOCKS="0")
        run = lambda *a: subprocess.run(["git", *a], cwd=root, capture_output=True,  # noqa: E731
                                        text=True, timeout=10, env=env).stdout
        out["git_head"] = run("rev-parse", "HEAD").strip() or None
        out["changed"] = [ln[3:] for ln in run("status", "--porcelain", "--untracked-files=no",
                                                "--", "rnncore", "benchmarks").splitlines()
                          if len(ln) > 3]
    except (OSError, subprocess.SubprocessError):
        out["git_head"] = None
    h = hashlib.sha256()
    for f in sorted((root / "rnncore").glob("*.py")):
        h.update(f.name.encode() + b"\0" + f.read_bytes())
    out["rnncore_sha256"] = h.hexdigest()[:16]
    return out


def run_benchmark(cfg: BenchConfig, sections: tuple[str, ...] = ("layers", "bptt", "convergence"),
                  progress: Callable = _noop) -> dict:
    """Run the chosen sections (``layers``, ``bptt``, ``convergence``, ``step``; fidelity
    runs with ``convergence`` since it needs the trained models) and compute the targets."""
    if cfg.device == "cuda" and not torch.cuda.is_available():
        raise ValueError("--device cuda was asked for but CUDA is not available")
    bad = [s for s in sections if s not in RUN_SECTIONS]
    if bad:
        raise ValueError(f"unknown section(s) {bad}; choose from {','.join(RUN_SECTIONS)}")
    torch.manual_seed(cfg.seed)
    results: dict = {"format": FORMAT, "machine": machine_info(cfg.device),
                     "code": code_version(), "config": cfg.to_dict(),
                     "sections": list(sections)}
    progress("matmul peak")
    mm = matmul_peak_gflops(cfg.device, cfg.matmul_size, cfg.warmup, cfg.repeats)
    results["matmul"] = mm
    results["layers"] = run_layers(cfg, mm["gflops"], progress) if "layers" in sections else []
    results["bptt_steps"] = run_bptt_steps(cfg, progress) if "bptt" in sections else []
    if "convergence" in sections:
        results["convergence"], trained = run_convergence(cfg, progress)
        results["fidelity"] = run_fidelity(cfg, trained, progress)
    else:
        results["convergence"], results["fidelity"] = [], []
    results["step"] = run_step(cfg, progress) if "step" in sections else []
    results["targets"] = check_targets(results)
    return results


# --- targets -------------------------------------------------------------------------------

def _target(name: str, measured: float | None, limit: str, passed: bool | None, detail: str
            ) -> dict:
    return {"target": name, "measured": measured, "limit": limit,
            "status": "n/a" if passed is None else ("pass" if passed else "fail"),
            "detail": detail}


def linear_slope(xs: list[float], ys: list[float]) -> float:
    """Least-squares slope of y on x."""
    n = len(xs)
    mx, my = sum(xs) / n, sum(ys) / n
    sxx = sum((x - mx) ** 2 for x in xs)
    return sum((x - mx) * (y - my) for x, y in zip(xs, ys)) / sxx if sxx else float("nan")


def check_targets(results: dict) -> list[dict]:
    """Pass/fail of each target with the measured value (not asserted anywhere: a report)."""
    out = []
    for r in results.get("layers", []):
        if r["engine"] == "bptt" and r.get("ratio_to_native") is not None:
            ok = r["ratio_to_native"] <= r["target_ratio"]
            out.append(_target(f"{r['cell']} bptt vs torch.nn, {r['size']}", r["ratio_to_native"],
                               f"<= {r['target_ratio']}x", ok,
                               f"{r['median_s'] * 1e3:.2f} ms, {r['gflops']:.1f} GFLOP/s"))
    steps = results.get("bptt_steps", [])
    cfg = results.get("config", {})
    mem_rows = [r for r in steps if "peak_bytes" in r]
    for cell in dict.fromkeys(r["cell"] for r in steps):
        # truncated memory independent of T
        trunc = sorted((r for r in mem_rows if r["cell"] == cell and r["kind"] == "truncated"),
                       key=lambda r: r["seq_len"])
        if len(trunc) >= 2:
            lo, hi = trunc[0], trunc[-1]
            ratio = hi["peak_bytes"] / max(lo["peak_bytes"], 1)
            out.append(_target(f"{cell} {hi['strategy']} peak memory T={hi['seq_len']} vs "
                               f"T={lo['seq_len']}", ratio, "within 5% (<= 1.05x)",
                               abs(ratio - 1) <= 0.05,
                               f"{hi['peak_bytes'] / 2**20:.2f} MiB vs "
                               f"{lo['peak_bytes'] / 2**20:.2f} MiB"))
        full = sorted((r for r in mem_rows if r["cell"] == cell and r["kind"] == "full"),
                      key=lambda r: r["seq_len"])
        if len(full) >= 2:
            slope = linear_slope([r["seq_len"] for r in full], [r["peak_bytes"] for r in full])
            analytic = full[0]["analytic_per_step_bytes"]
            ratio = slope / analytic
            out.append(_target(f"{cell} full BPTT memory slope / analytic activations", ratio,
                               "within 1.5x (1/1.5 .. 1.5)", 1 / 1.5 <= ratio <= 1.5,
                               f"slope {slope / 1024:.1f} KiB/step, analytic "
                               f"{analytic / 1024:.1f} KiB/step"))
            kept = [r for r in full if "retained_bytes" in r]
            if len(kept) >= 2:
                slope_kept = linear_slope([r["seq_len"] for r in kept],
                                          [r["retained_bytes"] for r in kept])
                out.append(_target(f"{cell} full BPTT activations kept by the forward / "
                                   f"analytic", slope_kept / analytic,
                                   "within 1.5x (1/1.5 .. 1.5)",
                                   1 / 1.5 <= slope_kept / analytic <= 1.5,
                                   f"slope {slope_kept / 1024:.1f} KiB/step"))
        timed = [r for r in steps if r["cell"] == cell and r.get("timed")]
        if timed:
            t_max = max(r["seq_len"] for r in timed)
            full_t = [r for r in timed if r["seq_len"] == t_max and r["kind"] == "full"]
            k_min = 32 if not cfg.get("quick") else 0
            for r in timed:
                if (r["seq_len"] == t_max and r["kind"] == "truncated" and full_t
                        and r["truncation_len"] >= k_min
                        and r["update_interval"] == r["truncation_len"]):  # k1 < k2 re-reads
                    ratio = r["us_per_token"] / full_t[0]["us_per_token"]
                    out.append(_target(f"{cell} {r['strategy']} time/token vs full, T={t_max}",
                                       ratio, "<= 1.1x", ratio <= 1.1,
                                       f"{r['us_per_token']:.2f} vs "
                                       f"{full_t[0]['us_per_token']:.2f} µs/token"))
    return out


# --- writing -------------------------------------------------------------------------------

def _jsonable(x):
    if isinstance(x, float) and not math.isfinite(x):
        return None
    if isinstance(x, dict):
        return {k: _jsonable(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_jsonable(v) for v in x]
    return x


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


def build_figures(results: dict) -> dict:
    """name -> plotly Figure for every section that has data."""
    from rnncore import plots

    figs = {}
    layers = results.get("layers") or []
    if layers:
        targets = {f"{r['cell']}|{r['size']}": r["target_ratio"] for r in layers
                   if r["engine"] == "bptt"}
        figs["layers"] = plots.layer_benchmark_figure(layers, "ratio_to_native", targets)
        figs["layers_gflops"] = plots.layer_benchmark_figure(layers, "gflops")
    steps = results.get("bptt_steps") or []
    if any(r.get("timed") for r in steps):
        figs["bptt_time"] = plots.bptt_time_figure([r for r in steps if r.get("timed")])
    if any("peak_bytes" in r for r in steps):
        figs["bptt_memory"] = plots.bptt_memory_figure([r for r in steps if "peak_bytes" in r])
    if results.get("fidelity"):
        figs["fidelity"] = plots.gradient_fidelity_figure(results["fidelity"])
    if results.get("convergence"):
        figs["convergence"] = plots.convergence_figure(results["convergence"])
    if results.get("step"):
        figs["step"] = plots.step_breakdown_figure(results["step"])
    return figs


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


def export_png(fig, path: Path) -> bool:
    """One figure to ``path`` (see ``export_pngs``); False when the static export failed."""
    path = Path(path)
    tmp = {path.stem: fig}
    written, _ = export_pngs(tmp, path.parent)
    return bool(written)


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
    figs = build_figures(results)
    files = {"json": "results.json", "markdown": "report.md"}
    for name in SECTIONS:
        if results.get(name):
            _write_csv(run_dir / f"{name}.csv", results[name], results["machine"])
            files[f"{name}_csv"] = f"{name}.csv"
    for name, fig in figs.items():
        fig.write_html(run_dir / f"{name}.html", include_plotlyjs="cdn")
        files[f"{name}_html"] = f"{name}.html"
    written, problem = export_pngs(figs, run_dir) if png else ([], None)
    files.update({f"{name}_png": f"{name}.png" for name in written})
    results = dict(results, files=files, png_export=bool(written))
    if problem:
        results["png_note"] = _png_note(problem)
        print(results["png_note"], file=sys.stderr)
    (run_dir / "report.md").write_text(markdown_report(results), encoding="utf-8")
    (run_dir / "results.json").write_text(json.dumps(_jsonable(results), indent=1),
                                          encoding="utf-8")
    return run_dir


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
    (run_dir / "results.json").write_text(json.dumps(_jsonable(raw), indent=1),
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
    results = _jsonable(results)
    results["run_dir"] = None
    return results
