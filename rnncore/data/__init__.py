"""Poems for training: corpus loading and validation (``corpus``; the full Tang corpus:
``tang``), the character vocabulary (``vocab``), ``DataConfig`` (``config``), splits
(``split``, near-duplicates: ``neardup``), and the batch layouts (``batches``).

The Chinese text rules (ideographs, marks, script conversion) live in ``rnncore.poetry``;
the ones validation uses are re-exported here. The batch names load on first use (PEP 562),
so loading corpora (``python -m rnncore corpus``) does not pull in torch.
"""
import importlib

from rnncore.data.config import DataConfig
from rnncore.data.corpus import (
    MAX_CORPUS_BYTES,
    MAX_LINE_CHARS,
    MIN_LINE_CHARS,
    OTHER_FORM,
    Corpus,
    CorpusError,
    Poem,
    load_bundled_records,
    load_corpus,
    load_corpus_bytes,
    record_lines,
    split_lines,
    validate_lines,
)
from rnncore.data.split import (
    Split,
    bundled_held_out,
    check_trainable,
    min_poems,
    split_by_form,
    split_corpus,
    split_poems,
)
from rnncore.data.vocab import Vocab
from rnncore.poetry import (
    END_MARKS,
    LACUNA,
    PAUSE_MARKS,
    STOP_MARKS,
    is_ideograph,
    to_simplified,
)

_BATCHES = ("IGNORE_INDEX", "PoemBatch", "PreparedData", "StreamBatcher", "collate_poems",
            "epoch_order", "num_poem_batches", "poem_batches", "poem_stream", "prepare_data")

__all__ = [
    *_BATCHES,
    "split_poems", "Split", "bundled_held_out", "check_trainable", "min_poems", "split_by_form", "split_corpus",
    "DataConfig", "MAX_CORPUS_BYTES", "MAX_LINE_CHARS", "MIN_LINE_CHARS", "OTHER_FORM",
    "Corpus", "CorpusError", "Poem", "load_bundled_records", "load_corpus",
    "load_corpus_bytes", "record_lines", "split_lines", "validate_lines", "Vocab",
    "END_MARKS", "LACUNA", "PAUSE_MARKS", "STOP_MARKS", "is_ideograph", "to_simplified",
]


def __getattr__(name: str):
    if name in _BATCHES:
        return getattr(importlib.import_module("rnncore.data.batches"), name)
    raise AttributeError(f"module 'rnncore.data' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted([*globals(), *__all__])
