"""The Streamlit app through streamlit.testing.v1.AppTest: every page renders without an
exception, a short training run goes through the Train page's own controls, the Generate
page writes poems, every gradient-flow chart is computed."""
import math
import re

import pytest

pytest.importorskip("streamlit")
from apptools import app as _app, status as _status, texts as _texts  # noqa: E402
from apptools import wait_for_finish as _wait_for_finish  # noqa: E402
from streamlit.testing.v1 import AppTest  # noqa: E402


def test_home_explains_the_equations_and_the_device(runs_dir):
    at = _app()
    assert "rnncore" in at.title[0].value
    latex = " ".join(_texts(at.latex))
    for piece in (r"\tanh", "softmax", r"\sum_{t=1}^{T}", r"\frac{\partial L}{\partial W}"):
        assert piece in latex
    info = " ".join(_texts(at.info))
    assert ("CPU" in info) or ("CUDA" in info)
    md = " ".join(_texts(at.markdown))
    assert "Randomized truncation" in md and "vanish" in md and "explode" in md


def test_train_then_generate_with_the_trained_run(runs_dir):
    at = _app("pages/train.py")
    for key in ("train_cell", "train_engine", "train_strategy", "train_optimizer"):
        assert at.selectbox(key=key) is not None
    for key in ("train_budget", "train_clip", "train_max_poems", "train_eval_every"):
        assert at.number_input(key=key) is not None
    assert at.select_slider(key="train_lr") is not None
    assert at.button(key="train_stop").disabled and at.button(key="train_resume").disabled
    assert any("valid poems" in c for c in _texts(at.caption))
    # a tiny model for a few seconds, through the page's own controls
    at.select_slider(key="train_hidden").set_value(16)
    at.select_slider(key="train_embed").set_value(16)
    at.number_input(key="train_max_poems").set_value(200)
    at.number_input(key="train_budget").set_value(5)
    at.number_input(key="train_eval_every").set_value(5)
    at.selectbox(key="train_cell").set_value("gru")
    at.select_slider(key="train_lr").set_value(0.01)
    at.button(key="train_start").click().run()
    assert not at.exception, at.exception
    assert not at.error, _texts(at.error)
    assert at.button(key="train_start").disabled  # one job per session at a time
    _wait_for_finish(at)
    metrics = {m.label: m.value for m in at.metric}
    train_bpc = float(metrics["train bits/char"])
    val_bpc = float(metrics["val bits/char"])
    assert math.isfinite(train_bpc) and math.isfinite(val_bpc)
    # the loss went down: the first step predicts ~log2(vocab) bits per character
    first_delta = [m for m in at.metric if m.label == "train bits/char"][0]
    assert first_delta.delta is not None and first_delta.delta.startswith("-"), first_delta.delta
    assert len(at.get("plotly_chart")) == 3
    assert any(c.startswith("step ") for c in _texts(at.caption))  # a sample poem per eval
    assert not at.button(key="train_resume").disabled
    runs = [p for p in runs_dir.iterdir() if p.is_dir()]
    assert len(runs) == 1 and (runs[0] / "latest.json").is_file()
    last_step = max(int(c.split()[1]) for c in _texts(at.caption) if c.startswith("step "))
    # resume from the latest checkpoint: same run folder, the step count continues
    at.number_input(key="train_budget").set_value(5)
    at.button(key="train_resume").click().run()
    assert not at.exception and not at.error, _texts(at.error)
    _wait_for_finish(at)
    assert [p for p in runs_dir.iterdir() if p.is_dir()] == runs
    progress = _status(at)
    resumed_step = int(re.search(r"at step ([\d,]+)", progress)[1].replace(",", ""))
    assert resumed_step > last_step, (progress, last_step)

    # Generate with the run just trained (same session)
    at.switch_page("pages/generate.py").run()
    at.radio(key="gen_source").set_value("A run trained here").run()
    assert not at.exception, at.exception
    assert not at.error, _texts(at.error)
    assert any(c.startswith("GRU 1×16") for c in _texts(at.caption))
    poems = at.session_state["gen_poems"]
    assert len(poems) == 1 and len(poems[0]["lines"]) == 8  # the default 七言律詩
    assert all(len(line) == 8 for line in poems[0]["lines"])
    assert any("form: ✓" in c for c in _texts(at.caption))
    # rhyme + tones + beam + 2 poems
    at.toggle(key="gen_rhyme").set_value(True)
    at.toggle(key="gen_tones").set_value(True)
    at.selectbox(key="gen_strategy").set_value("beam")
    at.number_input(key="gen_num").set_value(2)
    at.button(key="FormSubmitter:gen_form-Generate").click().run()
    assert not at.exception and not at.error, _texts(at.error)
    poems = at.session_state["gen_poems"]
    assert len(poems) == 2 and all(p["metrics"]["rhyme_valid"] for p in poems)
    # lock two lines, regenerate the rest
    kept = poems[0]["lines"][:2]
    at.multiselect(key="gen_lock_lines").set_value([0, 1]).run()
    at.button(key="gen_regen").click().run()
    assert not at.exception and not at.error, _texts(at.error)
    assert at.session_state["gen_poems"][0]["lines"][:2] == kept
    # a user mistake is a clear message, not a traceback
    at.text_input(key="gen_acrostic").set_value("春夏")
    at.button(key="FormSubmitter:gen_form-Generate").click().run()
    assert not at.exception
    assert any("acrostic" in e and "8 lines" in e for e in _texts(at.error))

    # Gradient Flow can probe the run just trained next to the fresh cells
    at.switch_page("pages/gradient_flow.py").run()
    _small_gradient_flow(at)
    choices = at.selectbox(key="gf_trained").options
    assert choices[0] == "(none)" and "the bundled model" in choices
    ours = [c for c in choices if "GRU 1×16" in c]
    assert len(ours) == 1
    at.selectbox(key="gf_trained").set_value(ours[0]).run()
    assert not at.exception and not at.error, _texts(at.error)
    assert "TRAINED GRU" in at.radio(key="gf_act_cell").options
    assert "for the trained gru model: mean gate" in " ".join(_texts(at.markdown))


