"""From poems to training batches: the train/validation split (``prepare_data``) and the
two layouts the trainer reads.

(a) whole poems, padded (``poem_batches``): full BPTT, the state starts at zero per batch;
(b) one shuffled token stream cut into parallel rows (``poem_stream`` + ``StreamBatcher``):
    truncated BPTT, the state is carried from chunk to chunk.
"""
from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import Iterator, NamedTuple, Sequence

import torch

from rnncore.data.config import DataConfig
from rnncore.data.corpus import Corpus, Poem, load_corpus
from rnncore.data.split import extra_training, split_corpus
from rnncore.data.vocab import Vocab

IGNORE_INDEX = -100  # target value that torch.nn.functional.cross_entropy skips


@dataclass
class PreparedData:
    """Everything the trainer needs from a ``DataConfig``."""

    corpus: Corpus
    vocab: Vocab
    train: list[list[int]]  # encoded poems, [BOS] ... [EOS]
    val: list[list[int]]
    train_poems: list[Poem]
    val_poems: list[Poem]
    excluded: dict[str, int] = field(default_factory=dict)  # Split.excluded (+ extra's)
    extra: int = 0  # training poems from DataConfig.extra_train


def prepare_data(cfg: DataConfig, corpus: Corpus | None = None) -> PreparedData:
    """Load (unless ``corpus`` is given), split (``split_corpus``: ``max_poems``, per form
    for the full Tang corpus), build the vocab over the kept poems, add ``cfg.extra_train``'s
    admitted poems (``extra_training``) to the training poems and encode. ``excluded``
    counts what was dropped, by reason, and ``extra`` the poems added."""
    if corpus is None:
        corpus = load_corpus(cfg.corpus, simplified=cfg.simplified)
    split = split_corpus(corpus, cfg)
    vocab = Vocab.build((p.text for p in split.train + split.val), forms=cfg.form_tokens)
    train, excluded = split.train, dict(split.excluded)
    if cfg.extra_train:
        extra = load_corpus(cfg.extra_train, simplified=cfg.simplified).poems
        kept, dropped = extra_training(extra, vocab, split.val)
        train, excluded = train + kept, {**excluded, **dropped}
    return PreparedData(
        corpus=corpus,
        vocab=vocab,
        train=[vocab.encode_poem(p.text, p.form) for p in train],
        val=[vocab.encode_poem(p.text, p.form) for p in split.val],
        train_poems=train,
        val_poems=split.val,
        excluded=excluded,
        extra=len(train) - len(split.train),
    )


# --------------------------------------------------------------------------- layout (a)

class PoemBatch(NamedTuple):
    """Whole poems, padded. ``inputs[b, t]`` predicts ``targets[b, t] = seq[t + 1]``.

    inputs  (B, T) long, padded with ``Vocab.pad_id``
    targets (B, T) long, ``IGNORE_INDEX`` (-100) at padding
    lengths (B,)   long, real (unpadded) length of each row
    """

    inputs: torch.Tensor
    targets: torch.Tensor
    lengths: torch.Tensor

    @property
    def mask(self) -> torch.Tensor:
        """(B, T) bool, True where a target is real."""
        return self.targets != IGNORE_INDEX


def epoch_order(num_items: int, seed: int, epoch: int) -> list[int]:
    """The shuffled order of items for one epoch (same seed+epoch -> same order)."""
    order = list(range(num_items))
    random.Random(seed * 1_000_003 + epoch).shuffle(order)
    return order


def num_poem_batches(num_poems: int, batch_size: int, drop_last: bool = False) -> int:
    return num_poems // batch_size if drop_last else -(-num_poems // batch_size)


def collate_poems(seqs: Sequence[Sequence[int]], pad_id: int = Vocab.pad_id) -> PoemBatch:
    """Pad encoded poems (each ``[BOS] ... [EOS]``, length >= 2) into a ``PoemBatch``."""
    if not seqs:
        raise ValueError("cannot collate an empty batch")
    lengths = [len(s) - 1 for s in seqs]
    if min(lengths) < 1:
        raise ValueError("every sequence needs at least 2 tokens (input and target)")
    width = max(lengths)
    inputs = torch.full((len(seqs), width), pad_id, dtype=torch.long)
    targets = torch.full((len(seqs), width), IGNORE_INDEX, dtype=torch.long)
    for b, seq in enumerate(seqs):
        row = torch.as_tensor(list(seq), dtype=torch.long)
        inputs[b, : len(row) - 1] = row[:-1]
        targets[b, : len(row) - 1] = row[1:]
    return PoemBatch(inputs, targets, torch.tensor(lengths, dtype=torch.long))


