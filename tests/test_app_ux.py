"""The app as people meet it (issues #15 and #17), through AppTest: runs belong to the runs
folder, not to a browser tab; the Train page's settings lock during a run and check
themselves before Start; the download is what Generate takes; Generate draws a new seed
per click and shades by information that varies; Gradient Flow shows both regimes, fast;
Benchmarks leads with what to choose."""
import json
import math
import time

import pytest

pytest.importorskip("streamlit")
from apptools import app, status, texts, wait_for_finish  # noqa: E402

from rnncore import data as D  # noqa: E402
from rnncore.checkpoint import export_checkpoint_zip, latest_checkpoint  # noqa: E402
from rnncore.model import ModelConfig  # noqa: E402
from rnncore.trainer import TrainConfig, Trainer  # noqa: E402


def _tiny_settings(at, budget: int = 5) -> None:
    at.select_slider(key="train_hidden").set_value(16)
    at.select_slider(key="train_embed").set_value(16)
    at.number_input(key="train_max_poems").set_value(200)
    at.number_input(key="train_budget").set_value(budget)
    at.number_input(key="train_eval_every").set_value(5)
    at.selectbox(key="train_cell").set_value("gru")


@pytest.fixture(scope="module")
def cli_run(runs_dir):
    """A run trained without the app (no job.json), as `python -m rnncore train` makes."""
    out = runs_dir / "cli-run"
    Trainer(ModelConfig(cell="rnn", vocab_size=5, embedding_dim=16, hidden_size=16,
                        num_layers=1),
            TrainConfig(batch_size=8, truncation_len=16, max_steps=3, eval_every=0,
                        eval_max_poems=8, out_dir=str(out)),
            D.DataConfig(max_poems=60)).run()
    return out


def test_train_page_checks_settings_before_start(runs_dir):
    at = app("pages/train.py")
    assert "e" not in at.select_slider(key="train_lr").format_func(1e-4)  # 0.0001, not 1e-04
    at.slider(key="train_trunc").set_value(32)
    at.slider(key="train_k1").set_value(64).run()
    assert any("k1=64" in e and "k2=32" in e for e in texts(at.error)), texts(at.error)
    assert at.button(key="train_start").disabled
    at.slider(key="train_k1").set_value(32).run()
    assert not at.error and not at.button(key="train_start").disabled
    # an upload is validated on arrival: two poems leave no validation split
    at.radio(key="train_source").set_value("Upload a file").run()
    two = "白日依山盡，黃河入海流。欲窮千里目，更上一層樓。\n床前明月光，疑是地上霜。舉頭望明月，低頭思故鄉。\n"
    at.file_uploader(key="train_upload").set_value(("two.txt", two.encode(), "text/plain"))
    at.run()
    assert not at.exception
    assert any("two.txt" in e and "too few" in e for e in texts(at.error)), texts(at.error)
    assert at.button(key="train_start").disabled


def test_runs_are_listed_for_every_session_and_resumable(runs_dir, cli_run):
    a = app("pages/train.py")
    _tiny_settings(a, budget=30)
    a.button(key="train_start").click().run()
    assert not a.exception and not a.error, texts(a.error)
    # during the run the settings are folded away and locked
    assert "locked" in a.expander[0].label
    assert a.select_slider(key="train_hidden").disabled and a.slider(key="train_trunc").disabled
    # another tab (a new session) sees the runs on disk but cannot stop this one
    b = app("pages/train.py")
    assert not any("No training run" in i for i in texts(b.info))
    assert b.button(key="train_stop").disabled
    picker = b.selectbox(key="train_run_pick")
    assert len(picker.options) == 1 and b.expander[0].label == "Settings"  # the CLI run
    assert "Trained with the command line to step 3" in status(b)
    assert len(b.get("plotly_chart")) == 3  # its curves, read from steps.jsonl
    a.button(key="train_stop").click().run()
    wait_for_finish(a)
    line = status(a)
    assert line.startswith("Stopped by you at step ") and "stopped:" not in line, line
    assert not [c for c in texts(a.caption) if c.lower().startswith(("stopped", "finished"))]
    assert a.expander[0].label == "Settings" and not a.select_slider(key="train_hidden").disabled
    assert {m.label for m in a.metric} >= {"chars/s (last 20 steps)", "train bits/char"}
    # the second tab resumes the command line's run: same folder, the steps continue
    b.run()
    assert len(b.selectbox(key="train_run_pick").options) == 2
    b.selectbox(key="train_run_pick").set_value(str(cli_run)).run()
    assert not b.button(key="train_resume").disabled
    b.number_input(key="train_budget").set_value(5)
    b.button(key="train_resume").click().run()
    assert not b.exception and not b.error, texts(b.error)
    wait_for_finish(b)
    assert "at step 6" in status(b)  # the CLI run's 3 steps, then 3 more (its step limit)
    assert len(list(runs_dir.glob("*/steps.jsonl"))) == 2
    # Generate (a third session) lists both runs
    g = app("pages/generate.py")
    g.radio(key="gen_source").set_value("A run trained here").run()
    assert len(g.selectbox(key="gen_run").options) == 2 and not g.error, texts(g.error)


