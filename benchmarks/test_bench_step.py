"""One truncated training step at the real training size, whole and in parts
(pytest-benchmark): CharRNN LSTM 2 x 256, embedding 128, the Tang vocabulary (4,953),
batch 32 x window 64, dropout 0.1, Adam, clip 1.0 -- characters per second and the share
of the recurrent layer, the output softmax and the update.

Timing is reported in ``benchmark.extra_info`` (and by ``python -m benchmarks --sections
step``), not asserted. Asserted: the parts are the same computation as the whole step
(gradients and updated weights equal), and the shares with the remainder add up to 1.
Quick mode (the default ``--benchmark-disable``) uses tiny layers and random tokens over the
real vocabulary size.
"""
from __future__ import annotations

import math

import pytest

from benchmarks import measure_step as ms
from benchmarks.report import run_step

_ROWS: dict = {}


def _rows(cfg) -> dict:
    """Both engines measured together (interleaved, same batch), once per session."""
    if not _ROWS:
        for r in run_step(cfg):
            _ROWS[(r["engine"], r["part"])] = r
    return _ROWS


@pytest.mark.parametrize("engine", ("bptt", "native"))
def test_training_step_breakdown(benchmark, bench_config, engine):
    cfg = bench_config
    rows = _rows(cfg)
    step = rows[(engine, "step")]
    assert step["grad_relative_error"] < 1e-5 and step["param_max_abs_diff"] < 1e-5, \
        "the parts did not compute the whole step's gradients"
    assert math.isfinite(step["chars_per_s"]) and step["chars_per_s"] > 0
    shares = [rows[(engine, p)]["share"] for p in (*ms.PARTS, "remainder")]
    assert sum(shares) == pytest.approx(1.0)
    assert all(rows[(engine, p)]["median_s"] > 0 for p in ms.PARTS)
    benchmark.group = (f"training step LSTM {cfg.step_layers}x{cfg.step_hidden} "
                       f"B{cfg.step_batch} T{cfg.step_window} V{step['vocab_size']}")
    benchmark.extra_info.update({
        "engine": engine, "layer": step["layer"], "chars_per_s": step["chars_per_s"],
        "step_median_s": step["median_s"],
        **{f"{p}_share": rows[(engine, p)]["share"] for p in (*ms.PARTS, "remainder")},
        **{f"{p}_median_s": rows[(engine, p)]["median_s"] for p in ms.PARTS},
    })
    if cfg.quick:  # the measurement above already ran the step; keep the smoke test short
        benchmark.pedantic(lambda: step, rounds=1, warmup_rounds=0)
        return
    data = ms.step_batch(cfg.step_data, cfg.step_batch, cfg.step_window, cfg.step_vocab,
                         seed=cfg.seed)
    case = ms.StepCase(engine, data, embedding_dim=cfg.step_embedding,
                       hidden_size=cfg.step_hidden, num_layers=cfg.step_layers,
                       dropout=cfg.step_dropout, clip=cfg.step_clip, lr=cfg.step_lr,
                       device=cfg.device, seed=cfg.seed)
    benchmark.pedantic(case.step, rounds=cfg.step_repeats, warmup_rounds=cfg.step_warmup)
