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
    # each section's header, chart and sentences are present (other sections may join)
    for title in ("Leaky units", "Recursive networks", "Teacher forcing versus free running"):
        assert any(h.endswith(title) for h in headers), headers
    charts = len(at.get("plotly_chart"))
    assert charts >= 4                          # 2 leaky, 1 tree, 1 exposure (shipped)
    md = " ".join(_texts(at.markdown))
    assert md.count("**Claim.**") == len(headers) == md.count("**What the data say.**")
    assert "trained LSTM" in md and "depth 6 instead of 64" in md and "362 held-out" in md
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
    at.number_input(key="arch_exp_poems").set_value(4)
    at.number_input(key="arch_exp_samples").set_value(1)
    at.button(key="FormSubmitter:arch_exp_form-Run").click().run()
    _ok(at)
    md = " ".join(_texts(at.markdown))
    assert "**This run.** On 4 held-out poems" in md
    assert len(at.get("plotly_chart")) == charts     # the live run joins the shipped chart


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
