"""pytest-benchmark fixtures: quick (smoke test) or full sizes.

Quick mode when ``RNNCORE_BENCH_QUICK=1`` or when benchmarking is disabled
(``--benchmark-disable``, the project's default ``addopts``): tiny sizes, so the whole
benchmarks/ directory runs in CI as a test of the measurement code. Run the real thing with
``pytest benchmarks --benchmark-enable`` (or ``python -m benchmarks`` for the full report).
"""
from __future__ import annotations

import pytest

from benchmarks.config import BenchConfig, quick_from_env


def _quick(config: pytest.Config) -> bool:
    # pyproject's addopts pass --benchmark-disable; an explicit --benchmark-enable wins
    disabled = bool(getattr(config.option, "benchmark_disable", False)) and not bool(
        getattr(config.option, "benchmark_enable", False))
    return quick_from_env() or disabled


@pytest.fixture(scope="session")
def bench_config(request) -> BenchConfig:
    return BenchConfig.preset(quick=_quick(request.config))


@pytest.fixture(scope="session")
def matmul_peak(bench_config) -> dict:
    from benchmarks.measure import matmul_peak_gflops

    return matmul_peak_gflops(bench_config.device, bench_config.matmul_size,
                              bench_config.warmup, bench_config.repeats)


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """``layer_size`` and ``bptt_seq_len`` follow the mode's sizes."""
    cfg = BenchConfig.preset(quick=_quick(metafunc.config))
    if "layer_size" in metafunc.fixturenames:
        metafunc.parametrize("layer_size", list(enumerate(cfg.layer_sizes)),
                             ids=[f"B{b}T{t}I{i}H{h}" for b, t, i, h in cfg.layer_sizes])
    if "bptt_seq_len" in metafunc.fixturenames:
        metafunc.parametrize("bptt_seq_len", [max(cfg.seq_lens)], ids=lambda t: f"T{t}")
