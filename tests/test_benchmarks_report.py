"""The benchmark report machinery: memory measurement, targets, writing and loading."""
from __future__ import annotations

import json

import pytest
import torch

from benchmarks import measure_bptt as mb
from benchmarks.config import BenchConfig, BenchConfigError
from benchmarks.measure import cpu_peak_from_events, layer_flops, memory_profile, peak_memory
from benchmarks.report import (BenchmarkResultsError, check_targets, linear_slope,
                               load_results, write_report)

MB = 1_000_000


def test_peak_of_known_allocations():
    def fn():
        a = torch.empty(MB // 4)          # 1 MB
        b = torch.empty(2 * MB // 4)      # 2 MB -> 3 MB in use
        del a                             # 2 MB
        c = torch.empty(MB // 2 // 4)     # 0.5 MB -> 2.5 MB
        return b, c

    prof = memory_profile(fn, "cpu")
    assert prof["peak_bytes"] == 3 * MB
    assert prof["retained_bytes"] == 2 * MB + MB // 2  # b and c, returned and still alive
    kept = memory_profile(lambda: [torch.empty(MB // 4)], "cpu")
    assert kept["peak_bytes"] == MB


def test_peak_ignores_memory_held_before():
    held = torch.empty(4 * MB // 4)
    assert peak_memory(lambda: torch.empty(MB // 4), "cpu") == MB
    del held


def test_running_peak_from_events():
    assert cpu_peak_from_events([(3, -5), (1, 10), (2, 4), (4, 2)]) == 14
    assert cpu_peak_from_events([(1, -8), (2, 3)]) == 0  # frees of older memory
    assert cpu_peak_from_events([]) == 0


def test_analytic_counts_by_hand():
    # LSTM: E + 6H + V floats per step and row, 4 bytes each
    a = mb.analytic_activation_bytes("lstm", batch=2, seq_len=10, embedding_dim=3,
                                     hidden_size=5, vocab_size=7)
    assert a["per_step_bytes"] == 2 * (3 + 30 + 7) * 4
    assert a["total_bytes"] == 10 * a["per_step_bytes"]
    assert layer_flops("gru", 2, 3, 4, 5)["forward"] == 2 * 3 * 5 * 9 * 2 * 3


def test_windows_cover_the_sequence():
    assert mb.Strategy.full().windows(10) == [(0, 10, 10)]
    wins = mb.Strategy.truncated(8, 4).windows(14)
    assert wins == [(0, 4, 4), (0, 8, 4), (4, 12, 4), (8, 14, 2)]
    assert sum(n for _, _, n in wins) == 14
    with pytest.raises(ValueError):
        mb.Strategy.truncated(4, 8)


def test_truncation_at_full_length_is_full_bptt():
    torch.manual_seed(0)
    model = mb.make_model("lstm", 12, 4, 6, "cpu")
    x = torch.randint(0, 12, (2, 9))
    y = torch.randint(0, 12, (2, 9))
    full = mb.gradient_of(model, x, y, mb.Strategy.full())
    same = mb.compare_gradients(mb.gradient_of(model, x, y, mb.Strategy.truncated(9)), full)
    short = mb.compare_gradients(mb.gradient_of(model, x, y, mb.Strategy.truncated(2)), full)
    assert same["relative_error"] < 1e-5 and abs(same["cosine"] - 1) < 1e-6
    assert short["relative_error"] > 1e-4
    # cosine/relative error against a hand computation
    cmp = mb.compare_gradients(torch.tensor([1.0, 0.0]), torch.tensor([1.0, 1.0]))
    assert cmp["cosine"] == pytest.approx(2 ** -0.5) and cmp["relative_error"] == pytest.approx(
        2 ** -0.5)


def _fake_results(quick=True):
    cfg = BenchConfig.preset(quick=quick)
    steps = []
    for T, peak_full, peak_tr in ((100, 1000, 300), (200, 2000, 300), (400, 4000, 301)):
        steps.append(dict(cell="lstm", strategy="full", kind="full", truncation_len=T,
                          seq_len=T, us_per_token=2.0, timed=True, peak_bytes=peak_full,
                          retained_bytes=peak_full // 2, analytic_bytes=5 * T,
                          analytic_per_step_bytes=5))
        steps.append(dict(cell="lstm", strategy="tbptt k=64", kind="truncated",
                          truncation_len=64, update_interval=64, seq_len=T, us_per_token=2.4, timed=True,
                          peak_bytes=peak_tr, analytic_bytes=5 * T,
                          analytic_per_step_bytes=5))
    layers = [dict(cell="gru", engine=e, size="B1 T2 I3 H4", median_s=t, gflops=1.0,
                   ratio_to_native=t / 0.01, fraction_of_peak=0.1, size_index=0,
                   target_ratio=0.8 if e == "bptt" else None, times_s=[t])
              for e, t in (("bptt", 0.007), ("native", 0.01))]
    res = {"format": "rnncore-benchmarks/1",
           "machine": {"device": "cpu", "cpu_model": "x", "cpu_cores": 2, "torch_version": "t",
                       "date": "2026-01-01T00:00:00+00:00"},
           "config": cfg.to_dict(), "matmul": {"n": 8, "gflops": 10.0},
           "layers": layers, "bptt_steps": steps,
           "fidelity": [dict(cell="lstm", strategy="tbptt k=4", kind="truncated",
                             truncation_len=4, trained=False, cosine=0.9, relative_error=0.4)],
           "convergence": [dict(cell="lstm", strategy="full", kind="full", seconds=s,
                                val_bpc=b, step=i) for i, (s, b) in enumerate(((0, 9), (1, 8)))]}
    res["targets"] = check_targets(res)
    return res


def test_targets_are_computed_from_the_numbers():
    t = {r["target"]: r for r in _fake_results()["targets"]}
    layer = t["gru bptt vs torch.nn, B1 T2 I3 H4"]
    assert layer["status"] == "pass" and layer["measured"] == pytest.approx(0.7)
    mem = t["lstm tbptt k=64 peak memory T=400 vs T=100"]
    assert mem["status"] == "pass" and mem["measured"] == pytest.approx(301 / 300)
    slope = t["lstm full BPTT memory slope / analytic activations"]
    assert slope["measured"] == pytest.approx(2.0) and slope["status"] == "fail"
    kept = t["lstm full BPTT activations kept by the forward / analytic"]
    assert kept["measured"] == pytest.approx(1.0) and kept["status"] == "pass"
    speed = t["lstm tbptt k=64 time/token vs full, T=400"]
    assert speed["measured"] == pytest.approx(1.2) and speed["status"] == "fail"
    assert linear_slope([1, 2, 3], [2, 4, 6]) == pytest.approx(2)


def test_write_and_load_roundtrip(tmp_path):
    res = _fake_results()
    run1 = write_report(res, tmp_path, png=False)
    run2 = write_report(res, tmp_path, png=False)
    assert run1 != run2 and run1.exists()  # a second run never overwrites the first
    for name in ("results.json", "report.md", "layers.csv", "bptt_steps.csv", "fidelity.csv",
                 "convergence.csv", "targets.csv", "layers.html", "bptt_memory.html",
                 "bptt_time.html", "fidelity.html", "convergence.html"):
        assert (run1 / name).is_file(), name
    header = (run1 / "layers.csv").read_text().splitlines()[0]
    assert "ratio_to_native" in header and "machine_cpu_model" in header
    loaded = load_results(tmp_path)  # the parent: newest run
    assert loaded["run_dir"] == str(run2)
    assert loaded["layers"][0]["engine"] == "bptt"
    assert load_results(run1)["targets"] == json.loads(json.dumps(res["targets"]))
    assert "| **pass** |" in (run1 / "report.md").read_text()


def test_load_errors(tmp_path):
    with pytest.raises(BenchmarkResultsError):
        load_results(tmp_path)
    (tmp_path / "r").mkdir()
    (tmp_path / "r" / "results.json").write_text("{not json")
    with pytest.raises(BenchmarkResultsError):
        load_results(tmp_path / "r")
    (tmp_path / "r" / "results.json").write_text('{"format": "other"}')
    with pytest.raises(BenchmarkResultsError):
        load_results(tmp_path / "r")


def test_config_rejects_bad_settings():
    with pytest.raises(BenchConfigError):
        BenchConfig(device="tpu")
    with pytest.raises(BenchConfigError):
        BenchConfig(cells=("lstm", "transformer"))
    with pytest.raises(BenchConfigError):
        BenchConfig(uneven_truncation=(64, 32))
    assert BenchConfig.preset(quick=True).quick


def test_cli_reports_user_errors(capsys):
    from benchmarks.__main__ import main

    assert main(["--sections", "nonsense", "--out", "/nonexistent"]) == 2
    assert capsys.readouterr().err.startswith("error: unknown section")
