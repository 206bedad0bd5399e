"""Poem generation from a ``CharRNN``: sampling, greedy, beam search, constrained decoding.

Decoding writes the form's ``L * (W + 1)`` tokens (``L`` lines of ``W`` characters, each
followed by its mark) one position at a time, carrying the recurrent state with
``model.step(tokens (B,), state) -> (logits (B, V), state)``; many poems are one batch
(``B = num``, or ``num * locked_candidates`` with locked lines, or the beam width).

Scores at a position, for each row b and token v::

    s[b, v] = log_softmax(logits / temperature)[b, v]
              - rhyme_weight * [v breaks the rhyme]  - tone_weight * [v breaks the tones]   (soft)
    s[b, v] = -inf  where v is not allowed                                                  (hard)

Masks (``True`` = allowed, each a (B, V) or (V,) bool tensor built from tables computed
once per vocab):

* structure: inside a line only CJK ideographs of the vocab; at a line end only its mark
  ("，" after odd lines, "。" after even lines) -- always hard, so every poem has the form;
* acrostic / prefix / locked lines: the given character is the only token (forced);
* rhyme (``rhyme=True``): at the end of every even line the character must share a 平水韻
  level-tone group with the rhyme groups still open for that row ``G_b`` (a (B, 30) bool
  tensor, all True at the start); choosing ``v`` sets ``G_b <- G_b & groups(v)``. At the end
  of line 1 a character that can only be read 平 (so it must rhyme) must share ``G_b``; one
  that can be read 仄 is free;
* tones (``tones=True``): the four 平仄 templates of the form (``poetry.tone_templates``)
  are kept alive per row: ``viol[b, t]`` counts characters breaking template t, the alive
  templates are those with the fewest violations and a character is allowed if some alive
  template accepts it. Characters forced by acrostic / prefix / locked lines are counted
  before decoding starts, so free positions already follow the template they fit.

If a hard mask leaves a row without any token, the tone mask is dropped for that position,
then the rhyme mask (a note on the poem says where); the structure mask is never dropped.

Sampling: top-k keeps the k best allowed tokens, top-p the smallest set of allowed tokens
whose probability reaches p (the best one always stays); then ``torch.multinomial`` with a
seeded ``torch.Generator``. Greedy takes the argmax. Beam search keeps ``max(beam_width,
num)`` rows scored by the sum of (penalised) log-probs and returns the ``num`` best.

Reported per character: ``probs`` / ``logprobs`` = the model's own distribution
(temperature 1, no constraints) at the chosen token -- how natural the model found it.
"""
from __future__ import annotations

import copy

import contextlib
import dataclasses
import functools
import importlib.resources
import math
import weakref
from dataclasses import dataclass, field
from pathlib import Path

import torch

from rnncore.cells import lstm_pointwise
from rnncore.poetry import (
    FREE,
    PING,
    PoemForm,
    PoetryError,
    corpus_index,
    get_form,
    is_ideograph,
    poem_metrics,
    rhyme_table,
    to_simplified,
    to_traditional,
    tone_templates,
)

STRATEGIES = ("sample", "greedy", "beam")
CONSTRAINTS = ("hard", "soft")
MAX_NUM = 256
_MARKS = "，。？！；：、,.?!;:"
_DEFAULT_MODEL_DIR = ("assets", "tang_default")


class GenerationError(ValueError):
    """A generation request that cannot be served (one-line message)."""


class DefaultModelMissing(GenerationError):
    """The bundled checkpoint is not installed."""


def _clean(text: str) -> str:
    """Drop whitespace and end marks (users type "床前明月光，疑是")."""
    return "".join(c for c in "".join(str(text).split()) if c not in _MARKS)


# --------------------------------------------------------------------------- config

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
    temperature: float = 1.0
    top_k: int = 0
    top_p: float = 1.0
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


# --------------------------------------------------------------------------- output

@dataclass
class GeneratedPoem:
    """One poem. ``chars`` are all written tokens (marks included) with the model's
    probability (``probs``) and log-probability (``logprobs``) of each; ``score`` is the sum
    of ``logprobs``. ``text`` is in the requested script; ``metrics`` were computed on the
    model's own script."""

    text: str
    lines: list[str]
    chars: list[str]
    probs: list[float]
    logprobs: list[float]
    score: float
    metrics: dict
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


