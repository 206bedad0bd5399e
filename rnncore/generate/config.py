"""What a generation request asks for and what it returns.

``GenerationConfig`` checks a request once, up front (one-line ``GenerationError``
messages for the CLI and the app), and merges its three ways of fixing characters --
``prefix``, ``acrostic``, ``locked_lines`` -- into one map, character index (0 .. L*W-1,
marks not counted) -> character. ``GeneratedPoem`` is one written poem with the model's
per-character probabilities.
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field

from rnncore.poetry import ASCII_MARKS, END_MARKS, PoemForm, PoetryError, get_form, is_ideograph

STRATEGIES = ("sample", "greedy", "beam")
CONSTRAINTS = ("hard", "soft")
MAX_NUM = 256


# Sampling defaults, chosen by measurement (scripts/decoding_sweep.py, the newest
# benchmarks/results/*-decoding report): at top-p 0.9, per form the temperature at which 100
# poems of the bundled model (rhyme and tones on, mean of seeds) have the attested-pair share
# of that form's held-out real poems. One temperature does not fit all four: at 0.8 the
# 七律 use more attested pairs than real 七律 (0.84 against 0.79), the 五絕 fewer (0.77
# against 0.83). Other checkpoints get the same table (it is the bundled model's).
DEFAULT_TOP_P = 0.9
FORM_TEMPERATURE = {"wujue": 0.85, "qijue": 0.9, "wulv": 0.85, "qilv": 0.9}


def default_temperature(form: str) -> float:
    """The CLI's and the Generate page's temperature for ``form`` (a key or a name)."""
    return FORM_TEMPERATURE[get_form(form).key]


class GenerationError(ValueError):
    """A generation request that cannot be served (one-line message)."""


class DefaultModelMissing(GenerationError):
    """The bundled checkpoint is not installed."""


def _clean(text: str) -> str:
    """Drop whitespace and end marks (users type "床前明月光，疑是")."""
    return "".join(c for c in "".join(str(text).split()) if c not in END_MARKS + ASCII_MARKS)


@dataclass
class GenerationConfig:
    """Everything one generation request asks for (the CLI and the app both build it).

    ``acrostic``: one head character per line (藏頭詩), exactly as many as the form has
    lines. ``prefix``: the poem's first characters (marks and spaces ignored), continued by
    the model. ``style``: text fed to the model before the poem (``BOS style EOS BOS``) to
    prime its state; it does not appear in the output. ``locked_lines``: {0-based line
    index: line text} kept verbatim while the other lines are regenerated (see
    ``generate``). ``top_k = 0`` and ``top_p = 1`` switch those filters off. ``seed =
    None`` draws a fresh seed. ``simplified`` converts the output to simplified characters.
    """

    form: str = "qijue"
    acrostic: str = ""
    prefix: str = ""
    style: str = ""
    rhyme: bool = False
    tones: bool = False
    constraint: str = "hard"
    rhyme_weight: float = 4.0
    tone_weight: float = 2.0
    strategy: str = "sample"
    temperature: float | None = None      # None: the form's (``default_temperature``)
    top_k: int = 0
    top_p: float = DEFAULT_TOP_P
    beam_width: int = 4
    seed: int | None = 0
    num: int = 1
    simplified: bool = False
    locked_lines: dict = field(default_factory=dict)
    locked_candidates: int = 8

    def __post_init__(self) -> None:
        try:
            self._form = get_form(self.form)
        except PoetryError as exc:
            raise GenerationError(str(exc)) from None
        self.form = self._form.key
        form = self._form
        if self.constraint not in CONSTRAINTS:
            raise GenerationError(f"constraint must be 'hard' or 'soft', got {self.constraint!r}")
        if self.strategy not in STRATEGIES:
            raise GenerationError(
                f"unknown strategy {self.strategy!r} (choose from {', '.join(STRATEGIES)})")
        if self.temperature is None:
            self.temperature = default_temperature(self.form)
        _check_number("temperature", self.temperature, lo=0.0, lo_open=True)
        _check_number("top_p", self.top_p, lo=0.0, lo_open=True, hi=1.0)
        _check_number("rhyme_weight", self.rhyme_weight, lo=0.0)
        _check_number("tone_weight", self.tone_weight, lo=0.0)
        _check_int("top_k", self.top_k, lo=0)
        _check_int("beam_width", self.beam_width, lo=1, hi=MAX_NUM)
        _check_int("num", self.num, lo=1, hi=MAX_NUM)
        _check_int("locked_candidates", self.locked_candidates, lo=1, hi=64)
        if self.seed is not None:
            _check_int("seed", self.seed, lo=0, hi=2**63 - 1)
        for name in ("acrostic", "prefix", "style"):
            if not isinstance(getattr(self, name), str):
                raise GenerationError(f"{name} must be text")

        if self.acrostic and not self.acrostic.strip():
            raise GenerationError("acrostic is empty (give one character per line)")
        self.acrostic = "".join(self.acrostic.split())
        if self.acrostic:
            _check_chars("acrostic", self.acrostic)
            if len(self.acrostic) != form.num_lines:
                raise GenerationError(
                    f"acrostic {self.acrostic!r} has {len(self.acrostic)} characters but a "
                    f"{form.name} has {form.num_lines} lines (one head character per line)")

        self.prefix = _clean(self.prefix)
        _check_chars("prefix", self.prefix)
        if len(self.prefix) > form.num_chars:
            raise GenerationError(
                f"prefix has {len(self.prefix)} characters but a {form.name} has only "
                f"{form.num_chars}")

        if not isinstance(self.locked_lines, dict):
            raise GenerationError("locked_lines must map line indices to line texts")
        locked = {}
        for key, text in self.locked_lines.items():
            try:
                index = int(key)
            except (TypeError, ValueError):
                raise GenerationError(f"locked line index {key!r} is not a number") from None
            if not 0 <= index < form.num_lines:
                raise GenerationError(
                    f"locked_lines index {index} is outside 0..{form.num_lines - 1} (0-based) "
                    f"for a {form.name}")
            body = _clean(text) if isinstance(text, str) else None
            if body is None or len(body) != form.line_length:
                raise GenerationError(
                    f"locked_lines[{index}] must have {form.line_length} characters, got "
                    f"{text!r}")
            _check_chars(f"locked_lines[{index}]", body)
            locked[index] = body
        self.locked_lines = dict(sorted(locked.items()))

        # the three ways of fixing characters must agree where they overlap
        fixed: dict[int, tuple[str, str]] = {}
        sources = [("prefix", i, c) for i, c in enumerate(self.prefix)]
        sources += [("acrostic", li * form.line_length, c) for li, c in enumerate(self.acrostic)]
        sources += [(f"locked_lines[{li}]", li * form.line_length + j, c)
                    for li, body in self.locked_lines.items() for j, c in enumerate(body)]
        for source, pos, char in sources:
            if pos in fixed and fixed[pos][1] != char:
                other, prev = fixed[pos]
                line, col = divmod(pos, form.line_length)
                raise GenerationError(
                    f"{source} puts {char} at line {line + 1} character {col + 1} where "
                    f"{other} has {prev}")
            fixed.setdefault(pos, (source, char))

    @property
    def poem_form(self) -> PoemForm:
        return self._form

    def fixed_chars(self) -> dict[int, str]:
        """Character index (0 .. L*W-1, marks not counted) -> the character fixed there."""
        form, out = self._form, {}
        for i, c in enumerate(self.prefix):
            out[i] = c
        for li, c in enumerate(self.acrostic):
            out[li * form.line_length] = c
        for li, body in self.locked_lines.items():
            for j, c in enumerate(body):
                out[li * form.line_length + j] = c
        return out

    def to_dict(self) -> dict:
        data = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        data["locked_lines"] = {str(k): v for k, v in self.locked_lines.items()}
        return data


def _check_number(name, value, lo=None, hi=None, lo_open=False) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise GenerationError(f"{name} must be a finite number, got {value!r}")
    if lo is not None and (value <= lo if lo_open else value < lo):
        raise GenerationError(f"{name} must be {'>' if lo_open else '>='} {lo}, got {value}")
    if hi is not None and value > hi:
        raise GenerationError(f"{name} must be <= {hi}, got {value}")


def _check_int(name, value, lo=None, hi=None) -> None:
    if isinstance(value, bool) or not isinstance(value, int):
        raise GenerationError(f"{name} must be an integer, got {value!r}")
    if lo is not None and value < lo:
        raise GenerationError(f"{name} must be >= {lo}, got {value}")
    if hi is not None and value > hi:
        raise GenerationError(f"{name} must be <= {hi}, got {value}")


def _check_chars(what: str, text: str) -> None:
    for c in text:
        if not is_ideograph(c):
            raise GenerationError(f"{what} contains {c!r}, which is not a Chinese character")


@dataclass
class GeneratedPoem:
    """One poem. ``chars`` are all written tokens (marks included) with the model's
    probability (``probs``) and log-probability (``logprobs``) of each; ``score`` is the sum
    of ``logprobs``; ``relative``: each probability over the best one the rules allowed at
    that position (None where the character was fixed). ``text`` is in the requested
    script; ``metrics`` were computed on the model's own script."""

    text: str
    lines: list[str]
    chars: list[str]
    probs: list[float]
    logprobs: list[float]
    score: float
    metrics: dict
    notes: list[str] = field(default_factory=list)
    relative: list[float | None] = field(default_factory=list)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)
