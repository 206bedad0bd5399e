"""平仄 tone templates (平仄譜) of the regulated-verse forms and how well a poem fits one.

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
from dataclasses import dataclass
from typing import Sequence

from rnncore.poetry.forms import PoemForm, get_form
from rnncore.poetry.rhyme import FREE, PING, ZE, RhymeTable, rhyme_table
from rnncore.poetry.text import line_bodies

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
