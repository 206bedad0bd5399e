"""Gradient-flow probes on CPU (pytest-benchmark).

Target: every probe under 2 s for the 64-character poem (``[BOS]`` + 64 characters = 65
steps) at hidden size 256, one layer, float64 (the probes' precision). The rho sweep is
timed per rho value (one rescale + Jacobian + dL/dh_t measurement); a sweep over N values
costs N times that. Under ``--benchmark-disable`` (CI) each case runs once at hidden size
32, as a quick smoke test of the same code paths.
"""
import pytest
import torch

from rnncore import gradflow as gf

SEQ_LEN = 65


@pytest.fixture(scope="module", params=["rnn", "lstm", "gru"])
def probe(request):
    hidden = 32 if (request.config.getoption("benchmark_disable", False)
                   and not request.config.getoption("benchmark_enable", False)) else 256
    return gf.prepare(gf.GradFlowConfig(cell=request.param, hidden_size=hidden, seq_len=SEQ_LEN,
                                        embedding_dim=64, seed=0))


def _run(benchmark, name, fn, probe):
    benchmark.group = f"gradflow {name}"
    benchmark.extra_info.update(cell=probe.cell, hidden_size=probe.hidden_size, seq_len=SEQ_LEN,
                                target_s=2.0, threads=torch.get_num_threads())
    if benchmark.disabled:
        return benchmark(fn)   # runs once
    return benchmark.pedantic(fn, rounds=3, iterations=1, warmup_rounds=1)


def test_bench_hidden_grad_norms(benchmark, probe):
    frame = _run(benchmark, "hidden grad norms (last + sum)", lambda: gf.hidden_grad_norms(probe),
                 probe)
    assert len(frame) == 2 * SEQ_LEN


def test_bench_jacobian_norms(benchmark, probe):
    res = _run(benchmark, "jacobian norms (exact)", lambda: gf.jacobian_norms(probe), probe)
    assert res.method == "exact" and len(res.frame) == SEQ_LEN


def test_bench_spectral_radii(benchmark, probe):
    frame = _run(benchmark, "spectral radii", lambda: gf.spectral_radii(probe.model), probe)
    assert len(frame) == {"rnn": 1, "lstm": 4, "gru": 3}[probe.cell]


def test_bench_rho_sweep_point(benchmark, probe):
    sweep = _run(benchmark, "rho sweep (one rho)", lambda: gf.rho_sweep(probe, (1.25,)), probe)
    assert sweep.measured_rho.iloc[0] == pytest.approx(1.25)


def test_bench_tied_weights(benchmark, probe):
    res = _run(benchmark, "tied-weight contributions", lambda: gf.tied_weight_grads(probe), probe)
    assert res.max_abs_err < 1e-10


def test_bench_truncation_bias(benchmark, probe):
    frame = _run(benchmark, "truncation bias (7 k, 3 p x 16 draws)",
                 lambda: gf.truncation_bias(probe, draws=16), probe)
    assert len(frame) == 8 + 3   # k = 1..64 (powers of two) and 65, then three p


def test_bench_gate_paths(benchmark, probe):
    if probe.cell == "rnn":
        pytest.skip("no gates in a vanilla RNN")
    frame = _run(benchmark, "gate path check + stats",
                 lambda: (gf.gate_path_check(probe), gf.gate_stats(probe)), probe)[0]
    assert frame.err_diag_gate.max() < 1e-12


def test_bench_activations(benchmark, probe):
    acts = _run(benchmark, "activations", lambda: gf.activations(probe), probe)
    assert acts.values["h"].shape == (SEQ_LEN, probe.hidden_size)


def test_bench_clipping_frame(benchmark, probe):
    records = [{"step": i, "grad_norm": float(i % 7), "clipped": i % 7 > 5} for i in range(10_000)]
    frame = _run(benchmark, "clipping frame (10k steps)",
                 lambda: gf.clipping_frame(records, clip_threshold=5.0), probe)
    assert gf.clip_rate(frame) == pytest.approx(1428 / 10_000)
