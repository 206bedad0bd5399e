"""The four regulated-verse forms and the check that a poem has one.

====== ============ ===== ============
key    name         lines chars a line
====== ============ ===== ============
wujue  五言絕句       4     5
qijue  七言絕句       4     7
wulv   五言律詩       8     5
qilv   七言律詩       8     7
====== ============ ===== ============

Every line ends in a mark: odd lines (1st, 3rd, ...) "，", even lines "。".
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

from rnncore.poetry.text import PAUSE_MARK, STOP_MARK, PoetryError, is_ideograph


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


OTHER_FORM = "other"  # the form key of a poem of none of the regulated shapes


def form_of_shape(num_lines: int, line_length: int) -> PoemForm | None:
    for form in FORMS.values():
        if (form.num_lines, form.line_length) == (num_lines, line_length):
            return form
    return None


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
