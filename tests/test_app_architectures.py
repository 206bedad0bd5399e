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
    assert headers == ["1. Leaky units", "2. Recursive networks",
                       "3. Teacher forcing versus free running"]
    assert len(at.get("plotly_chart")) == 4           # 2 leaky, 1 tree, 1 exposure (shipped)
    md = " ".join(_texts(at.markdown))
    assert md.count("**Claim.**") == 3 and md.count("**What the data say.**") == 3
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
    assert len(at.get("plotly_chart")) == 4           # the live run joins the shipped chart
