"""Train/validation splits: the seeded split of any poem list (``split_poems``) and the
split of the full Tang corpus (``split_by_form``), which keeps held-out poems out of
training by their text.

The full corpus holds most of the bundled one, often with variant characters or copying
differences: of the 362 poems ``prepare_data(DataConfig())`` holds out (``bundled_held_out``)
60 equal a validated full-corpus poem exactly (ideographs only), 186 after t2s conversion
(187 among all records, one copy being rejected), 331 as near-duplicates
(``rnncore.data.neardup``). ``split_by_form`` therefore splits each form on its own and
then drops every training poem that near-duplicates a held-out poem, bundled or its own
(with the defaults: 329 and 172 of the 45,044 training poems).
"""
from __future__ import annotations

import functools
import math
import random
from collections import Counter
from dataclasses import dataclass, field
from typing import Sequence

from rnncore.data.config import DataConfig
from rnncore.data.corpus import Corpus, CorpusError, Poem, load_corpus
from rnncore.data.neardup import THRESHOLD, NearDupIndex, normalised
from rnncore.poetry import FORMS


def split_poems(poems: Sequence, val_fraction: float = 0.05, seed: int = 0) -> tuple[list, list]:
    """Deterministic train/validation split: a seeded permutation picks
    ``round(len * val_fraction)`` poems (at least 1 when ``val_fraction > 0`` and there are
    two or more poems) for validation. Both parts keep the corpus order."""
    if not 0.0 <= val_fraction < 1.0:
        raise ValueError(f"val_fraction must be in [0, 1), got {val_fraction}")
    n = len(poems)
    n_val = round(n * val_fraction)
    if val_fraction > 0 and n >= 2:
        n_val = min(max(n_val, 1), n - 1)
    order = list(range(n))
    random.Random(seed).shuffle(order)
    val_idx = set(order[:n_val])
    train = [p for i, p in enumerate(poems) if i not in val_idx]
    val = [p for i, p in enumerate(poems) if i in val_idx]
    return train, val


@dataclass
class Split:
    """Training and held-out poems; ``excluded``: training poems dropped, by reason
    (``"bundled_held_out"``, ``"own_held_out"``)."""

    train: list[Poem]
    val: list[Poem]
    excluded: dict[str, int] = field(default_factory=dict)


@functools.lru_cache(maxsize=1)
def bundled_held_out() -> tuple[Poem, ...]:
    """The poems ``prepare_data(DataConfig())`` holds out of the bundled corpus (362)."""
    cfg = DataConfig()
    poems = load_corpus(cfg.corpus, simplified=cfg.simplified).poems
    return tuple(split_poems(poems, cfg.val_fraction, cfg.seed)[1])


def split_by_form(poems: Sequence[Poem], val_fraction: float = 0.05, seed: int = 0,
                  bundled: Sequence[Poem] | None = None, threshold: float = THRESHOLD) -> Split:
    """Split each ``Poem.form`` with ``split_poems``, then drop the training poems that
    near-duplicate a ``bundled`` poem (default ``bundled_held_out()``) or a held-out poem of
    this split. Both parts keep the corpus order."""
    bundled = bundled_held_out() if bundled is None else bundled
    by_form: dict[str, list[int]] = {}
    for i, poem in enumerate(poems):
        by_form.setdefault(poem.form, []).append(i)
    val_idx = {i for group in by_form.values()
               for i in split_poems(group, val_fraction, seed)[1]}
    val = [p for i, p in enumerate(poems) if i in val_idx]
    candidates = [p for i, p in enumerate(poems) if i not in val_idx]
    train, excluded = _drop_near_duplicates(candidates, bundled, val, threshold)
    return Split(train, val, excluded)


def _drop_near_duplicates(candidates: Sequence[Poem], bundled: Sequence[Poem],
                          val: Sequence[Poem], threshold: float,
                          prefix: str = "") -> tuple[list[Poem], dict[str, int]]:
    """``candidates`` minus the near-duplicates of a ``bundled`` or a ``val`` poem, and the
    counts dropped (``prefix + "bundled_held_out"``, ``prefix + "own_held_out"``)."""
    bundled_index = NearDupIndex(normalised(bundled), threshold)
    own_index = NearDupIndex(normalised(val), threshold)
    kept: list[Poem] = []
    excluded: Counter = Counter()
    for poem, text in zip(candidates, normalised(candidates)):
        if bundled_index.matches(text):
            excluded[prefix + "bundled_held_out"] += 1
        elif own_index.matches(text):
            excluded[prefix + "own_held_out"] += 1
        else:
            kept.append(poem)
    return kept, dict(excluded)


def extra_training(poems: Sequence[Poem], chars, val: Sequence[Poem],
                   bundled: Sequence[Poem] | None = None,
                   threshold: float = THRESHOLD) -> tuple[list[Poem], dict[str, int]]:
    """The poems of a second corpus that may join the training poems (``DataConfig.
    extra_train``): those of the four regulated forms (``rnncore.poetry.FORMS``) written
    only in ``chars`` (a ``Vocab``: the main corpus's characters, so the vocabulary, and a
    model trained on the main corpus, stay as they are), minus the near-duplicates of a
    held-out poem (``bundled``, default ``bundled_held_out()``, and ``val``) as in
    ``split_by_form``. Returns them (corpus order) and the counts dropped, by reason
    (``"extra_other_form"``, ``"extra_out_of_vocab"``, ``"extra_bundled_held_out"``,
    ``"extra_own_held_out"``)."""
    bundled = bundled_held_out() if bundled is None else bundled
    dropped: Counter = Counter()
    candidates = []
    for poem in poems:
        if poem.form not in FORMS:
            dropped["extra_other_form"] += 1
        elif not all(c in chars for c in poem.text):
            dropped["extra_out_of_vocab"] += 1
        else:
            candidates.append(poem)
    kept, near = _drop_near_duplicates(candidates, bundled, val, threshold, "extra_")
    return kept, {**dict(dropped), **near}


def split_corpus(corpus: Corpus, cfg: DataConfig) -> Split:
    """The split training uses: the first ``cfg.max_poems`` poems, split per form
    (``split_by_form``) for a ``by_form`` corpus, else by ``split_poems``."""
    poems = corpus.poems[: cfg.max_poems] if cfg.max_poems else list(corpus.poems)
    if corpus.by_form:
        return split_by_form(poems, cfg.val_fraction, cfg.seed)
    return Split(*split_poems(poems, cfg.val_fraction, cfg.seed))


def min_poems(cfg: DataConfig) -> int:
    """The fewest poems whose validation share (``cfg.val_fraction``) holds a whole poem."""
    return max(2, math.ceil(1 / cfg.val_fraction - 1e-9)) if cfg.val_fraction else 1


def check_trainable(corpus: Corpus, cfg: DataConfig) -> None:
    """Raise ``CorpusError`` when ``corpus`` (the first ``cfg.max_poems``) has too few poems
    for a validation split (``min_poems``), before anything trains."""
    n = min(len(corpus), cfg.max_poems or len(corpus))
    need = min_poems(cfg)
    if n < need:
        raise CorpusError(
            f"{n} poem{'s' if n != 1 else ''} {'are' if n != 1 else 'is'} too few to train on: "
            f"{cfg.val_fraction:.0%} of the poems are held out for validation, which needs "
            f"at least {need}")