# --------------------------------------------------------------------------- vocab tables

class _VocabTables:
    """Per-vocab tensors: structure mask, tone capabilities, rhyme-group membership."""

    def __init__(self, vocab) -> None:
        table = rhyme_table()
        V = len(vocab)
        self.size = V
        self.char_ok = torch.zeros(V, dtype=torch.bool)
        can_ping = torch.zeros(V, dtype=torch.bool)
        can_ze = torch.zeros(V, dtype=torch.bool)
        groups = table.ping_groups
        gindex = {g: i for i, g in enumerate(groups)}
        self.group_names = list(groups)
        self.rhyme = torch.zeros(V, len(groups), dtype=torch.bool)
        for i, tok in enumerate(vocab.itos):
            if i < 4 or not is_ideograph(tok):
                continue
            self.char_ok[i] = True
            info = table.info(tok)
            can_ping[i] = info.can_be_ping
            can_ze[i] = info.can_be_ze
            for g in info.ping_groups:
                self.rhyme[i, gindex[g]] = True
        # tone_ok[k]: allowed tokens for requirement k = 0 free, 1 平, 2 仄, 3 平 or 仄 (the
        # union when alive templates disagree; unlike "free" it excludes unknown characters)
        self.tone_ok = torch.stack([self.char_ok, self.char_ok & can_ping, self.char_ok & can_ze,
                                    self.char_ok & (can_ping | can_ze)])
        self.tone_nonempty = self.tone_ok.any(1)
        # row lookups go through F.embedding on uint8 tables: advanced indexing of a bool
        # table launches a parallel kernel whose start-up dwarfs the work at these sizes
        self.tone_ok_u8 = self.tone_ok.to(torch.uint8)
        self.tone_ok_by_token = self.tone_ok.T.contiguous()  # (V, 4)
        self.level_only = can_ping & ~can_ze
        self.has_rhyme = self.rhyme.any(1)
        self.rhyme_f = self.rhyme.float()
        self.marks = {}
        for mark in ("，", "。"):
            self.marks[mark] = vocab.stoi.get(mark)
        self.struct_bias = torch.where(self.char_ok, 0.0, float("-inf"))


_TABLE_CACHE: dict = {}


def _tables(vocab) -> _VocabTables:
    key = tuple(vocab.itos)
    hit = _TABLE_CACHE.get(key)
    if hit is None:
        if len(_TABLE_CACHE) >= 4:
            _TABLE_CACHE.pop(next(iter(_TABLE_CACHE)))
        hit = _TABLE_CACHE[key] = _VocabTables(vocab)
    return hit


@functools.lru_cache(maxsize=None)
def _template_codes(form_key: str) -> torch.Tensor:
    """(T, L, W) long: 0 free, 1 平, 2 仄 for each template, line and position."""
    codes = {FREE: 0, PING: 1}
    return torch.tensor([[[codes.get(t, 2) for t in line] for line in tmpl.lines]
                         for tmpl in tone_templates(form_key)], dtype=torch.long)


@functools.lru_cache(maxsize=None)
def _union_kinds(form_key: str) -> torch.Tensor:
    """(L, W, 2**T) long: for every set of alive templates (bit t = template t), which
    ``tone_ok`` row is their union at (line, col): 0 free, 1 平, 2 仄, 3 平 or 仄. Turns the
    per-step "some alive template accepts v" into one row lookup."""
    codes = _template_codes(form_key)
    T, L, W = codes.shape
    out = torch.zeros(L, W, 2**T, dtype=torch.long)
    for line in range(L):
        for col in range(W):
            for alive in range(1, 2**T):
                needs = {int(codes[t, line, col]) for t in range(T) if alive >> t & 1}
                out[line, col, alive] = 0 if 0 in needs else (3 if needs == {1, 2} else needs.pop())
    return out


# --------------------------------------------------------------------------- helpers

def _vocab_char(char: str, vocab, what: str) -> int:
    """Token id of ``char``, trying its simplified / traditional variant if needed."""
    for variant in (char, to_simplified(char), to_traditional(char)):
        if len(variant) == 1 and variant in vocab:
            return vocab.stoi[variant]
    raise GenerationError(f"{what} character {char} is not in the model's vocabulary")


