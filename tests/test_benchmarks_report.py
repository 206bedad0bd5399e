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


# --- the training-step breakdown (benchmarks/measure_step.py) --------------------------------

def _step_case(engine="bptt", dropout=0.1, cls=None):
    from benchmarks import measure_step as ms

    data = ms.step_batch("random", batch=3, window=6, vocab_size=50, seed=0)
    return (cls or ms.StepCase)(engine, data, embedding_dim=8, hidden_size=12, num_layers=2,
                                dropout=dropout, clip=1.0, lr=1e-2, device="cpu", seed=0)


@pytest.mark.parametrize("engine", ["bptt", "native"])
def test_step_parts_compute_the_whole_step(engine):
    """Same weights, Adam state and dropout masks: recurrent + head + update give the whole
    step's (clipped) gradients, loss and updated weights."""
    case = _step_case(engine, dropout=0.1)
    before = [p.detach().clone() for p in case.params]
    chk = case.check()
    assert chk["grad_relative_error"] < 1e-6, chk
    assert chk["param_max_abs_diff"] < 1e-6 and chk["loss_abs_diff"] < 1e-4, chk
    # check() leaves the case as it found it (the timing starts from the same state)
    assert all(torch.equal(a, p.detach()) for a, p in zip(before, case.params))


def test_step_parts_match_an_independent_gradient():
    """recurrent() + head() write d/dtheta of the mean cross-entropy of CharRNN.forward from
    the carried state (plain autograd, no window_loss), without dropout."""
    case = _step_case("bptt", dropout=0.0)
    model = case.model
    model.zero_grad(set_to_none=True)
    logits, _ = model(case.inputs, case.state)
    loss = torch.nn.functional.cross_entropy(logits.reshape(-1, logits.size(-1)),
                                             case.targets.reshape(-1))
    ref = torch.autograd.grad(loss, case.params)
    case.recurrent()
    case.head()
    got = torch.cat([p.grad.reshape(-1) for p in case.params])
    want = torch.cat([g.reshape(-1) for g in ref])
    assert float((got - want).norm() / want.norm()) < 1e-5
    assert float(want.norm()) > 1e-3  # a real gradient, not two zeros


def test_step_check_catches_a_part_that_differs():
    from benchmarks import measure_step as ms

    class HalfGradient(ms.StepCase):
        def recurrent(self):  # the wrong upstream gradient into the layer
            for p in self.recurrent_params:
                p.grad = None
            self._layer_output().backward(0.5 * self.grad_fixed)

    assert _step_case(cls=HalfGradient).check()["grad_relative_error"] > 1e-2


def test_step_rows_add_up():
    from benchmarks import measure_step as ms

    data = ms.step_batch("random", batch=2, window=4, vocab_size=40, seed=1)
    rows = ms.measure_step_breakdown(("bptt", "native"), data, embedding_dim=8, hidden_size=8,
                                     num_layers=2, dropout=0.1, clip=1.0, lr=1e-3,
                                     device="cpu", warmup=1, repeats=3)
    assert [(r["engine"], r["part"]) for r in rows] == [
        (e, p) for e in ("bptt", "native") for p in ("step", *ms.PARTS, "remainder")]
    for e in ("bptt", "native"):
        by = {r["part"]: r for r in rows if r["engine"] == e}
        t = by["step"]["median_s"]
        assert by["step"]["chars_per_s"] == pytest.approx(2 * 4 / t)
        assert by["remainder"]["median_s"] == pytest.approx(
            t - sum(by[p]["median_s"] for p in ms.PARTS))
        assert sum(by[p]["share"] for p in (*ms.PARTS, "remainder")) == pytest.approx(1.0)
        assert by["head"]["share"] == pytest.approx(by["head"]["median_s"] / t)
        assert by["step"]["grad_relative_error"] < 1e-5


def test_step_batch_from_the_corpus_and_bad_source():
    from benchmarks import measure_step as ms

    from benchmarks.config import TANG_VOCAB

    b = ms.step_batch("corpus", batch=2, window=5, vocab_size=0)
    assert b.vocab_size == TANG_VOCAB == 4953  # the Tang corpus vocabulary, as the issue says
    assert b.inputs.shape == (2, 5) == b.prev_inputs.shape
    assert torch.equal(b.inputs[:, 1:], b.targets[:, :-1])  # next-character targets
    assert not torch.equal(b.inputs, b.prev_inputs)  # two different windows
    r = ms.step_batch("random", batch=2, window=5, vocab_size=30)
    assert torch.equal(r.inputs[:, 1:], r.targets[:, :-1])
    assert 4 <= int(r.inputs.min()) and int(r.inputs.max()) < 30
    with pytest.raises(ValueError, match="unknown step data"):
        ms.step_batch("imagenet", 2, 5, 30)
    with pytest.raises(BenchConfigError):
        BenchConfig(step_data="imagenet")


def _step_rows():
    rows = []
    for engine, t, parts in (("bptt", 0.5, (0.2, 0.15, 0.1)), ("native", 0.25, (0.1, 0.1, 0.075))):
        common = dict(engine=engine, layer=engine, batch=32, window=64, vocab_size=4953,
                      embedding_dim=128, hidden_size=256, num_layers=2, dropout=0.1, clip=1.0,
                      data="corpus", device="cpu", grad_relative_error=0.0,
                      param_max_abs_diff=0.0, loss_abs_diff=0.0, times_s=[t])
        rows.append(dict(common, part="step", median_s=t, share=1.0, chars_per_s=2048 / t))
        for name, v in zip(("recurrent", "head", "update"), parts):
            rows.append(dict(common, part=name, median_s=v, share=v / t, chars_per_s=2048 / t))
        rest = t - sum(parts)
        rows.append(dict(common, part="remainder", median_s=rest, share=rest / t,
                         chars_per_s=2048 / t))
    return rows