def poem_batches(
    encoded_poems: Sequence[Sequence[int]],
    batch_size: int,
    seed: int = 0,
    epoch: int = 0,
    *,
    shuffle: bool = True,
    drop_last: bool = False,
    start_batch: int = 0,
) -> Iterator[PoemBatch]:
    """Yield one epoch of padded whole-poem batches (for full BPTT; the state starts at
    zero for every batch). ``start_batch`` skips batches already done (exact resume)."""
    if batch_size < 1:
        raise ValueError(f"batch_size must be at least 1, got {batch_size}")
    n = len(encoded_poems)
    order = epoch_order(n, seed, epoch) if shuffle else list(range(n))
    total = num_poem_batches(n, batch_size, drop_last)
    for k in range(start_batch, total):
        idx = order[k * batch_size : (k + 1) * batch_size]
        yield collate_poems([encoded_poems[i] for i in idx])


# --------------------------------------------------------------------------- layout (b)

def poem_stream(encoded_poems: Sequence[Sequence[int]], seed: int = 0, epoch: int = 0,
                shuffle: bool = True) -> list[int]:
    """Concatenate encoded poems (shuffled per epoch) into one token stream."""
    order = epoch_order(len(encoded_poems), seed, epoch) if shuffle else range(len(encoded_poems))
    stream: list[int] = []
    for i in order:
        stream.extend(encoded_poems[i])
    return stream


class StreamBatcher:
    """A token stream cut into ``batch_size`` parallel rows, read in consecutive chunks
    (truncated BPTT). With ``n = (N - 1) // B`` tokens per row::

        inputs[b]  = stream[b*n     : b*n + n]
        targets[b] = stream[b*n + 1 : b*n + n + 1]

    ``next_chunk(L)`` returns columns ``[offset, offset + L)`` of both, so row ``b`` of chunk
    ``k + 1`` continues row ``b`` of chunk ``k`` and the hidden state can be carried across.
    ``L`` may change per call (randomized truncation); the last chunk may be shorter. The
    position (``state_dict``) is plain JSON for exact resume.
    """

    def __init__(self, token_stream: Sequence[int] | torch.Tensor, batch_size: int,
                 chunk_len: int = 32) -> None:
        if batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, got {batch_size}")
        if chunk_len < 1:
            raise ValueError(f"chunk_len must be at least 1, got {chunk_len}")
        stream = torch.as_tensor(token_stream, dtype=torch.long).reshape(-1)
        row_len = (stream.numel() - 1) // batch_size
        if row_len < 1:
            raise ValueError(
                f"stream of {stream.numel()} tokens is too short for batch_size {batch_size}"
            )
        used = stream[: batch_size * row_len + 1]
        self.inputs = used[:-1].reshape(batch_size, row_len)
        self.targets = used[1:].reshape(batch_size, row_len)
        self.batch_size = batch_size
        self.chunk_len = chunk_len
        self.row_len = row_len
        self.num_tokens = int(stream.numel())
        self.offset = 0

    @property
    def remaining(self) -> int:
        """Columns not yet read in this pass."""
        return self.row_len - self.offset

    @property
    def exhausted(self) -> bool:
        return self.offset >= self.row_len

    def num_chunks(self, chunk_len: int | None = None) -> int:
        """Chunks left at a fixed ``chunk_len``."""
        length = chunk_len or self.chunk_len
        return -(-self.remaining // length)

    def next_chunk(self, chunk_len: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Next (inputs, targets), each (B, L) long; raises StopIteration when exhausted."""
        length = self.chunk_len if chunk_len is None else int(chunk_len)
        if length < 1:
            raise ValueError(f"chunk_len must be at least 1, got {chunk_len}")
        if self.exhausted:
            raise StopIteration
        end = min(self.offset + length, self.row_len)
        x = self.inputs[:, self.offset : end].contiguous()
        y = self.targets[:, self.offset : end].contiguous()
        self.offset = end
        return x, y

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        while not self.exhausted:
            yield self.next_chunk()

    def reset(self) -> None:
        self.offset = 0

    def state_dict(self) -> dict:
        return {"offset": self.offset, "batch_size": self.batch_size,
                "row_len": self.row_len, "num_tokens": self.num_tokens}

    def load_state_dict(self, state: dict) -> None:
        """Restore a position saved by ``state_dict`` from a batcher over the same stream."""
        for key in ("batch_size", "row_len", "num_tokens"):
            if state.get(key) != getattr(self, key):
                raise ValueError(
                    f"stream position does not match this stream ({key}: saved "
                    f"{state.get(key)}, now {getattr(self, key)})"
                )
        offset = state.get("offset")
        if not isinstance(offset, int) or not 0 <= offset <= self.row_len:
            raise ValueError(f"invalid stream offset {offset!r}")
        self.offset = offset