def _state_select(state, index: torch.Tensor):
    if isinstance(state, tuple):
        return tuple(s.index_select(1, index) for s in state)
    return state.index_select(1, index)


def _state_expand(state, batch: int):
    if isinstance(state, tuple):
        return tuple(s.expand(-1, batch, -1).contiguous() for s in state)
    return state.expand(-1, batch, -1).contiguous()


@contextlib.contextmanager
def _eval_mode(model):
    """Decode in eval mode (no dropout), then put the model back as it was."""
    was_training = model.training
    model.eval()
    try:
        yield
    finally:
        model.train(was_training)


def _step(model, tokens: torch.Tensor, state):
    step = getattr(model, "step", None)
    if step is not None:
        return step(tokens, state)
    logits, state = model(tokens.reshape(-1, 1), state)
    return logits[:, 0], state


_FUSED_CACHE: "weakref.WeakKeyDictionary" = weakref.WeakKeyDictionary()


class _LSTMStepper:
    """``model.step`` for a unidirectional LSTM ``CharRNN`` in eval mode, with each layer's
    two matmuls fused into one::

        gates = [x, h] @ [W_ih, W_hh]^T + (b_ih + b_hh)        (B, 4H), torch order i f g o
        c' = sigmoid(f) * c + sigmoid(i) * tanh(g),   h' = sigmoid(o) * tanh(c')

    The same function as the layer (tested against ``model.step``), minus its per-call
    Python bookkeeping, which dominates one-token steps. State is ``(h, c)``, (L, B, H).
    """

    def __init__(self, model) -> None:
        rnn = model.rnn
        self.embedding, self.head = model.embedding, model.head
        params = [p for l in range(rnn.num_layers) for p in (
            getattr(rnn, f"weight_ih_l{l}"), getattr(rnn, f"weight_hh_l{l}"),
            getattr(rnn, f"bias_ih_l{l}", None), getattr(rnn, f"bias_hh_l{l}", None))]
        # fused weights are cached per model and rebuilt whenever a parameter changes
        # (an optimizer step bumps ``_version``; loading replaces the tensor)
        key = tuple((id(p), p._version) for p in params if p is not None)
        hit = _FUSED_CACHE.get(model)
        if hit is not None and hit[0] == key:
            self.layers = hit[1]
            return
        self.layers = []
        for l in range(rnn.num_layers):
            w = torch.cat([getattr(rnn, f"weight_ih_l{l}"), getattr(rnn, f"weight_hh_l{l}")], 1)
            b = getattr(rnn, f"bias_ih_l{l}", None)
            if b is not None:
                b = b + getattr(rnn, f"bias_hh_l{l}")
            self.layers.append((w, b))
        _FUSED_CACHE[model] = (key, self.layers)

    @staticmethod
    def supports(model) -> bool:
        rnn = getattr(model, "rnn", None)
        cfg = getattr(model, "cfg", None)
        return (getattr(cfg, "cell", None) == "lstm" and rnn is not None
                and not getattr(rnn, "bidirectional", True)
                and getattr(rnn, "proj_size", 0) == 0 and not model.training
                and hasattr(model, "embedding") and hasattr(model, "head"))

    def __call__(self, tokens: torch.Tensor, state):
        h_all, c_all = state
        x = self.embedding(tokens)
        hs, cs = [], []
        for l, (w, b) in enumerate(self.layers):
            xh = torch.cat([x, h_all[l]], 1)
            (x, c), _ = lstm_pointwise(torch.nn.functional.linear(xh, w, b), c_all[l])
            hs.append(x)
            cs.append(c)
        return self.head(x), (torch.stack(hs), torch.stack(cs))


def _filter_top_k_top_p(scores: torch.Tensor, top_k: int, top_p: float) -> torch.Tensor:
    """Set scores outside the top-k / nucleus to -inf (rows of (B, V) log-scores)."""
    if top_k and top_k < scores.shape[-1]:
        kth = torch.topk(scores, top_k, dim=-1).values[:, -1:]
        scores = scores.masked_fill(scores < kth, float("-inf"))
    if top_p < 1.0:
        sorted_scores, order = torch.sort(scores, dim=-1, descending=True)
        probs = torch.softmax(sorted_scores, dim=-1)
        # drop a token when the mass before it already reaches top_p (keeps the best one)
        before = torch.cumsum(probs, dim=-1) - probs
        drop_sorted = before >= top_p
        drop = torch.zeros_like(drop_sorted).scatter(-1, order, drop_sorted)
        scores = scores.masked_fill(drop, float("-inf"))
    return scores


