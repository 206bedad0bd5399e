"""Near-duplicate poems: one poem copied twice with variant characters, copying slips or in
the other script (the full Tang corpus holds many; so do the bundled corpus and it).

Two poems are near-duplicates when their ideograph strings (end marks dropped, OpenCC
``t2s`` applied) have the same length and agree in at least ``threshold`` (0.8) of the
positions, compared position by position.

Finding them is exact and fast by the pigeonhole rule: a string of n ideographs may differ
from a near-duplicate in at most k = n - ceil(threshold * n) positions, so when it is cut
into k + 1 fixed blocks at least one block is equal in both. ``NearDupIndex`` files every
indexed string under (length, block number, block text) and compares only the strings
that share a block with the query: nothing is missed, and 57k queries against a few
hundred poems (or the reverse) take about a second.
"""
from __future__ import annotations

import functools
import math
from typing import Iterable, Sequence

from rnncore.data.corpus import Poem
from rnncore.poetry import line_bodies, to_simplified

THRESHOLD = 0.8


def ideographs(poem: Poem) -> str:
    """The poem's ideographs without end marks: "床前明月光，疑是地上霜。" -> "床前明月光疑是地上霜"."""
    return "".join(line_bodies(poem.lines))


def normalised(poems: Sequence[Poem]) -> list[str]:
    """Each poem's ideographs in the simplified script (what near-duplicates compare)."""
    if not poems:
        return []
    # one OpenCC call for all poems: per-call overhead dominates on 57k short strings, and
    # the converter leaves the newlines (never inside a poem) where they are
    return to_simplified("\n".join(ideographs(p) for p in poems)).split("\n")


def min_matches(length: int, threshold: float = THRESHOLD) -> int:
    """Equal positions two strings of ``length`` need to be near-duplicates."""
    # the epsilon keeps 0.8 * 35 = 28.000000000000004 from asking for 29
    return math.ceil(threshold * length - 1e-9)


def is_near_duplicate(a: str, b: str, threshold: float = THRESHOLD) -> bool:
    """True if ``a`` and ``b`` have one length and agree in ``threshold`` of the positions."""
    return len(a) == len(b) and sum(x == y for x, y in zip(a, b)) >= min_matches(len(a),
                                                                                 threshold)


@functools.lru_cache(maxsize=64)
def _cuts(length: int, threshold: float) -> tuple[tuple[int, int], ...]:
    """(start, end) of the k + 1 blocks a string of ``length`` is cut into."""
    blocks = length - min_matches(length, threshold) + 1
    bounds = [length * i // blocks for i in range(blocks + 1)]
    return tuple(zip(bounds, bounds[1:]))


class NearDupIndex:
    """Normalised strings (``normalised``), searchable for near-duplicates.

    ``matches(text)`` -> indices (into ``texts``) of every string of the same length that
    agrees with ``text`` in at least ``threshold`` of the positions.
    """

    def __init__(self, texts: Iterable[str], threshold: float = THRESHOLD) -> None:
        if not 0.0 < threshold <= 1.0:
            raise ValueError(f"threshold must be in (0, 1], got {threshold}")
        self.texts = list(texts)
        self.threshold = threshold
        self._blocks: dict[tuple[int, int, str], list[int]] = {}
        for i, text in enumerate(self.texts):
            for key in self._keys(text):
                self._blocks.setdefault(key, []).append(i)

    def _keys(self, text: str) -> list[tuple[int, int, str]]:
        cuts = _cuts(len(text), self.threshold)
        return [(len(text), j, text[start:end]) for j, (start, end) in enumerate(cuts)]

    def matches(self, text: str) -> list[int]:
        candidates = {i for key in self._keys(text) for i in self._blocks.get(key, ())}
        return sorted(i for i in candidates
                      if is_near_duplicate(text, self.texts[i], self.threshold))
