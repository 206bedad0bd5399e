"""Benchmarks: what the committed reports conclude, their charts grouped by what they
measure, and a small benchmark run on this machine."""
import os
from pathlib import Path

import pandas as pd
import streamlit as st

from benchmarks.report import (BenchmarkResultsError, build_figures, list_runs, load_results,
                               run_quick_benchmark)
from benchmarks.report_qps import qps_table
from benchmarks.summary import KINDS, reports_by_kind, targets_note, what_to_choose
from rnncore import plots

RESULTS_DIR = Path(os.environ.get("RNNCORE_BENCH_DIR")
                   or Path(__file__).resolve().parents[1] / "benchmarks" / "results")
# which targets a chart's section shows (check_targets names them by what they measure)
TARGET_WORDS = {"layers": ("torch.nn",), "bptt_time": ("time/token",),
                "bptt_memory": ("memory", "activations"), "qps": ("plain torch.nn loop",)}

st.title("Benchmarks")


@st.cache_data(show_spinner="Reading benchmark results ...", max_entries=64)
def read_run(path: str, mtime: float) -> dict:
    """``mtime`` (of results.json) is part of the cache key: a rewritten report reloads."""
    return load_results(path)


@st.cache_data(show_spinner="Reading what the reports conclude ...", max_entries=4)
def summary(path: str, stamp: tuple) -> tuple[dict, list]:
    """{kind: run directory names, newest first} and the conclusions; ``stamp`` (every
    report's name and mtime) keys the cache."""
    by_kind = reports_by_kind(path)
    return ({kind: [run.name for run in runs] for kind, runs in by_kind.items()},
            what_to_choose(path, by_kind))


def run_label(results: dict) -> str:
    """The report's name, what it measured and how, e.g.
    ``20261123-191411-cpu · bptt · 1 thread``."""
    threads = results.get("machine", {}).get("torch_threads")
    how = ["quick sizes" if results.get("config", {}).get("quick") else None,
           f"{threads} thread{'s' if threads != 1 else ''}" if threads else None]
    return " · ".join([Path(results["run_dir"]).name, ", ".join(results.get("sections") or [])]
                      + [h for h in how if h])


def machine_line(results: dict) -> str:
    m = results.get("machine", {})
    quick = "quick preset" if results.get("config", {}).get("quick") else "full preset"
    hw = m.get("gpu") or m.get("cpu_model", "?")
    return (f"{m.get('date', '?')} · {m.get('device', '?')} · {hw} · "
            f"{m.get('cpu_cores', '?')} cores · torch {m.get('torch_version', '?')} · {quick}")


def show_targets(results: dict, kind: str | None = None) -> None:
    targets = [t for t in results.get("targets") or [] if kind is None
               or any(word in t["target"] for word in TARGET_WORDS.get(kind, ()))]
    if not targets:
        return
    met = sum(t["status"] == "pass" for t in targets)
    with st.expander(f"Targets: {met} of {len(targets)} met"):
        note = targets_note(results)
        if note:
            st.caption(note)
        st.dataframe(pd.DataFrame(targets), hide_index=True)


def read(run: Path) -> dict | None:
    try:
        return read_run(str(run), (run / "results.json").stat().st_mtime)
    except (BenchmarkResultsError, OSError) as exc:
        st.error(str(exc))
        return None


now = st.session_state.get("bench_now")
runs = list_runs(RESULTS_DIR)
by_kind, conclusions = summary(str(RESULTS_DIR), tuple(
    (run.name, (run / "results.json").stat().st_mtime) for run in runs))
if not runs:
    st.info(f"No committed benchmark results under `{RESULTS_DIR}` yet; run "
            "`python -m benchmarks` or use the button below.")
else:
    st.header("What to choose")
    if conclusions:
        st.markdown("\n".join(f"- {c.text} [See the chart](#{c.kind}) · `{c.report}`"
                              for c in conclusions))
    else:
        st.info("No full-size report yet: conclusions need `python -m benchmarks` (quick "
                "reports measure overhead-bound tiny sizes).")
    for kind, names in by_kind.items():
        title, figures = KINDS[kind]
        st.header(title, anchor=kind)
        options = {name: read(RESULTS_DIR / name) for name in names}
        options = {name: res for name, res in options.items() if res is not None}
        if not options:
            continue
        pick = st.selectbox("Report (newest first)", list(options), key=f"bench_run_{kind}",
                            format_func=lambda name: run_label(options[name]))
        results = options[pick]
        st.caption(machine_line(results))
        figs = build_figures(results, list(figures))
        if kind == "layers" and now and now.get("layers"):
            # this machine's quick run as extra bars next to the committed ones
            rows = results["layers"] + [dict(r, engine=f"{r['engine']} (now)")
                                        for r in now["layers"]]
            figs["layers"] = plots.layer_benchmark_figure(rows, "ratio_to_native")
        for name, fig in figs.items():
            st.plotly_chart(fig, key=f"committed_{name}")
        if kind == "qps":
            st.dataframe(pd.DataFrame(qps_table(results["qps"])), hide_index=True)
        show_targets(results, kind)

st.header("Run a small benchmark on this machine")
sections = st.multiselect("Sections", ["layers", "bptt", "convergence", "step"], ["layers"],
                          key="bench_sections",
                          help="layers: seconds; bptt: about a minute; convergence trains "
                               "small models (minutes on a CPU); step: the training step "
                               "split into recurrent layer, softmax head and update (seconds "
                               "at the quick sizes).")
st.caption("The quick preset's sizes are tiny, so its timings show per-call overhead more "
           "than arithmetic: compare them with each other, not with the targets.")
if st.button("Run now", key="bench_run_now", disabled=not sections):
    with st.status("Benchmarking ...", expanded=True) as status:
        try:
            st.session_state["bench_now"] = run_quick_benchmark(
                None, "cuda" if st.session_state.get("bench_cuda") else "cpu",
                tuple(sections), progress=lambda msg: status.write(msg))
            status.update(label="Done", state="complete")
        except ValueError as exc:
            status.update(label="Failed", state="error")
            st.error(str(exc))
    now = st.session_state.get("bench_now")
    if now and now.get("layers") and "layers" in by_kind:
        st.rerun()  # redraw the committed plots with this run's bars added
st.toggle("Use the CUDA GPU", key="bench_cuda",
          disabled=not __import__("torch").cuda.is_available())
if now:
    st.subheader("This machine, just now")
    st.caption(machine_line(now))
    show_targets(now)
    for name, fig in build_figures(now).items():
        st.plotly_chart(fig, key=f"now_{name}")