def _sample(scores: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """One token per row from softmax(scores) by inverting the CDF: the first index whose
    cumulative probability exceeds u ~ U[0, total). Tokens at -inf have zero mass and can
    never be drawn. (Much faster than ``torch.multinomial`` for one draw from a large V.)"""
    cdf = torch.softmax(scores, dim=-1).cumsum_(dim=-1)
    u = torch.rand(scores.shape[0], 1, generator=generator) * cdf[:, -1:]
    return torch.searchsorted(cdf, u, right=True)[:, 0].clamp_(max=scores.shape[1] - 1)


# --------------------------------------------------------------------------- decoding

class _Decoder:
    """One decoding run over ``rows`` rows (see the module docstring)."""

    def __init__(self, model, vocab, cfg: GenerationConfig, rows: int) -> None:
        self.model, self.vocab, self.cfg = model, vocab, cfg
        if _LSTMStepper.supports(model):
            self.step = _LSTMStepper(model)
        else:
            self.step = functools.partial(_step, model)
        self.form = form = cfg.poem_form
        self.t = _tables(vocab)
        self.rows = rows
        self.notes: list[list[str]] = [[] for _ in range(rows)]
        for mark in ("，", "。"):
            if self.t.marks[mark] is None:
                raise GenerationError(f"the model's vocabulary has no {mark}, so it cannot "
                                      "write line ends")
        if not bool(self.t.char_ok.any()):
            raise GenerationError("the model's vocabulary has no Chinese characters")
        W = form.line_length
        # forced token per position (-1 = free); positions run over chars and marks
        self.forced = [-1] * form.num_tokens
        for li in range(form.num_lines):
            self.forced[li * (W + 1) + W] = self.t.marks[form.line_mark(li)]
        fixed = cfg.fixed_chars()
        what = {}
        for i, _ in enumerate(cfg.prefix):
            what[i] = "prefix"
        for li in range(len(cfg.acrostic)):
            what[li * W] = "acrostic"
        for li in cfg.locked_lines:
            for j in range(W):
                what[li * W + j] = f"locked_lines[{li}]"
        self.fixed_ids = {}
        for ci, char in fixed.items():
            line, col = divmod(ci, W)
            tok = _vocab_char(char, vocab, what[ci])
            self.fixed_ids[(line, col)] = tok
            self.forced[line * (W + 1) + col] = tok
        self.locked_positions = [li * (W + 1) + j for li in cfg.locked_lines for j in range(W)]
        self.codes = _template_codes(form.key)  # (T, L, W)
        self.kinds = _union_kinds(form.key)  # (L, W, 2**T)
        T = self.codes.shape[0]
        self.template_bits = 2 ** torch.arange(T)
        self.viol = torch.zeros(rows, T, dtype=torch.long)
        self.groups = torch.ones(rows, self.t.rhyme.shape[1], dtype=torch.bool)
        self._init_from_fixed()

    def _init_from_fixed(self) -> None:
        """Count template violations and narrow the rhyme groups from fixed characters, so
        free positions before a locked line already agree with it."""
        t, W = self.t, self.form.line_length
        for (line, col), tok in self.fixed_ids.items():
            if self.cfg.tones:
                ok = t.tone_ok[self.codes[:, line, col], tok]  # (T,)
                self.viol += (~ok).long()
            rhyme_pos = col == W - 1 and (line % 2 == 1 or (line == 0 and bool(t.level_only[tok])))
            if self.cfg.rhyme and rhyme_pos:
                narrowed = self.groups & t.rhyme[tok]
                if bool(narrowed.any()):
                    self.groups = narrowed
                else:
                    self._note_all(f"the fixed character at line {line + 1} does not rhyme "
                                   "with the other fixed line ends")

    def _note_all(self, text: str) -> None:
        for n in self.notes:
            if text not in n:
                n.append(text)

    # masks ----------------------------------------------------------------------------
    def _tone_kind(self, line: int, col: int) -> torch.Tensor:
        """(B,) ``tone_ok`` row per batch row: the union over the templates with the fewest
        violations (the alive ones) of what they accept at (line, col)."""
        alive = self.viol == self.viol.min(dim=1, keepdim=True).values  # (B, T)
        code = (alive.long() * self.template_bits).sum(1)
        return self.kinds[line, col, code]

    def _rhyme_allowed(self, line: int) -> torch.Tensor:
        shares = (self.groups.float() @ self.t.rhyme_f.T) > 0  # (B, V)
        if line == 0:  # a 仄-capable (or unknown) ending may leave line 1 unrhymed
            return shares | ~self.t.level_only
        return shares

    def _scores(self, logp: torch.Tensor, pos: int, line: int, col: int) -> torch.Tensor:
        """Constrained log-scores (B, V) at a free character position."""
        cfg, W = self.cfg, self.form.line_length
        scores = logp + self.t.struct_bias
        rhyme_here = cfg.rhyme and col == W - 1 and (line % 2 == 1 or line == 0)
        kind = self._tone_kind(line, col) if cfg.tones else None
        tone = None
        if kind is not None:
            tone = torch.nn.functional.embedding(kind, self.t.tone_ok_u8).bool()  # (B, V)
        rhyme = self._rhyme_allowed(line) if rhyme_here else None
        if cfg.constraint == "soft":
            if tone is not None:
                scores = scores - cfg.tone_weight * (~tone).float()
            if rhyme is not None:
                scores = scores - cfg.rhyme_weight * (~rhyme).float()
            return scores
        if rhyme is None:
            if tone is None:
                return scores
            empty = ~self.t.tone_nonempty[kind]
            if bool(empty.any()):  # only with a vocab lacking every 平 (or 仄) character
                self._note_rows(empty, f"tone rule relaxed at line {line + 1} character "
                                       f"{col + 1} (no character fits)")
                tone = torch.where(empty[:, None], self.t.char_ok, tone)
            return scores.masked_fill(~tone, float("-inf"))
        allowed = rhyme & self.t.char_ok
        if tone is not None:
            full = allowed & tone
            empty = ~full.any(1)
            if bool(empty.any()):
                self._note_rows(empty, f"tone rule relaxed at line {line + 1} character "
                                       f"{col + 1} (no character fits)")
                full = torch.where(empty[:, None], allowed, full)
            allowed = full
        empty = ~allowed.any(1)
        if bool(empty.any()):
            self._note_rows(empty, f"rhyme rule relaxed at line {line + 1} (no rhyming "
                                   "character fits)")
            allowed = torch.where(empty[:, None], self.t.char_ok, allowed)
        return scores.masked_fill(~allowed, float("-inf"))

    def _note_rows(self, rows: torch.Tensor, text: str) -> None:
        for r in rows.nonzero().flatten().tolist():
            self.notes[r].append(text)

    def _update(self, tok: torch.Tensor, line: int, col: int, forced: bool) -> None:
        """Advance the tone and rhyme state after writing ``tok`` (B,) at (line, col)."""
        cfg, t, W = self.cfg, self.t, self.form.line_length
        if cfg.tones and not forced:  # fixed characters were counted up front
            ok = t.tone_ok_by_token.index_select(0, tok)[:, self.codes[:, line, col]]  # (B, T)
            self.viol += (~ok).long()
        if cfg.rhyme and col == W - 1 and (line % 2 == 1 or line == 0):
            narrowed = self.groups & t.rhyme[tok]
            apply = narrowed.any(1)
            if line == 0:
                apply &= t.level_only[tok]
            self.groups = torch.where(apply[:, None], narrowed, self.groups)

    def reorder(self, index: torch.Tensor) -> None:
        self.viol = self.viol.index_select(0, index)
        self.groups = self.groups.index_select(0, index)
        self.notes = [list(self.notes[i]) for i in index.tolist()]

    def prime(self, style_ids: list[int]):
        """Feed ``BOS`` (or ``BOS style EOS BOS``) once; returns the next logits and state
        for a batch of ``rows``."""
        v = self.vocab
        ids = [v.bos_id] + (style_ids + [v.eos_id, v.bos_id] if style_ids else [])
        tokens = torch.tensor([ids], dtype=torch.long)
        logits, state = self.model(tokens, None)
        logits = logits[:, -1].expand(self.rows, -1)
        return logits, _state_expand(state, self.rows)

    def run(self, style_ids: list[int], generator: torch.Generator):
        """Decode all positions; returns tokens (B, P), logprobs (B, P), locked log-prob (B,)
        and beam scores (B,) (None unless beam search)."""
        cfg, form = self.cfg, self.form
        W, P, B = form.line_length, form.num_tokens, self.rows
        beam = cfg.strategy == "beam"
        logits, state = self.prime(style_ids)
        tokens = torch.empty(B, P, dtype=torch.long)
        logprobs = torch.empty(B, P)
        beam_score = torch.full((B,), float("-inf"))
        beam_score[0] = 0.0
        inv_temp = 1.0 / cfg.temperature
        for pos in range(P):
            line, col = divmod(pos, W + 1)
            forced = self.forced[pos]
            if beam:
                logp = torch.log_softmax(logits, dim=-1)
                if forced >= 0:
                    tok = torch.full((B,), forced, dtype=torch.long)
                    beam_score = beam_score + logp[:, forced]
                else:
                    scores = self._scores(logp, pos, line, col)
                    cand = (beam_score[:, None] + scores).reshape(-1)
                    top, flat = torch.topk(cand, B)
                    parent, tok = flat // logp.shape[1], flat % logp.shape[1]
                    bad = ~torch.isfinite(top)
                    if bool(bad.any()):  # fewer valid continuations than beams: repeat the best
                        parent[bad], tok[bad] = parent[0], tok[0]
                    beam_score = top
                    tokens = tokens.index_select(0, parent)
                    logprobs = logprobs.index_select(0, parent)
                    logp = logp.index_select(0, parent)
                    state = _state_select(state, parent)
                    self.reorder(parent)
                chosen = logp.gather(1, tok[:, None])[:, 0]
            else:
                if forced >= 0:
                    tok = torch.full((B,), forced, dtype=torch.long)
                else:
                    # softmax is shift-invariant, so scaled logits stand in for log-probs
                    scaled = logits if inv_temp == 1.0 else logits * inv_temp
                    scores = self._scores(scaled, pos, line, col)
                    if cfg.strategy == "greedy":
                        tok = scores.argmax(dim=-1)
                    else:
                        scores = _filter_top_k_top_p(scores, cfg.top_k, cfg.top_p)
                        tok = _sample(scores, generator)
                chosen = torch.log_softmax(logits, dim=-1).gather(1, tok[:, None])[:, 0]
            tokens[:, pos] = tok
            logprobs[:, pos] = chosen
            if col < W:
                self._update(tok, line, col, forced >= 0)
            if pos + 1 < P:
                logits, state = self.step(tok, state)
        locked = logprobs[:, self.locked_positions].sum(1) if self.locked_positions else None
        return tokens, logprobs, locked, (beam_score if beam else None)


# --------------------------------------------------------------------------- generate

def _style_ids(style: str, vocab, notes: list[str]) -> list[int]:
    ids, dropped = [], []
    for c in "".join(style.split()):
        for variant in (c, to_simplified(c), to_traditional(c)):
            if len(variant) == 1 and variant in vocab:
                ids.append(vocab.stoi[variant])
                break
        else:
            dropped.append(c)
    if style.strip() and not ids:
        raise GenerationError("none of the style text's characters is in the model's vocabulary")
    if dropped:
        notes.append(f"style characters outside the vocabulary were skipped: {''.join(dropped)}")
    return ids


def _needs_rescoring(cfg: GenerationConfig) -> bool:
    """Locked lines after a free line: sample candidates and keep the one under which the
    locked lines are most likely (the free lines cannot see them causally)."""
    if not cfg.locked_lines or cfg.strategy != "sample":
        return False
    free = [i for i in range(cfg.poem_form.num_lines) if i not in cfg.locked_lines]
    return bool(free) and min(free) < max(cfg.locked_lines)


def generate(model, vocab, cfg: GenerationConfig, training_corpus=None) -> list[GeneratedPoem]:
    """Write ``cfg.num`` poems of ``cfg.form`` (see the module docstring for the decoding).

    ``training_corpus`` (a ``Corpus``, list of poems / texts or ``poetry.CorpusIndex``)
    adds novelty metrics and a note when the form is rare in it.

    Locked lines: every character of a locked line is forced, so the state flows through it
    and later lines are conditioned on it. Lines *before* a locked line cannot see it in a
    left-to-right model, so with sampling ``locked_candidates`` candidates are drawn per
    poem and the one maximising ``log p(locked lines | everything before them)`` is kept
    (rescoring by the likelihood of the locked continuation); the tone and rhyme state also
    starts from the locked characters, so earlier free lines follow their template and rhyme
    group. Beam search scores forced characters too, which is the same rescoring.
    """
    if not isinstance(cfg, GenerationConfig):
        raise TypeError("generate expects a GenerationConfig")
    param = next(model.parameters(), None)
    if param is not None and param.device.type != "cpu":
        # Decoding is one token at a time over a few rows: launch latency, not arithmetic,
        # dominates on a GPU, so a model trained there is sampled from a CPU copy.
        model = copy.deepcopy(model).cpu()
    form = cfg.poem_form
    common: list[str] = []
    style_ids = _style_ids(cfg.style, vocab, common) if cfg.style else []
    index = corpus_index(training_corpus) if training_corpus is not None else None
    if index is not None and index.shapes and index.shape_share(form) < 0.05:
        main = index.main_form()
        trained = main.name if main else "other shapes"
        common.append(f"form outside the training data (the model was trained on {trained})")

    candidates = cfg.locked_candidates if _needs_rescoring(cfg) else 1
    if cfg.strategy == "beam":
        rows = max(cfg.beam_width, cfg.num)
    else:
        rows = cfg.num * candidates
    seed = cfg.seed if cfg.seed is not None else int(torch.randint(0, 2**62, ()).item())
    generator = torch.Generator().manual_seed(seed)

    with torch.inference_mode(), _eval_mode(model):
        decoder = _Decoder(model, vocab, cfg, rows)
        tokens, logprobs, locked, beam_score = decoder.run(style_ids, generator)

    if cfg.strategy == "beam":
        picks = torch.argsort(beam_score, descending=True)[: cfg.num].tolist()
    elif candidates > 1:
        per_poem = locked.reshape(cfg.num, candidates)
        picks = (per_poem.argmax(1) + torch.arange(cfg.num) * candidates).tolist()
    else:
        picks = list(range(cfg.num))

    poems = []
    for r in picks:
        ids = tokens[r].tolist()
        chars = [vocab.itos[i] for i in ids]
        model_text = "".join(chars)
        lp = logprobs[r].tolist()
        metrics = poem_metrics(model_text, form, index)
        # the model's own (temperature-1, unconstrained) log-probability per character
        metrics["mean_logprob"] = float(sum(lp) / len(lp)) if lp else 0.0
        notes = list(common) + decoder.notes[r]
        if candidates > 1:
            notes.append(f"best of {candidates} candidates by the likelihood of the locked lines")
        out_chars = chars
        if cfg.simplified:
            converted = to_simplified(model_text)
            out_chars = list(converted) if len(converted) == len(chars) else \
                [to_simplified(c)[:1] or c for c in chars]
        text = "".join(out_chars)
        W = form.line_length + 1
        lines = [text[i : i + W] for i in range(0, len(text), W)]
        poems.append(GeneratedPoem(
            text=text, lines=lines, chars=out_chars, probs=[math.exp(x) for x in lp],
            logprobs=lp, score=float(sum(lp)), metrics=metrics, notes=notes))
    return poems


# --------------------------------------------------------------------------- default model

def default_model_path() -> Path:
    """Where the bundled checkpoint lives (``rnncore/assets/tang_default``)."""
    return Path(str(importlib.resources.files("rnncore").joinpath(*_DEFAULT_MODEL_DIR)))


@functools.lru_cache(maxsize=1)
def load_default_model():
    """The bundled checkpoint (a ``Checkpoint``), loaded once per process."""
    from rnncore.checkpoint import load_checkpoint

    path = default_model_path()
    if not (path / "meta.json").is_file():
        raise DefaultModelMissing(
            f"the bundled model is missing ({path}); train one with `python -m rnncore train` "
            "and pass its checkpoint")
    return load_checkpoint(path, map_location="cpu", load_optimizer=False)