def test_download_is_what_generate_accepts(runs_dir, cli_run):
    at = app("pages/train.py")
    at.selectbox(key="train_run_pick").set_value(str(cli_run)).run()
    assert not at.download_button(key="train_download").disabled
    data = export_checkpoint_zip(latest_checkpoint(cli_run), include_optimizer=False)
    at = app("pages/generate.py")
    at.radio(key="gen_source").set_value("Upload a checkpoint (.zip)").run()
    label = at.file_uploader(key="gen_upload").label
    assert "50 MB" in label and "Download model" in label and "optimizer.pt is not" in label
    at.file_uploader(key="gen_upload").set_value(("cli-run.zip", data, "application/zip"))
    at.run()
    assert not at.exception and not at.error, texts(at.error)
    assert any(c.startswith("RNN 1×16") for c in texts(at.caption))
    assert at.session_state["gen_poems"]


def test_generate_seeds_shading_and_model_changes(runs_dir, cli_run):
    at = app("pages/generate.py")
    submit = "FormSubmitter:gen_form-Generate"
    first = at.session_state["gen_poems"][0]
    at.button(key=submit).click().run()
    second = at.session_state["gen_poems"][0]
    assert first["seed"] != second["seed"] and first["lines"] != second["lines"]
    assert any(f"seed {second['seed']}" in m for m in texts(at.markdown))
    at.number_input(key="gen_seed").set_value(first["seed"])
    at.button(key=submit).click().run()
    assert at.session_state["gen_poems"][0]["lines"] == first["lines"]  # reproduced
    # shading: the chosen character against the best allowed one, which varies
    shades = {r for r in first["relative"] if r is not None}
    assert len(shades) > 10 and max(shades) <= 1.0
    assert any("likeliest character" in h.value for h in at.get("html"))
    assert not at.warning
    from rnncore.generate import FORM_TEMPERATURE

    # each form starts at its own measured temperature; the poems record what they used
    assert at.slider(key="gen_temperature").value == FORM_TEMPERATURE["qilv"]
    assert at.session_state["gen_config"]["temperature"] == FORM_TEMPERATURE["qilv"]
    at.selectbox(key="gen_formkey").set_value("wujue").run()
    assert at.slider(key="gen_temperature").value == FORM_TEMPERATURE["wujue"]
    at.button(key=submit).click().run()
    assert not at.warning                       # the bundled model was trained on every form
    assert len(at.session_state["gen_poems"][0]["lines"][0]) == 6
    assert at.session_state["gen_config"]["temperature"] == FORM_TEMPERATURE["wujue"]
    # another model: the bundled model's poems go, the run writes its own
    at.radio(key="gen_source").set_value("A run trained here").run()
    poems = at.session_state["gen_poems"]
    assert len(poems) == 1 and poems[0]["lines"] != first["lines"] and not at.error
    assert len(poems[0]["lines"]) == 4 and len(poems[0]["lines"][0]) == 6  # 五絕, with the run
    # the run learned the bundled corpus, 七言律詩 only
    assert any("五言絕句 is outside its training data" in w for w in texts(at.warning))


def test_gradient_flow_shows_both_regimes_quickly(runs_dir):
    at = app("pages/gradient_flow.py")
    timings = {}
    for name, act in (("rho 1.0 -> 1.4", lambda: at.slider(key="gf_rho").set_value(1.4)),
                      ("hidden 128 -> 64", lambda: at.select_slider(key="gf_hidden").set_value(64)),
                      ("hidden 64 -> 128", lambda: at.select_slider(key="gf_hidden").set_value(128)),
                      ("characters 32 -> 40", lambda: at.slider(key="gf_seq_len").set_value(40)),
                      ("W_hh init", lambda: at.selectbox(key="gf_init").set_value("orthogonal"))):
        t0 = time.perf_counter()
        act()
        at.run()
        timings[name] = round(time.perf_counter() - t0, 2)
        assert not at.exception and not at.error, texts(at.error)
    print("gradient flow interactions (s):", json.dumps(timings))
    # a generous bound on a shared 2-core machine; the goal is 2 s (see the report)
    assert max(timings.values()) < 8.0, timings
    at.selectbox(key="gf_init").set_value("default")
    at.slider(key="gf_seq_len").set_value(32).run()
    verdicts = {}
    for rho in (1.0, 1.4):
        at.slider(key="gf_rho").set_value(rho).run()
        text = " ".join(texts(at.markdown))
        verdicts[rho] = "explodes" if "gradient explodes" in text else \
            "vanishes" if "gradient vanishes" in text else "level"
        spec = json.loads(at.get("plotly_chart")[2].proto.spec)
        measured = [y for t in spec["data"][:1] for y in t["y"]]
        top = spec["layout"]["yaxis"]["range"][1]
        assert top <= math.log10(max(measured)) + 1.01  # the reference does not set the scale
    assert verdicts == {1.0: "vanishes", 1.4: "explodes"}, verdicts


def test_benchmarks_page_leads_with_what_to_choose(runs_dir):
    at = app("pages/benchmarks.py")
    assert not at.error, texts(at.error)
    headers = texts(at.header)
    assert headers[0] == "What to choose"
    md = " ".join(texts(at.markdown))
    assert "Truncate at k = 32–64" in md and "](#bptt_time)" in md and "7.77" in md
    assert "Truncated against full BPTT: time per character" in headers
    for chart in at.get("plotly_chart"):
        spec = json.loads(chart.proto.spec)
        legend = [t for t in spec["data"] if t.get("showlegend", True)]
        assert len(legend) <= 10, [t.get("name") for t in legend]