def test_step_report_figure_and_rebuild(tmp_path):
    from benchmarks.report import rebuild_figures
    from rnncore import plots

    res = dict(_fake_results(), step=_step_rows())
    run = write_report(res, tmp_path, png=False)
    assert (run / "step.csv").is_file() and (run / "step.html").is_file()
    md = (run / "report.md").read_text()
    assert "| bptt | 4096 | 500.0 | 200.0 ms (40.0%)" in md
    assert "| native | 8192 |" in md and "-25.0 ms (-10.0%)" in md  # negative remainder shown
    fig = plots.step_breakdown_figure(res["step"])
    bars = {t.name: t for t in fig.data}
    assert list(bars["embedding + recurrent layer (fwd+bwd)"].y) == pytest.approx([200, 100])
    assert list(bars["remainder (step - parts)"].text) == ["10%", "-10%"]
    assert list(bars["whole step"].text) == ["4,096 chars/s", "8,192 chars/s"]
    # rebuild: redraws what is missing, leaves the numbers alone
    (run / "step.html").unlink()
    before = json.loads((run / "results.json").read_text())
    out = rebuild_figures(run, png=False)
    assert out["html"] == ["step"] and out["png"] == [] and (run / "step.html").is_file()
    after = json.loads((run / "results.json").read_text())
    assert {k: v for k, v in after.items() if k != "files"} == \
        {k: v for k, v in before.items() if k != "files"}
    with pytest.raises(BenchmarkResultsError):
        rebuild_figures(tmp_path)  # the parent, not a run


def test_cli_rebuild_and_threads_errors(tmp_path, capsys):
    from benchmarks.__main__ import main

    assert main(["--rebuild", str(tmp_path), "--no-png"]) == 2
    assert capsys.readouterr().err.startswith("error: ")
    assert main(["--sections", "step", "--threads", "0", "--out", str(tmp_path)]) == 2
    assert "--threads" in capsys.readouterr().err


# --- PNG export ------------------------------------------------------------------------------

def _one_figure_results():
    res = _fake_results()
    return dict(res, layers=[], bptt_steps=[], fidelity=[], convergence=[], step=_step_rows())


def test_png_export_failure_is_html_only_with_a_note(tmp_path, monkeypatch, capsys):
    import plotly.io as pio

    def broken(*_a, **_k):
        raise RuntimeError("no browser here. Install one.\nsecond line")

    monkeypatch.setattr(pio, "write_images", broken)
    run = write_report(_one_figure_results(), tmp_path, png=True)
    assert (run / "step.html").is_file() and not (run / "step.png").exists()
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["note: PNG export skipped, figures written as HTML only "
                   "(RuntimeError: no browser here)"]
    saved = json.loads((run / "results.json").read_text())
    assert saved["png_export"] is False and "step_png" not in saved["files"]
    assert "PNG export skipped" in (run / "report.md").read_text()
    monkeypatch.setitem(__import__("sys").modules, "kaleido", None)  # not installed
    from benchmarks.report import export_pngs

    assert export_pngs({"x": object()}, tmp_path) == (
        [], "kaleido is not installed (pip install -r requirements.txt)")


@pytest.mark.slow
def test_png_is_written_when_chromium_exists(tmp_path, monkeypatch):
    from pathlib import Path

    from benchmarks.report import DEFAULT_CHROMIUM

    if not Path(DEFAULT_CHROMIUM).exists():
        pytest.skip(f"{DEFAULT_CHROMIUM} is not installed")
    monkeypatch.delenv("BROWSER_PATH", raising=False)  # export_png must find it itself
    run = write_report(_one_figure_results(), tmp_path, png=True)
    png = run / "step.png"
    assert png.is_file(), (run / "report.md").read_text()
    from PIL import Image

    with Image.open(png) as im:
        assert im.format == "PNG" and im.size[0] >= 400 and im.size[1] >= 300
        colors = im.convert("RGB").getcolors(maxcolors=1 << 16)
    # the plot's bar colours are in the picture (not a blank page)
    assert any(c == (31, 119, 180) for _, c in colors or [])
    saved = json.loads((run / "results.json").read_text())
    assert saved["png_export"] is True and saved["files"]["step_png"] == "step.png"


def test_measure_steps_runs_strategies_round_robin(monkeypatch):
    """The strategies of one T alternate step by step (load changes hit them alike), each
    with its own model; memory only for the labels asked for."""
    from benchmarks import measure_bptt as mb

    calls = []
    real = mb.sequence_step

    def spy(model, x, y, strategy, **kw):
        calls.append(strategy.label)
        return real(model, x, y, strategy, **kw)

    monkeypatch.setattr(mb, "sequence_step", spy)
    full, trunc = mb.Strategy.full(), mb.Strategy.truncated(4)
    rows = mb.measure_steps("rnn", [full, trunc], 16, batch=2, embedding_dim=4, hidden_size=4,
                            vocab_size=16, device="cpu", repeats=2, warmup=1,
                            memory_labels={"full"})
    assert calls[:6] == ["full", "tbptt k=4"] * 3          # warm-up round, then 2 timed rounds
    assert [r["strategy"] for r in rows] == ["full", "tbptt k=4"]
    assert [r["windows"] for r in rows] == [1, 4]
    assert all(len(r["times_s"]) == 2 for r in rows)
    assert "peak_bytes" in rows[0] and "retained_bytes" in rows[0]
    assert "peak_bytes" not in rows[1]
