"""The Benchmarks page's quality-per-second section (AppTest): a report written by
``benchmarks/report_qps.py`` shows as a conclusion, a plot of bpc against training time
(seeds as thin lines) and the numbers; the Train page's head defaults to "auto" as the CLI's."""
from __future__ import annotations

import json
from dataclasses import asdict

import pytest

pytest.importorskip("streamlit")
from apptools import app, texts  # noqa: E402


def _run(trainer: str, seed: int, final: float, cps: float) -> dict:
    curve = [{"step": 50 * i, "seconds": 60.0 * i, "bpc": final + 2.0 / i} for i in (1, 2, 3)]
    return {"trainer": trainer, "seed": seed, "steps": 150, "train_seconds": 180.0,
            "chars_per_s": cps, "final_bpc": final, "final_characters": 23892, "curve": curve,
            "head": "adaptive" if trainer == "rnncore" else "full"}


def test_benchmarks_page_shows_quality_per_second(runs_dir, tmp_path, monkeypatch):
    from benchmarks.measure_qps import QpsConfig, summarize
    from benchmarks.report_qps import write_qps_report

    runs = [_run("rnncore", s, 6.0 + 0.1 * s, 3000.0 + s) for s in (0, 1, 2)]
    runs += [_run("torch.nn", s, 6.1 + 0.1 * s, 1500.0) for s in (0, 1, 2)]
    qps = {"config": asdict(QpsConfig(seconds=180.0)), "runs": runs,
           "summary": summarize(runs), "vocab_size": 4953, "val_poems": 362,
           "default_head": "auto -> adaptive",
           "recipe": {"optimizer": "adam", "lr": 2e-3, "batch_size": 32,
                      "truncation_len": 64, "clip_norm": 1.0, "strategy": "truncated"},
           "commands": {"rnncore": ["-m", "rnncore", "train"],
                        "torch.nn": ["-m", "benchmarks.plain_loop"]}}
    write_qps_report(qps, tmp_path / "20991231-000000-qps", png=False)
    monkeypatch.setenv("RNNCORE_BENCH_DIR", str(tmp_path))
    at = app("pages/benchmarks.py")
    assert not at.error, texts(at.error)
    assert "Quality per second: our trainer against a plain torch.nn loop" in texts(at.header)
    md = " ".join(texts(at.markdown))
    assert "rather than a plain torch.nn loop" in md and "6.10 held-out bits" in md
    assert "](#qps)" in md and "+0.10" in md and "2.00x" in md
    spec = json.loads(at.get("plotly_chart")[-1].proto.spec)
    curves = [t for t in spec["data"] if t["mode"] == "lines"]
    assert len(curves) == 6 and {t["line"]["width"] for t in curves} == {1}
    assert [t["showlegend"] for t in curves] == [True, False, False] * 2
    finals = [t for t in spec["data"] if t["mode"] == "markers"]
    assert [round(t["y"][0], 3) for t in finals] == [6.1, 6.2]
    table = next(d.value for d in at.dataframe if "trainer" in d.value.columns)
    assert list(table["held-out bpc (mean ± std)"]) == ["6.100 ± 0.100", "6.200 ± 0.100"]
    assert "Targets: 1 of 2 met" in [e.label for e in at.expander]


def test_train_page_head_defaults_to_auto(runs_dir):
    from rnncore.kinds import HEAD_CHOICES

    at = app("pages/train.py")
    head = at.selectbox(key="train_head")
    assert head.value == "auto" and list(head.options) == list(HEAD_CHOICES)
    assert "adaptive from 2,000 characters" in head.help
