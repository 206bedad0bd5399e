"""What the benchmark suite measures and how hard: one dataclass, a quick and a full preset.

Quick mode (``RNNCORE_BENCH_QUICK=1``, ``--benchmark-disable`` under pytest, or
``python -m benchmarks --quick``) uses tiny sizes so the whole suite is a smoke test of the
measurement code (< 2 min on 2 CPU cores). Full mode uses the sizes of the project brief and is
meant to be run on a quiet machine.
"""
from __future__ import annotations

import os
from dataclasses import asdict, dataclass, field

from rnncore.kinds import CELLS as _KNOWN_CELLS, ENGINES

CELLS = ("lstm", "gru", "rnn")   # the reports' order: the cell people ask about first

# (batch, seq_len, input_size, hidden_size) of the layer forward+backward benchmark
FULL_LAYER_SIZES = ((64, 64, 128, 256), (32, 100, 256, 256), (32, 128, 256, 512))
QUICK_LAYER_SIZES = ((4, 8, 16, 32),)
# the Tang corpus vocabulary (rnncore.data.prepare_data(DataConfig(corpus="tang")))
TANG_VOCAB = 4953
STEP_DATA = ("corpus", "random")


class BenchConfigError(ValueError):
    """A benchmark setting the user gave is invalid."""


@dataclass
class BenchConfig:
    """Sizes, repeats and budgets of one benchmark run.

    ``layer_sizes``: (B, T, I, H) tuples. ``seq_lens``: T of the one-step BPTT sweep;
    ``truncations``: k of truncated BPTT (k1 = k2), ``uneven_truncation``: one (k1, k2) with
    k1 < k2. ``train_seconds``: wall-clock budget per strategy of the convergence run.
    ``step_*``: the training-step breakdown (``benchmarks/measure_step.py``): engines, data
    (``corpus`` or ``random``), model and batch sizes, dropout, clip, Adam's lr, rounds.
    """

    quick: bool = False
    device: str = "cpu"
    cells: tuple[str, ...] = CELLS
    engines: tuple[str, ...] = ENGINES
    layer_sizes: tuple[tuple[int, int, int, int], ...] = FULL_LAYER_SIZES
    warmup: int = 2
    repeats: int = 7
    matmul_size: int = 2048
    # one training step over a sequence of T characters (layer + head)
    bptt_batch: int = 16
    bptt_embedding: int = 128
    bptt_hidden: int = 256
    bptt_vocab: int = 256
    seq_lens: tuple[int, ...] = (64, 128, 256, 512, 1024, 2048, 4096)
    truncations: tuple[int, ...] = (8, 16, 32, 64, 128, 256)
    uneven_truncation: tuple[int, int] = (32, 64)
    bptt_repeats: int = 3
    memory_seq_lens: tuple[int, ...] = (256, 512, 1024, 2048, 4096)
    # gradient fidelity and convergence on the bundled corpus
    fidelity_seq_len: int = 512
    train_seconds: float = 120.0
    train_seq_len: int = 128
    train_batch: int = 32
    eval_every_seconds: float = 10.0
    # one truncated training step at the real training size (the quality record's model:
    # CharRNN LSTM 2 x 256, embedding 128, Tang vocabulary, batch 32, window 64, dropout 0.1,
    # Adam, clip 1.0); "corpus" reads real batches (vocabulary = the corpus's), "random"
    # draws tokens from ``step_vocab`` ids (the cost does not depend on which ids)
    step_engines: tuple[str, ...] = ("bptt", "native")
    step_data: str = "corpus"
    step_vocab: int = TANG_VOCAB
    step_embedding: int = 128
    step_hidden: int = 256
    step_layers: int = 2
    step_batch: int = 32
    step_window: int = 64
    step_dropout: float = 0.1
    step_clip: float = 1.0
    step_lr: float = 3e-3
    step_warmup: int = 3
    step_repeats: int = 21
    seed: int = 0
    extra: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.device not in ("cpu", "cuda"):
            raise BenchConfigError(f"device must be 'cpu' or 'cuda', got {self.device!r}")
        bad = [c for c in self.cells if c not in _KNOWN_CELLS]
        if bad:
            raise BenchConfigError(f"unknown cell(s) {bad}; choose from {list(_KNOWN_CELLS)}")
        bad = [e for e in (*self.engines, *self.step_engines) if e not in ENGINES]
        if bad:
            raise BenchConfigError(f"unknown engine(s) {bad}; choose from {list(ENGINES)}")
        if self.repeats < 1 or self.warmup < 0 or self.bptt_repeats < 1:
            raise BenchConfigError("repeats must be >= 1 and warmup >= 0")
        k1, k2 = self.uneven_truncation
        if not 0 < k1 <= k2:
            raise BenchConfigError(f"uneven_truncation needs 0 < k1 <= k2, got {(k1, k2)}")
        if self.step_data not in STEP_DATA:
            raise BenchConfigError(f"step_data must be one of {list(STEP_DATA)}, "
                                   f"got {self.step_data!r}")
        if self.step_repeats < 1 or self.step_warmup < 0:
            raise BenchConfigError("step_repeats must be >= 1 and step_warmup >= 0")
        if not 0.0 <= self.step_dropout < 1.0 or self.step_clip < 0:
            raise BenchConfigError("step_dropout must be in [0, 1) and step_clip >= 0")

    @classmethod
    def preset(cls, quick: bool, **overrides) -> "BenchConfig":
        """The quick (smoke test) or full preset, with any field overridden."""
        if quick:
            base = dict(
                quick=True, layer_sizes=QUICK_LAYER_SIZES, warmup=1, repeats=2, matmul_size=256,
                bptt_batch=2, bptt_embedding=16, bptt_hidden=32, bptt_vocab=32,
                seq_lens=(16, 32), truncations=(4, 8), uneven_truncation=(4, 8),
                bptt_repeats=1, memory_seq_lens=(16, 64), fidelity_seq_len=16,
                train_seconds=1.0, train_seq_len=16, train_batch=8, eval_every_seconds=0.5,
                # the real vocabulary (the head's size is the point), tiny everything else
                step_data="random", step_embedding=16, step_hidden=32, step_batch=4,
                step_window=8, step_warmup=1, step_repeats=3,
            )
        else:
            base = {}
        base.update(overrides)
        return cls(**base)

    def to_dict(self) -> dict:
        return asdict(self)


def quick_from_env() -> bool:
    """True when RNNCORE_BENCH_QUICK is set to a true value."""
    return os.environ.get("RNNCORE_BENCH_QUICK", "").strip().lower() in ("1", "true", "yes", "on")
