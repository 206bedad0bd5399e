"""Forward+backward time of each engine vs torch.nn, with GFLOP/s (pytest-benchmark).

Targets (checked in the report, not asserted): LSTM bptt <= 0.9x torch.nn at the first two
sizes and <= 1.0x at the third; GRU and RNN <= 0.8x. What *is* asserted: every engine
computed the same outputs and input gradients as torch.nn on the benchmarked inputs.
"""
from __future__ import annotations

import math

import pytest

from benchmarks.config import CELLS, ENGINES
from benchmarks.measure import layer_case, layer_target, measure_layer

_ROWS: dict = {}


def _rows(cfg, cell, size, peak):
    """All engines measured together (interleaved, same inputs), once per cell and size."""
    key = (cell, size)
    if key not in _ROWS:
        _ROWS[key] = {r["engine"]: r for r in measure_layer(cell, size, ENGINES, cfg.device,
                                                              cfg.warmup, cfg.repeats, peak)}
    return _ROWS[key]


@pytest.mark.parametrize("engine", ENGINES)
@pytest.mark.parametrize("cell", CELLS)
def test_layer_forward_backward(benchmark, bench_config, matmul_peak, cell, layer_size, engine):
    index, size = layer_size
    rows = _rows(bench_config, cell, size, matmul_peak["gflops"])
    row = rows[engine]
    assert row["max_abs_diff_to_first_engine"] < 1e-3, "engines disagree on the same inputs"
    assert math.isfinite(row["gflops"]) and row["gflops"] > 0

    steps, _ = layer_case(cell, size, (engine,), bench_config.device)
    benchmark.group = f"layer {cell} {row['size']}"
    benchmark.extra_info.update({
        "cell": cell, "engine": engine, "size": row["size"], "flops": row["flops"],
        "median_s_interleaved": row["median_s"], "gflops": row["gflops"],
        "ratio_to_native": row["ratio_to_native"],
        "matmul_peak_gflops": matmul_peak["gflops"],
        "fraction_of_peak": row["fraction_of_peak"],
        "target_ratio": layer_target(cell, index) if engine == "bptt" else None,
    })
    benchmark.pedantic(steps[engine], rounds=bench_config.repeats,
                       warmup_rounds=bench_config.warmup)
