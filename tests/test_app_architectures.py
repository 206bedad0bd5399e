"""The Architectures page through AppTest: every experiment renders with its claim, its
figure and a computed sentence, and each Run control reruns it."""
from pathlib import Path

import pytest

pytest.importorskip("streamlit")
from streamlit.testing.v1 import AppTest  # noqa: E402

APP = str(Path(__file__).resolve().parents[1] / "streamlit_app.py")


def _texts(elements) -> list[str]:
    return [e.value for e in elements]


def _ok(at: AppTest) -> None:
    assert not at.exception, at.exception
    assert not at.error, _texts(at.error)


def test_architectures_page_runs_every_experiment():
    at = AppTest.from_file(APP, default_timeout=300)
    at.run()
    at.switch_page("pages/architectures.py").run()
    _ok(at)
    headers = _texts(at.header)
    # every section's header is present, numbered in page order (other sections may join)
    for title in ("Leaky units", "Recursive networks", "Teacher forcing versus free running",
                  "Recurrence through the hidden state or through the output",
                  "Deep recurrent networks: depth in three places", *SECTION_TITLES):
        assert any(h.split(". ", 1)[1] == title for h in headers), title
    assert [int(h.split(".")[0]) for h in headers] == list(range(1, len(headers) + 1))
    n_charts = len(at.get("plotly_chart"))
    assert n_charts >= 9      # 2 leaky, 1 tree, 1 exposure, patterns, depth, readers, length
    md = " ".join(_texts(at.markdown))
    assert md.count("**Claim.**") == len(headers)
    assert md.count("**What the data say.**") >= len(headers)  # readers: one per task
    assert "trained LSTM" in md and "depth 6 instead of 64" in md and "362 held-out" in md
    assert "pattern 1, the tanh RNN" in md and "shallow (H = 64)" in md
    # each Run with small settings
    at.multiselect(key="arch_alphas").set_value([0.0, 0.9])
    at.select_slider(key="arch_leaky_hidden").set_value(16)
    at.checkbox(key="arch_leaky_trained").set_value(False)
    at.button(key="FormSubmitter:arch_leaky_form-Run").click().run()
    _ok(at)
    md = " ".join(_texts(at.markdown))
    assert "leaky α=0.9" in md and "trained LSTM" not in md
    at.slider(key="arch_tree_len").set_value(16)
    at.button(key="FormSubmitter:arch_tree_form-Run").click().run()
    _ok(at)
    assert "depth 4 instead of 16" in " ".join(_texts(at.markdown))
    n_charts = len(at.get("plotly_chart"))
    at.number_input(key="arch_exp_poems").set_value(4)
    at.number_input(key="arch_exp_samples").set_value(1)
    at.button(key="FormSubmitter:arch_exp_form-Run").click().run()
    _ok(at)
    md = " ".join(_texts(at.markdown))
    assert "**This run.** On 4 held-out poems" in md
    assert len(at.get("plotly_chart")) == n_charts    # the live run joins the shipped chart
    _readers_and_stopping(at)


SECTION_TITLES = ("Sequence to one, read in both directions", "Deciding the length")


def _readers_and_stopping(at: AppTest) -> None:
    """The sequence-to-one and stopping sections: both shipped results with their sentences,
    the rhyme Run, and the stopping Run where the full corpus is present (else one line
    telling how to get it)."""
    from rnncore.data.tang import tarball_path

    md = " ".join(_texts(at.markdown))
    assert "rhyme group of a 七律 from its first couplet" in md
    assert "Tang or Song from the text" in md and "bidirectional" in md
    assert "held-out poems have" in md and "W1" in md
    full = tarball_path().is_file()
    assert at.selectbox(key="arch_reader_task").options == (
        ["rhyme", "dynasty"] if full else ["rhyme"])
    at.number_input(key="arch_reader_epochs").set_value(1)
    at.select_slider(key="arch_reader_hidden").set_value(16)
    at.button(key="FormSubmitter:arch_reader_form-Run").click().run()
    _ok(at)
    md = " ".join(_texts(at.markdown))
    assert "**This run.** Predicting the rhyme group" in md
    infos = " ".join(_texts(at.info))
    if not full:
        assert "python -m rnncore corpus fetch" in infos
        return
    at.number_input(key="arch_stop_poems").set_value(100)
    at.number_input(key="arch_stop_samples").set_value(16)
    at.button(key="FormSubmitter:arch_stop_form-Run").click().run()
    _ok(at)
    assert "**This run.** 10 held-out poems have" in " ".join(_texts(at.markdown))


def test_architectures_couplet_section():
    """The encoder-decoder section: header, shipped chart and sentence, examples, Run."""
    at = AppTest.from_file(APP, default_timeout=300)
    at.run()
    at.switch_page("pages/architectures.py").run()
    _ok(at)
    assert any(h.endswith("Encoder-decoder: fixed context versus attention")
               for h in _texts(at.header))
    md = " ".join(_texts(at.markdown))
    assert "held-out couplets the 下句 costs" in md and "上句 through attention" in md
    charts = len(at.get("plotly_chart"))
    at.number_input(key="arch_cpl_train").set_value(300)
    at.select_slider(key="arch_cpl_hidden").set_value(16)
    at.number_input(key="arch_cpl_epochs").set_value(0.5)
    at.button(key="FormSubmitter:arch_cpl_form-Run").click().run()
    _ok(at)
    assert "**This run.** On 400 held-out couplets" in " ".join(_texts(at.markdown))
    assert len(at.get("plotly_chart")) == charts     # the live run joins the shipped chart


def test_architectures_design_and_depth_runs():
    """The two sections that train models live, with the smallest settings."""
    at = AppTest.from_file(APP, default_timeout=300)
    at.run()
    at.switch_page("pages/architectures.py").run()
    _ok(at)
    n_charts = len(at.get("plotly_chart"))
    at.slider(key="arch_pat_seconds").set_value(1)
    at.select_slider(key="arch_pat_hidden").set_value(32)
    at.number_input(key="arch_pat_poems").set_value(4)
    at.button(key="FormSubmitter:arch_pat_form-Run").click().run()
    _ok(at)
    md = " ".join(_texts(at.markdown))
    assert "**This run.** With 1 CPU seconds each" in md and "4 held-out poems" in md
    at.slider(key="arch_depth_steps").set_value(2)
    at.multiselect(key="arch_depth_places").set_value(["shallow", "output"])
    at.select_slider(key="arch_depth_hidden").set_value(32)
    at.number_input(key="arch_depth_poems").set_value(4)
    at.button(key="FormSubmitter:arch_depth_form-Run").click().run()
    _ok(at)
    md = " ".join(_texts(at.markdown))
    assert "**This run.** 2 models of" in md and "2 steps each, 4 held-out poems" in md
    assert len(at.get("plotly_chart")) == n_charts    # live runs join the shipped charts
    at.multiselect(key="arch_depth_places").set_value([])
    at.button(key="FormSubmitter:arch_depth_form-Run").click().run()
    assert not at.exception and "choose at least one place" in " ".join(_texts(at.error))
