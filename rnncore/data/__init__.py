"""Poems for training: corpus loading and validation (``corpus``), the character vocabulary
(``vocab``), ``DataConfig`` (``config``), and the split and batch layouts (``batches``).

The Chinese text rules (ideographs, marks, script conversion) live in ``rnncore.poetry``;
the ones validation uses are re-exported here.
"""
from rnncore.data.batches import (
    IGNORE_INDEX,
    PoemBatch,
    PreparedData,
    StreamBatcher,
    collate_poems,
    epoch_order,
    num_poem_batches,
    poem_batches,
    poem_stream,
    prepare_data,
    split_poems,
)
from rnncore.data.config import DataConfig
from rnncore.data.corpus import (
    MAX_CORPUS_BYTES,
    MAX_LINE_CHARS,
    MIN_LINE_CHARS,
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
from rnncore.data.vocab import Vocab
from rnncore.poetry import (
    END_MARKS,
    LACUNA,
    PAUSE_MARKS,
    STOP_MARKS,
    is_ideograph,
    to_simplified,
)

__all__ = [
    "IGNORE_INDEX", "PoemBatch", "PreparedData", "StreamBatcher", "collate_poems",
    "epoch_order", "num_poem_batches", "poem_batches", "poem_stream", "prepare_data",
    "split_poems", "DataConfig", "MAX_CORPUS_BYTES", "MAX_LINE_CHARS", "MIN_LINE_CHARS",
    "Corpus", "CorpusError", "Poem", "load_bundled_records", "load_corpus",
    "load_corpus_bytes", "record_lines", "split_lines", "validate_lines", "Vocab",
    "END_MARKS", "LACUNA", "PAUSE_MARKS", "STOP_MARKS", "is_ideograph", "to_simplified",
]