def _small_gradient_flow(at: AppTest) -> None:
    at.select_slider(key="gf_hidden").set_value(16)
    at.slider(key="gf_seq_len").set_value(16)
    at.slider(key="gf_draws").set_value(4)
    at.run()
    assert not at.exception and not at.error, _texts(at.error)


def test_generate_page_default_model(runs_dir):
    at = _app("pages/generate.py")
    assert at.radio(key="gen_source").value == "Bundled model"
    assert not at.error, _texts(at.error)
    poems = at.session_state["gen_poems"]
    assert len(poems) == 1 and poems[0]["lines"]


def test_gradient_flow_page_computes_every_chart(runs_dir):
    at = _app("pages/gradient_flow.py")
    _small_gradient_flow(at)
    assert len(at.get("plotly_chart")) == 6
    md = " ".join(_texts(at.markdown))
    assert "σ_max(W_hh)" in md and "diag(f_t)" in md and "unbiased" in md
    for rho in (0.6, 1.4):
        at.slider(key="gf_rho").set_value(rho).run()
        assert not at.exception
        assert f"ρ = {rho:.2f}" in " ".join(_texts(at.markdown))
    at.radio(key="gf_loss").set_value("sum").run()
    at.radio(key="gf_trunc_cell").set_value("gru").run()
    at.selectbox(key="gf_act_name").set_value("f").run()
    assert not at.exception and len(at.get("plotly_chart")) == 6


def test_benchmarks_page_plots_reports_and_runs_one_now(runs_dir, tmp_path, monkeypatch):
    from benchmarks.config import BenchConfig
    from benchmarks.report import run_benchmark, write_report

    monkeypatch.setenv("RNNCORE_BENCH_DIR", str(tmp_path))
    at = _app("pages/benchmarks.py")
    assert any("No committed benchmark results" in i for i in _texts(at.info))
    committed = run_benchmark(BenchConfig.preset(quick=True), ("layers",))
    write_report(committed, tmp_path, png=False)
    at.run()
    assert not at.exception and not at.error, _texts(at.error)
    assert any(c.startswith(committed["machine"]["date"]) for c in _texts(at.caption))
    assert len(at.get("plotly_chart")) == 2  # layers (ratio) and layers (GFLOP/s)
    picker = at.selectbox(key="bench_run_layers")  # one picker per kind of chart
    assert " · layers · " in picker.options[0], picker.options
    at.button(key="bench_run_now").click().run()
    assert not at.exception and not at.error, _texts(at.error)
    import json

    spec = json.loads(at.get("plotly_chart")[0].proto.spec)
    names = {trace.get("name") for trace in spec["data"]}
    assert {"bptt", "bptt (now)", "native (now)"} <= names  # this run added to the plot
    assert len(at.get("plotly_chart")) == 4  # committed (2) + this machine (2)
