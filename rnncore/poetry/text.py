"""Chinese text rules every other module uses: what an ideograph is, the line-end marks,
splitting verse into lines, and simplified/traditional conversion.

Marks
-----
A couplet's first line ends in a pause mark (，；：、), its second in a stop mark (。？！);
regulated verse uses "，" and "。". Users also type the ASCII look-alikes (, . ? ! ; :),
which ``MARK_ALIASES`` maps to the full-width marks. Editors write a character lost from
the source as "□" (``LACUNA``).

Scripts
-------
OpenCC's ``t2s`` / ``s2t`` tables (one converter per table, built on first use).
"""
from __future__ import annotations

import functools
from typing import Sequence

PAUSE_MARKS = "，；：、"  # ends the first line of a couplet
STOP_MARKS = "。？！"  # ends the second line of a couplet
END_MARKS = PAUSE_MARKS + STOP_MARKS
PAUSE_MARK, STOP_MARK = "，", "。"  # the two marks regulated verse uses
ASCII_MARKS = ",.?!;:"
MARK_ALIASES = str.maketrans(dict(zip(ASCII_MARKS, "，。？！；：")))
LACUNA = "□"  # editors' mark for a character lost from the source

# Unicode blocks whose code points have the Ideographic property (CJK Unified Ideographs
# and extensions A-H, compatibility ideographs, 〇). Whole blocks, so the answer does not
# depend on the Unicode version of the running Python.
IDEOGRAPH_RANGES = (
    (0x3007, 0x3007),
    (0x3400, 0x4DBF),
    (0x4E00, 0x9FFF),
    (0xF900, 0xFAFF),
    (0x20000, 0x2A6DF),
    (0x2A700, 0x2EBEF),
    (0x2F800, 0x2FA1F),
    (0x30000, 0x323AF),
)
# the same set as a regular-expression character class, for matching whole lines at once
IDEOGRAPH_CLASS = "[" + "".join(f"\\U{lo:08x}-\\U{hi:08x}" for lo, hi in IDEOGRAPH_RANGES) + "]"


class PoetryError(ValueError):
    """Bad input to a poetry function (unknown form, unreadable rhyme data)."""


def is_ideograph(char: str) -> bool:
    """True if ``char`` is a single CJK ideograph (any extension block) or 〇."""
    if len(char) != 1:
        return False
    code = ord(char)
    return any(lo <= code <= hi for lo, hi in IDEOGRAPH_RANGES)


def split_poem(text: str | Sequence[str]) -> list[str]:
    """Running text (or a list of lines) -> lines that keep their end mark."""
    if not isinstance(text, str):
        text = "".join(text)
    text = "".join(text.split())
    lines, start = [], 0
    for i, char in enumerate(text):
        if char in END_MARKS:
            lines.append(text[start : i + 1])
            start = i + 1
    if start < len(text):
        lines.append(text[start:])
    return lines


def line_bodies(lines: Sequence[str]) -> list[str]:
    """Lines without their end mark."""
    return [line[:-1] if line and line[-1] in END_MARKS else line for line in lines]


@functools.lru_cache(maxsize=2)
def _converter(config: str):
    import opencc  # imported lazily: only script conversion needs it

    return opencc.OpenCC(config)


def to_simplified(text: str) -> str:
    """Traditional -> simplified (OpenCC ``t2s``)."""
    return _converter("t2s").convert(text)


def to_traditional(text: str) -> str:
    """Simplified -> traditional (OpenCC ``s2t``)."""
    return _converter("s2t").convert(text)
