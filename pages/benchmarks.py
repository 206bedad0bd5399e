"""Benchmarks: the committed benchmark reports, plus a small benchmark run on this machine."""
import os
from pathlib import Path

import pandas as pd
import streamlit as st

from benchmarks.report import (BenchmarkResultsError, build_figures, list_runs, load_results,
                               run_quick_benchmark)
from rnncore import plots

RESULTS_DIR = Path(os.environ.get("RNNCORE_BENCH_DIR")
                   or Path(__file__).resolve().parents[1] / "benchmarks" / "results")
FIGURE_TITLES = {
    "layers": "Layer forward+backward time relative to torch.nn (lower is better)",
    "layers_gflops": "Achieved GFLOP/s of the layers",
    "bptt_time": "Training-step time per character vs sequence length",
    "bptt_memory": "Peak memory vs sequence length (full vs truncated BPTT)",
    "fidelity": "Truncated vs full-BPTT gradients",
    "convergence": "Validation loss vs training time",
    "step": "One truncated training step: characters per second and the share of the "
            "recurrent layer, the softmax head and the update",
}

st.title("Benchmarks")


@st.cache_data(show_spinner="Reading benchmark results ...", max_entries=64)
def read_run(path: str, _mtime: float) -> dict:
    return load_results(path)


def run_label(run: Path) -> str:
    """The run's name and what it measured, e.g. ``20261123-191411-cpu · bptt``."""
    try:
        sections = read_run(str(run), (run / "results.json").stat().st_mtime).get("sections")
    except (BenchmarkResultsError, OSError):
        return f"{run.name} · unreadable"
    return f"{run.name} · {', '.join(sections or []) or 'no sections'}"


def machine_line(results: dict) -> str:
    m = results.get("machine", {})
    quick = "quick preset" if results.get("config", {}).get("quick") else "full preset"
    hw = m.get("gpu") or m.get("cpu_model", "?")
    return (f"{m.get('date', '?')} · {m.get('device', '?')} · {hw} · "
            f"{m.get('cpu_cores', '?')} cores · torch {m.get('torch_version', '?')} · {quick}")


def show_results(results: dict, key: str, extra_layers: list | None = None) -> None:
    st.caption(machine_line(results))
    targets = results.get("targets") or []
    if targets:
        with st.expander(f"Targets ({sum(t['status'] == 'pass' for t in targets)} of "
                         f"{len(targets)} met)"):
            st.dataframe(pd.DataFrame(targets), hide_index=True)
    figs = build_figures(results)
    if extra_layers and results.get("layers"):
        # this machine's quick run as extra bars next to the committed ones
        rows = results["layers"] + [dict(r, engine=f"{r['engine']} (now)") for r in extra_layers]
        figs["layers"] = plots.layer_benchmark_figure(rows, "ratio_to_native")
    if not figs:
        st.info("This report has no measurements to plot.")
    for name, fig in figs.items():
        st.markdown(f"**{FIGURE_TITLES.get(name, name)}**")
        st.plotly_chart(fig, key=f"{key}_{name}")


runs = list_runs(RESULTS_DIR)
now = st.session_state.get("bench_now")
if not runs:
    st.info(f"No committed benchmark results under `{RESULTS_DIR}` yet; run "
            "`python -m benchmarks` or use the button below.")
else:
    pick = st.selectbox("Report", range(len(runs) - 1, -1, -1),
                        format_func=lambda i: run_label(runs[i]), key="bench_run")
    try:
        results = read_run(str(runs[pick]), (runs[pick] / "results.json").stat().st_mtime)
    except BenchmarkResultsError as exc:
        st.error(str(exc))
    else:
        show_results(results, "committed", extra_layers=(now or {}).get("layers"))

st.header("Run a small benchmark on this machine")
sections = st.multiselect("Sections", ["layers", "bptt", "convergence", "step"], ["layers"],
                          key="bench_sections",
                          help="layers: seconds; bptt: about a minute; convergence trains "
                               "small models (minutes on a CPU); step: the training step "
                               "split into recurrent layer, softmax head and update (seconds "
                               "at the quick sizes).")
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
    if now and now.get("layers") and runs:
        st.rerun()  # redraw the committed plots with this run's bars added
st.toggle("Use the CUDA GPU", key="bench_cuda",
          disabled=not __import__("torch").cuda.is_available())
if now:
    st.subheader("This machine, just now")
    show_results(now, "now")
