"""One training step over T characters under full / truncated / randomized BPTT
(pytest-benchmark), gradient fidelity and a short convergence run.

Time per token and peak memory go into ``benchmark.extra_info``; the speed targets are
checked by the report (``python -m benchmarks``). Asserted here are properties that do not
depend on timing: truncated memory does not grow with T, TBPTT with k >= T *is* full BPTT,
and a short training run lowers the validation bpc.
"""
from __future__ import annotations

import math

import pytest

from benchmarks import measure_bptt as mb
from benchmarks.config import CELLS
from benchmarks.report import fidelity_strategies, memory_truncation


def _strategies(cfg):
    return mb.default_strategies(cfg.truncations, cfg.uneven_truncation,
                                 randomized_k=memory_truncation(cfg))


def _sizes(cfg):
    return dict(batch=cfg.bptt_batch, embedding_dim=cfg.bptt_embedding,
                hidden_size=cfg.bptt_hidden, vocab_size=cfg.bptt_vocab)


@pytest.mark.parametrize("strategy_index", range(5), ids=["full", "tbptt-k-small", "tbptt-k",
                                                           "tbptt-k1<k2", "randomized"])
@pytest.mark.parametrize("cell", CELLS)
def test_training_step(benchmark, bench_config, cell, strategy_index, bptt_seq_len):
    cfg = bench_config
    strategies = _strategies(cfg)
    if strategy_index >= len(strategies):
        pytest.skip("this mode has fewer strategies")
    strategy = strategies[strategy_index] if strategy_index < 2 else strategies[
        {2: -3, 3: -2, 4: -1}[strategy_index]]
    row = mb.measure_step(cell, strategy, bptt_seq_len, device=cfg.device,
                          repeats=cfg.bptt_repeats, **_sizes(cfg))
    assert row["peak_bytes"] > 0 and math.isfinite(row["us_per_token"])
    benchmark.group = f"bptt step {cell} T={bptt_seq_len}"
    benchmark.extra_info.update({k: row[k] for k in (
        "cell", "strategy", "seq_len", "batch", "us_per_token", "peak_bytes", "analytic_bytes",
        "windows")})
    if cfg.quick:  # the measurement above already ran the step; keep the smoke test short
        benchmark.pedantic(lambda: row, rounds=1, warmup_rounds=0)
        return
    x, y = (t.to(cfg.device) for t in mb.corpus_batch(cfg.bptt_batch, bptt_seq_len,
                                                       cfg.bptt_vocab))
    _, step = mb.training_step(cell, strategy, x, y, embedding_dim=cfg.bptt_embedding,
                               hidden_size=cfg.bptt_hidden, vocab_size=cfg.bptt_vocab,
                               device=cfg.device)
    benchmark.pedantic(step, rounds=cfg.bptt_repeats, warmup_rounds=1)


@pytest.mark.parametrize("cell", CELLS)
def test_truncated_memory_does_not_grow(bench_config, cell):
    """Peak memory of TBPTT(k) is the same at the shortest and longest T, while full BPTT's
    grows, and full BPTT's kept activations are within 1.5x of the analytic count."""
    cfg = bench_config
    k = memory_truncation(cfg)
    t_lo, t_hi = min(cfg.memory_seq_lens), max(cfg.memory_seq_lens)
    trunc = [mb.measure_step(cell, mb.Strategy.truncated(k), t, device=cfg.device, repeats=1,
                             **_sizes(cfg))["peak_bytes"] for t in (t_lo, t_hi)]
    full = [mb.measure_step(cell, mb.Strategy.full(), t, device=cfg.device, repeats=1,
                            **_sizes(cfg)) for t in (t_lo, t_hi)]
    assert abs(trunc[1] / trunc[0] - 1) <= 0.05, trunc
    assert full[1]["peak_bytes"] > 2 * full[0]["peak_bytes"]
    slope = (full[1]["retained_bytes"] - full[0]["retained_bytes"]) / (t_hi - t_lo)
    assert 1 / 1.5 <= slope / full[0]["analytic_per_step_bytes"] <= 1.5


@pytest.mark.parametrize("cell", CELLS)
def test_gradient_fidelity(benchmark, bench_config, cell):
    cfg = bench_config
    T = cfg.fidelity_seq_len
    model = mb.make_model(cell, cfg.bptt_vocab, cfg.bptt_embedding, cfg.bptt_hidden, cfg.device)
    x, y = (t.to(cfg.device) for t in mb.corpus_batch(cfg.bptt_batch, T, cfg.bptt_vocab))
    # TBPTT with k >= T is exactly full BPTT: the comparison itself must say so
    same = mb.compare_gradients(mb.gradient_of(model, x, y, mb.Strategy.truncated(T)),
                                mb.gradient_of(model, x, y, mb.Strategy.full()))
    assert same["cosine"] > 1 - 1e-5 and same["relative_error"] < 1e-3
    rows = benchmark.pedantic(lambda: mb.gradient_fidelity(model, cell, fidelity_strategies(cfg),
                                                           x, y, trained=False),
                              rounds=1, warmup_rounds=0)
    shortest = min((r for r in rows if r["kind"] == "truncated"), key=lambda r: r["truncation_len"])
    assert shortest["relative_error"] > 0  # a shorter window really drops gradient terms
    assert all(-1 - 1e-9 <= r["cosine"] <= 1 + 1e-9 for r in rows)
    benchmark.extra_info.update({r["strategy"]: {"cosine": r["cosine"],
                                                 "relative_error": r["relative_error"]}
                                 for r in rows})


def test_convergence_lowers_bpc(benchmark, bench_config):
    cfg = bench_config
    rows, _ = benchmark.pedantic(
        lambda: mb.convergence_run("gru", mb.Strategy.truncated(memory_truncation(cfg)),
                                   seconds=cfg.train_seconds,
                                   eval_every_seconds=cfg.eval_every_seconds,
                                   batch=cfg.train_batch, seq_len=cfg.train_seq_len,
                                   embedding_dim=cfg.bptt_embedding, hidden_size=cfg.bptt_hidden,
                                   device=cfg.device, eval_max_poems=50),
        rounds=1, warmup_rounds=0)
    assert rows[0]["step"] == 0 and rows[-1]["step"] > 0
    assert rows[-1]["val_bpc"] < rows[0]["val_bpc"]
    benchmark.extra_info.update({"curve": [(r["seconds"], r["val_bpc"]) for r in rows]})
