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

Sampling: top-k keeps the k best allowed tokens, top-p the nucleus: the allowed tokens v
whose more probable tokens hold less than p of the mass, ``sum_u q_u [q_u > q_v] < p`` with
``q = softmax(s)`` -- the smallest set of best tokens whose mass reaches p (the best one
always stays), ties with its last member included. A token is drawn from ``q`` restricted to
the nucleus and renormalised, by rejection (``_sample_nucleus``: no sort of the vocabulary),
with uniforms from a seeded ``torch.Generator``. Greedy takes the argmax. Beam search keeps
``max(beam_width, num)`` rows scored by the sum of (penalised) log-probs and returns the
``num`` best.

Reported per character: ``probs`` / ``logprobs`` = the model's own distribution
(temperature 1, no constraints) at the chosen token -- how natural the model found it. Where
the token is forced (line-end marks, fixed characters) sampling skips the head during
decoding and computes these log-probs for all forced positions in one product afterwards.

Cost (bundled model, V = 4,953, one 七言律詩 = 64 positions, 56 free): per free position one
head product (H x V), one log-softmax, one softmax, one cumsum and a rejection test per draw
(two passes over V); per position one LSTM step. See ``benchmarks/test_bench_generate.py``.
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

import numpy as np
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
        # every tone_ok row lies inside char_ok, so one additive row per requirement carries
        # both the structure and the tone mask: 0 allowed, -inf not (4, V)
        self.tone_bias = torch.zeros(4, V).masked_fill_(~self.tone_ok, float("-inf"))
        # the per-row tone bookkeeping runs on Python ints (a handful per step): which
        # requirements each token meets, and which requirements have any token at all
        self.tone_ok_rows = [tuple(r) for r in self.tone_ok.T.tolist()]  # V x (4,)
        self.tone_nonempty = self.tone_ok.any(1).tolist()
        self.level_only = can_ping & ~can_ze
        self.rhyme_fT = self.rhyme.float().T.contiguous()  # (G, V)
        self.marks = {}
        for mark in ("，", "。"):
            self.marks[mark] = vocab.stoi.get(mark)
        self.struct_bias = torch.where(self.char_ok, 0.0, float("-inf"))
        self.not_level_only = ~self.level_only
        self.ids = torch.arange(V)  # ids[i : i + 1] is token i as a (1,) tensor, no copy


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


class _ModelEngine:
    """Decoding steps through the model's own ``step`` (any cell). The decoder talks to an
    engine: ``start(ids, rows) -> (top, state)`` feeds the priming ids, ``advance(tokens,
    state) -> (top, state)`` one token per row, ``head(top) -> logits`` (B, V), ``select``
    reorders rows. Here ``top`` already is the logits; the LSTM engine keeps it the last
    layer's hidden state so the head can be skipped where the token is forced."""

    def __init__(self, model) -> None:
        self.model = model

    def start(self, ids: list[int], rows: int):
        logits, state = self.model(torch.tensor([ids], dtype=torch.long), None)
        return logits[:, -1].expand(rows, -1), _state_expand(state, rows)

    def advance(self, tokens: torch.Tensor, state):
        return _step(self.model, tokens, state)

    @staticmethod
    def head(top: torch.Tensor) -> torch.Tensor:
        return top

    @staticmethod
    def select(state, index: torch.Tensor):
        return _state_select(state, index)


_FUSED_CACHE: "weakref.WeakKeyDictionary" = weakref.WeakKeyDictionary()


def _fp16_exact(w: torch.Tensor) -> bool:
    """Whether every entry of ``w`` is a float16 value (true for a checkpoint stored in
    float16, such as the bundled one, and loaded to float32)."""
    w = w.detach()
    return w.dtype == torch.float32 and torch.equal(w.half().float(), w)


def _pack_fp16(pairs):
    """fbgemm-packed float16 copies of ``(W (N, K), b (N,) or None)`` pairs, or None where
    the ops are missing (builds without fbgemm, e.g. ARM).

    ``_linear_fp16(x, packed) = x @ W^T + b`` reads W as float16 and multiplies and
    accumulates in float32 (bias kept float32): for weights that are float16 values
    (``_fp16_exact``) it is the float32 product up to summation order (~1e-6, tested),
    with half the bytes per step -- and decoding one row is bound by reading the weights
    (8 MB per token in float32 for the bundled model, as much as the L3 cache)."""
    try:
        prepack = torch.ops.quantized.linear_prepack_fp16
        packed = [prepack(w.detach().contiguous(), None if b is None else b.detach())
                  for w, b in pairs]
        w, b = pairs[0]
        x = torch.zeros(1, w.shape[1])
        _linear_fp16(x, packed[0])  # the kernel must run here, not only pack
    except (AttributeError, RuntimeError, NotImplementedError):
        return None
    return packed


def _linear_fp16(x: torch.Tensor, packed) -> torch.Tensor:
    return torch.ops.quantized.linear_dynamic_fp16(x, packed)


class _LSTMStepper:
    """``model.step`` for a unidirectional LSTM ``CharRNN`` in eval mode, with each layer's
    two matmuls fused into one and every weight stored transposed (K, N)::

        gates_0 = X[token] + h_0 @ W_hh0^T,   X = E @ W_ih0^T + (b_ih0 + b_hh0)   (V, 4H)
        gates_l = [x, h_l] @ [W_ih, W_hh]^T + (b_ih + b_hh)   (B, 4H), l >= 1, order i f g o
        c' = sigmoid(f) * c + sigmoid(i) * tanh(g),   h' = sigmoid(o) * tanh(c')
        logits = h'_top @ W_head^T + b_head                       (B, V)

    The same function as the layer (tested against ``model.step``), minus its per-call
    Python bookkeeping, which dominates one-token steps. The first layer's input projection
    of every token, ``X``, is computed once per model (its input is the embedding row, so a
    step reads one row of X instead of multiplying by W_ih0), when X stays below
    ``MAX_INPUT_TABLE_BYTES``. The (K, N) copies make the matmuls ``addmm(b, x, W^T)`` on
    contiguous memory, measurably faster on CPU than ``linear`` on the (N, K) weights (40%
    for the one-row head product on the 2-core EPYC). ``__call__`` keeps the ``model.step``
    interface, state ``(h, c)`` (L, B, H); the decoder uses the engine methods with the
    state as per-layer lists and the head applied separately.

    Weights that are all float16 values (a checkpoint stored in float16 and loaded to
    float32, as the bundled one) are also packed as float16 for fbgemm (``_pack_fp16``):
    the same numbers in half the bytes, multiplied and summed in float32, so the logits
    match the float32 path to ~1e-6 (tested). They are used for several rows, or for one
    row with more than one torch thread; one row on one thread keeps the float32 copies.
    ``FP16_WEIGHTS = False`` switches the packing off. Other weights only use float32.
    """

    MAX_INPUT_TABLE_BYTES = 64 * 2**20
    # "auto": fp16-packed weights where they hold the model's weights exactly (see
    # ``_pack_fp16``); False: always the fp32 copies
    FP16_WEIGHTS = "auto"

    def __init__(self, model) -> None:
        rnn = model.rnn
        self.embedding = model.embedding.weight
        self.num_layers = rnn.num_layers
        self.hidden_size = rnn.hidden_size
        head = model.head
        params = [p for l in range(rnn.num_layers) for p in (
            getattr(rnn, f"weight_ih_l{l}"), getattr(rnn, f"weight_hh_l{l}"),
            getattr(rnn, f"bias_ih_l{l}", None), getattr(rnn, f"bias_hh_l{l}", None))]
        params += [head.weight, head.bias, model.embedding.weight]
        # fused weights are cached per model and rebuilt whenever a parameter changes
        # (an optimizer step bumps ``_version``; loading replaces the tensor)
        key = (tuple((id(p), p._version) for p in params if p is not None), self.FP16_WEIGHTS)
        hit = _FUSED_CACHE.get(model)
        if hit is None or hit[0] != key:
            hit = (key,) + self._build(model)
            _FUSED_CACHE[model] = hit
        self.layers, self.input_table, self.head_wT, self.head_b, packed = hit[1:]
        self.head_packed = packed[0] if packed else None
        self.layers_packed = packed[1:] if packed else None
        # fbgemm's fp16 kernel converts every weight it reads: for a single row on a single
        # core that costs more than the halved bytes save (2-core EPYC, bundled model: one
        # poem ~10% slower on 1 thread, ~15% faster on 2; 16 poems 15-30% faster on both)
        self.fp16_one_row = torch.get_num_threads() > 1

    def _build(self, model):
        rnn, head = model.rnn, model.head
        layers, weights = [], [head.weight]
        for l in range(rnn.num_layers):
            w_ih, w_hh = getattr(rnn, f"weight_ih_l{l}"), getattr(rnn, f"weight_hh_l{l}")
            weights += [w_ih, w_hh]
            w = torch.cat([w_ih, w_hh], 1).detach()
            b = getattr(rnn, f"bias_ih_l{l}", None)
            if b is not None:
                b = (b + getattr(rnn, f"bias_hh_l{l}")).detach()
            layers.append((w, b))
        table = None
        emb = model.embedding.weight.detach()
        w0, b0 = layers[0]
        if emb.shape[0] * w0.shape[0] * emb.element_size() <= self.MAX_INPUT_TABLE_BYTES:
            E = emb.shape[1]
            w_in = w0[:, :E].T
            table = emb @ w_in if b0 is None else torch.addmm(b0, emb, w_in)
            layers[0] = (w0[:, E:].contiguous(), None)  # only W_hh0 is left per step
        head_b = None if head.bias is None else head.bias.detach()
        packed = None
        if self.FP16_WEIGHTS == "auto" and all(_fp16_exact(w) for w in weights):
            packed = _pack_fp16([(head.weight.detach(), head_b)] + layers)
        return ([(w.T.contiguous(), b) for w, b in layers], table,
                head.weight.detach().T.contiguous(), head_b, packed)

    @staticmethod
    def supports(model) -> bool:
        rnn = getattr(model, "rnn", None)
        cfg = getattr(model, "cfg", None)
        return (getattr(cfg, "cell", None) == "lstm" and rnn is not None
                and not getattr(rnn, "bidirectional", True)
                and getattr(rnn, "proj_size", 0) == 0 and not model.training
                and hasattr(model, "embedding") and hasattr(model, "head"))

    def advance(self, tokens: torch.Tensor, state):
        """tokens (B,) -> top hidden state (B, H) and ``([h_l], [c_l])`` (lists of (B, H))."""
        hs, cs = state
        packed = self.layers_packed
        if packed is not None and not self.fp16_one_row and tokens.shape[0] == 1:
            packed = None
        new_h, new_c = [], []
        for l, ((w, b), h, c) in enumerate(zip(self.layers, hs, cs)):
            if l == 0 and self.input_table is not None:
                x_proj = self.input_table.index_select(0, tokens)
                if packed is None:
                    gates = torch.addmm(x_proj, h, w)
                else:
                    gates = x_proj.add_(_linear_fp16(h, packed[0]))
            else:
                if l == 0:
                    x = torch.nn.functional.embedding(tokens, self.embedding)
                xh = torch.cat([x, h], 1)
                if packed is not None:
                    gates = _linear_fp16(xh, packed[l])
                else:
                    gates = torch.mm(xh, w) if b is None else torch.addmm(b, xh, w)
            (x, c), _ = lstm_pointwise(gates, c)
            new_h.append(x)
            new_c.append(c)
        return x, (new_h, new_c)

    def head(self, top: torch.Tensor) -> torch.Tensor:
        if self.head_packed is not None and (self.fp16_one_row or top.shape[0] > 1):
            return _linear_fp16(top, self.head_packed)
        if self.head_b is None:
            return torch.mm(top, self.head_wT)
        return torch.addmm(self.head_b, top, self.head_wT)

    def start(self, ids: list[int], rows: int):
        """Feed the priming ids to one row from the zero state, then copy it to ``rows``."""
        zero = torch.zeros(1, self.hidden_size, dtype=self.head_wT.dtype)
        state = ([zero] * self.num_layers, [zero] * self.num_layers)
        for i in ids:
            top, state = self.advance(torch.tensor([i], dtype=torch.long), state)
        hs, cs = state
        rows_of = lambda x: x.expand(rows, -1).contiguous()  # noqa: E731
        return rows_of(top), ([rows_of(h) for h in hs], [rows_of(c) for c in cs])

    @staticmethod
    def select(state, index: torch.Tensor):
        hs, cs = state
        return [h.index_select(0, index) for h in hs], [c.index_select(0, index) for c in cs]

    def __call__(self, tokens: torch.Tensor, state):
        h_all, c_all = state
        top, (hs, cs) = self.advance(tokens, (list(h_all.unbind(0)), list(c_all.unbind(0))))
        return self.head(top), (torch.stack(hs), torch.stack(cs))


# --------------------------------------------------------------------------- sampling

def _filter_top_k(scores: torch.Tensor, top_k: int) -> torch.Tensor:
    """Set scores below each row's k-th best to -inf (ties with the k-th stay)."""
    if top_k and top_k < scores.shape[-1]:
        kth = torch.topk(scores, top_k, dim=-1).values[:, -1:]
        scores = scores.masked_fill(scores < kth, float("-inf"))
    return scores


def _nucleus_keep(probs: torch.Tensor, top_p: float) -> torch.Tensor:
    """(B, V) bool: the nucleus of each row of ``probs``, by a full sort.

    Token v stays when the mass of the tokens strictly more probable than v is below
    ``top_p``: the smallest set of best tokens whose mass reaches ``top_p`` (the best token
    always stays), plus any token tied with the last one (so the set does not depend on the
    order a sort gives to ties)."""
    sorted_probs, _ = torch.sort(probs, dim=-1, descending=True)
    # drop a token when the mass before it already reaches top_p
    before = torch.cumsum(sorted_probs, dim=-1) - sorted_probs
    n = (before < top_p).sum(-1, keepdim=True).clamp_(min=1)  # kept prefix length
    return probs >= sorted_probs.gather(-1, n - 1)


def _sample_probs(probs: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """One token per row of ``probs`` (B, V) >= 0 (need not sum to 1) by inverting the CDF:
    the first index whose cumulative mass exceeds u ~ U[0, total). Zero-mass tokens can
    never be drawn. (Much faster than ``torch.multinomial`` for one draw from a large V.)"""
    cdf = probs.cumsum(dim=-1)
    u = torch.rand(probs.shape[0], 1, generator=generator) * cdf[:, -1:]
    return torch.searchsorted(cdf, u, right=True)[:, 0].clamp_(max=probs.shape[1] - 1)


NUCLEUS_ROUNDS = 8


class _Uniforms:
    """U[0, 1) floats from a ``torch.Generator``, drawn ``block`` at a time (one torch call
    per block instead of one per decoding step); the same seed gives the same stream."""

    def __init__(self, generator: torch.Generator, block: int = 1024) -> None:
        self.generator, self.block = generator, block
        self.buffer: list[float] = []
        self.next = 0

    def take(self, n: int) -> list[float]:
        start, end = self.next, self.next + n
        if end > len(self.buffer):
            self.buffer = self.buffer[start:] + torch.rand(
                max(n, self.block), generator=self.generator).tolist()
            start, end = 0, n
        self.next = end
        return self.buffer[start:end]


def _sample_nucleus(probs: torch.Tensor, top_p: float, generator) -> list[int]:
    """One token per row from ``probs`` (B, V, rows summing to 1) restricted to its nucleus
    (``_nucleus_keep``) and renormalised -- without sorting the vocabulary.

    Rejection sampling: draw v ~ probs (inverse CDF, u ~ U[0, 1) from ``generator``, a
    ``torch.Generator`` or a ``_Uniforms`` stream over one); keep it when the mass of the
    tokens strictly more probable than v, ``sum_u probs[u] * [probs[u] > probs[v]]``, is
    below ``top_p`` (that is exactly "v is in the nucleus"), else draw again. A draw
    conditioned on landing in the nucleus N has law probs[v] / probs(N) on N, the nucleus
    distribution. Each round accepts with probability probs(N) >= top_p, so after
    ``NUCLEUS_ROUNDS`` rounds the few rows still rejected (tiny ``top_p`` only) are
    finished by the exact sort. The test is a float32 dot product over V.

    The nucleus of a weak model is large (a median of ~400 tokens for the bundled model at
    top_p 0.9), so neither a full sort (~0.2 ms a row) nor a top-k guess pays. The draws
    and tests run row by row in NumPy on the same memory: a handful of scalar steps per
    row, where each torch call would cost several microseconds of dispatch.
    """
    B, V = probs.shape
    uniforms = generator if isinstance(generator, _Uniforms) else _Uniforms(generator, 0)
    pn = probs.numpy()
    cdf = probs.cumsum(dim=-1).numpy()  # torch's cumsum is vectorised, NumPy's is not
    tok = [0] * B
    pending = list(range(B))
    for _ in range(NUCLEUS_ROUNDS):
        rejected = []
        for r, u in zip(pending, uniforms.take(len(pending))):
            row, c = pn[r], cdf[r]
            total = c[-1]
            i = int(c.searchsorted(u * total, side="right"))
            if i >= V:  # u * total rounded up to total: the last token with mass
                i = int(c.searchsorted(total, side="left"))
            if np.dot(row, row > row[i]) < top_p:  # mass strictly above v (BLAS dot)
                tok[r] = i
            else:
                rejected.append(r)
        pending = rejected
        if not pending:
            return tok
    rows = torch.tensor(pending, dtype=torch.long)
    p = probs.index_select(0, rows)
    draws = _sample_probs(p * _nucleus_keep(p, top_p), uniforms.generator)
    for r, i in zip(pending, draws.tolist()):
        tok[r] = i
    return tok


def _draw(scores: torch.Tensor, top_k: int, top_p: float, uniforms: _Uniforms) -> list[int]:
    """Sample one token per row of softmax(scores) after the top-k and top-p filters."""
    probs = torch.softmax(_filter_top_k(scores, top_k), dim=-1)
    if top_p < 1.0:
        return _sample_nucleus(probs, top_p, uniforms)
    return _sample_probs(probs, uniforms.generator).tolist()


# --------------------------------------------------------------------------- decoding

class _Decoder:
    """One decoding run over ``rows`` rows (see the module docstring)."""

    def __init__(self, model, vocab, cfg: GenerationConfig, rows: int) -> None:
        self.model, self.vocab, self.cfg = model, vocab, cfg
        if _LSTMStepper.supports(model):
            self.engine = _LSTMStepper(model)
        else:
            self.engine = _ModelEngine(model)
        self.form = form = cfg.poem_form
        self.t = t = _tables(vocab)
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
        codes = _template_codes(form.key)  # (T, L, W)
        T = codes.shape[0]
        # the tone state is a few small ints per row, kept in Python: per (line, col) the
        # requirement code of every template, and the union kind per alive-template set
        self.codes = codes.permute(1, 2, 0).tolist()  # (L, W, T)
        self.kinds = _union_kinds(form.key).tolist()  # (L, W, 2**T)
        self.viol = [[0] * T for _ in range(rows)]
        self.groups = torch.ones(rows, self.t.rhyme.shape[1], dtype=torch.bool)
        # additive mask row per tone requirement: hard -inf, soft -tone_weight (4, V)
        if cfg.constraint == "soft":
            self.tone_bias = t.struct_bias - cfg.tone_weight * (~t.tone_ok).float()
        else:
            self.tone_bias = t.tone_bias
        self.tone_rows = list(self.tone_bias.unbind(0))
        self._init_from_fixed()

    def _init_from_fixed(self) -> None:
        """Count template violations and narrow the rhyme groups from fixed characters, so
        free positions before a locked line already agree with it."""
        t, W = self.t, self.form.line_length
        for (line, col), tok in self.fixed_ids.items():
            if self.cfg.tones:
                self._count_violations([tok] * self.rows, line, col)
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
    def _tone_kinds(self, line: int, col: int) -> list[int]:
        """``tone_ok`` row per batch row: the union over the templates with the fewest
        violations (the alive ones) of what they accept at (line, col)."""
        table = self.kinds[line][col]
        out = []
        for v in self.viol:
            low = min(v)
            out.append(table[sum(1 << k for k, n in enumerate(v) if n == low)])
        return out

    def _rhyme_allowed(self, line: int) -> torch.Tensor:
        shares = (self.groups.float() @ self.t.rhyme_fT) > 0  # (B, V)
        if line == 0:  # a 仄-capable (or unknown) ending may leave line 1 unrhymed
            return shares | self.t.not_level_only
        return shares

    def _scores(self, base: torch.Tensor, line: int, col: int, scale: float = 1.0
                ) -> torch.Tensor:
        """Constrained log-scores (B, V) = ``scale * base`` plus the masks / penalties at a
        free character position (``base``: logits or log-probs)."""
        cfg, W, t = self.cfg, self.form.line_length, self.t
        rhyme_here = cfg.rhyme and col == W - 1 and (line % 2 == 1 or line == 0)
        kinds = self._tone_kinds(line, col) if cfg.tones else [0] * self.rows
        hard = cfg.constraint == "hard"
        if not rhyme_here or not hard:
            if hard and not all(t.tone_nonempty[k] for k in kinds):
                # only with a vocab lacking every 平 (or 仄) character
                empty = torch.tensor([not t.tone_nonempty[k] for k in kinds])
                self._note_rows(empty, f"tone rule relaxed at line {line + 1} character "
                                       f"{col + 1} (no character fits)")
                kinds = [k if t.tone_nonempty[k] else 0 for k in kinds]
            first = kinds[0]
            if all(k == first for k in kinds):
                bias = self.tone_rows[first]  # (V,), broadcast over rows
            else:
                bias = self.tone_bias.index_select(0, torch.tensor(kinds))
            scores = torch.add(bias, base, alpha=scale)
            if rhyme_here:  # soft
                scores = scores - cfg.rhyme_weight * (~self._rhyme_allowed(line)).float()
            return scores
        # hard rhyme position (5 per 律詩): masks as (B, V) bools, relaxed row by row
        allowed = self._rhyme_allowed(line) & t.char_ok
        if cfg.tones:
            tone = t.tone_ok.index_select(0, torch.tensor(kinds))
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
            allowed = torch.where(empty[:, None], t.char_ok, allowed)
        scores = base * scale if scale != 1.0 else base.clone()
        return scores.masked_fill_(~allowed, float("-inf"))

    def _note_rows(self, rows: torch.Tensor, text: str) -> None:
        for r in rows.nonzero().flatten().tolist():
            self.notes[r].append(text)

    def _update(self, tok: torch.Tensor, ids: list[int], line: int, col: int,
                forced: bool) -> None:
        """Advance the tone and rhyme state after writing ``tok`` (B,) (``ids`` as a list)
        at (line, col)."""
        cfg, t, W = self.cfg, self.t, self.form.line_length
        if cfg.tones and not forced:  # fixed characters were counted up front
            self._count_violations(ids, line, col)
        if cfg.rhyme and col == W - 1 and (line % 2 == 1 or line == 0):
            narrowed = self.groups & t.rhyme[tok]
            apply = narrowed.any(1)
            if line == 0:
                apply &= t.level_only[tok]
            self.groups = torch.where(apply[:, None], narrowed, self.groups)

    def _count_violations(self, ids: list[int], line: int, col: int) -> None:
        """Add, per row, one violation to every template whose requirement at (line, col)
        the row's token ``ids[row]`` does not meet."""
        codes, ok_rows = self.codes[line][col], self.t.tone_ok_rows
        for v, i in zip(self.viol, ids):
            ok = ok_rows[i]
            for k, code in enumerate(codes):
                if not ok[code]:
                    v[k] += 1

    def _token_tensor(self, ids: list[int]) -> torch.Tensor:
        """(B,) long tensor of ``ids``; one row is a view of the id table (no allocation)."""
        if len(ids) == 1:
            return self.t.ids[ids[0]:ids[0] + 1]
        return torch.tensor(ids, dtype=torch.long)

    def reorder(self, index: torch.Tensor) -> None:
        rows = index.tolist()
        self.viol = [list(self.viol[i]) for i in rows]
        self.groups = self.groups.index_select(0, index)
        self.notes = [list(self.notes[i]) for i in rows]

    def _prime_ids(self, style_ids: list[int]) -> list[int]:
        """``BOS`` (or ``BOS style EOS BOS``), fed once before the poem."""
        v = self.vocab
        return [v.bos_id] + (style_ids + [v.eos_id, v.bos_id] if style_ids else [])

    def run(self, style_ids: list[int], generator: torch.Generator):
        """Decode all positions; returns tokens (B, P), logprobs (B, P), locked log-prob (B,)
        and beam scores (B,) (None unless beam search).

        Sampling and greedy never compute the head where the token is forced (line-end
        marks, fixed characters): the top hidden state is kept and the log-probs of all
        forced tokens come from one batched head product after the loop."""
        if self.cfg.strategy == "beam":
            return self._run_beam(style_ids)
        cfg, form, engine = self.cfg, self.form, self.engine
        W, P, B = form.line_length, form.num_tokens, self.rows
        greedy = cfg.strategy == "greedy"
        inv_temp = 1.0 / cfg.temperature
        uniforms = _Uniforms(generator)
        top, state = engine.start(self._prime_ids(style_ids), B)
        tokens: list = [None] * P  # python ids per row
        logprobs: list = [None] * P  # (B, 1) each
        forced_tops, forced_at = [], []
        for pos in range(P):
            line, col = divmod(pos, W + 1)
            forced = self.forced[pos]
            if forced >= 0:
                ids = [forced] * B
                tok = self._token_tensor(ids)
                forced_tops.append(top)
                forced_at.append(pos)
            else:
                logits = engine.head(top)
                # softmax is shift-invariant, so scaled logits stand in for log-probs
                scores = self._scores(logits, line, col, inv_temp)
                if greedy:
                    ids = scores.argmax(dim=-1).tolist()
                else:
                    ids = _draw(scores, cfg.top_k, cfg.top_p, uniforms)
                tok = self._token_tensor(ids)
                logprobs[pos] = torch.log_softmax(logits, dim=-1).gather(1, tok.view(B, 1))
            tokens[pos] = ids
            if col < W:
                self._update(tok, ids, line, col, forced >= 0)
            if pos + 1 < P:
                top, state = engine.advance(tok, state)
        if forced_at:
            logp = torch.log_softmax(engine.head(torch.cat(forced_tops)), dim=-1)
            ids = torch.tensor([self.forced[p] for p in forced_at]).repeat_interleave(B)
            chosen = logp.gather(1, ids[:, None]).view(len(forced_at), B, 1)
            for i, pos in enumerate(forced_at):
                logprobs[pos] = chosen[i]
        tokens = torch.tensor(tokens, dtype=torch.long).T  # (B, P)
        logprobs = torch.cat(logprobs, 1)
        locked = logprobs[:, self.locked_positions].sum(1) if self.locked_positions else None
        return tokens, logprobs, locked, None

    def _run_beam(self, style_ids: list[int]):
        cfg, form, engine = self.cfg, self.form, self.engine
        W, P, B = form.line_length, form.num_tokens, self.rows
        top, state = engine.start(self._prime_ids(style_ids), B)
        tokens = torch.empty(B, P, dtype=torch.long)
        logprobs = torch.empty(B, P)
        beam_score = torch.full((B,), float("-inf"))
        beam_score[0] = 0.0
        for pos in range(P):
            line, col = divmod(pos, W + 1)
            forced = self.forced[pos]
            logp = torch.log_softmax(engine.head(top), dim=-1)
            if forced >= 0:
                tok = torch.full((B,), forced, dtype=torch.long)
                beam_score = beam_score + logp[:, forced]
            else:
                scores = self._scores(logp, line, col)
                cand = (beam_score[:, None] + scores).reshape(-1)
                best, flat = torch.topk(cand, B)
                parent, tok = flat // logp.shape[1], flat % logp.shape[1]
                bad = ~torch.isfinite(best)
                if bool(bad.any()):  # fewer valid continuations than beams: repeat the best
                    parent[bad], tok[bad] = parent[0], tok[0]
                beam_score = best
                tokens = tokens.index_select(0, parent)
                logprobs = logprobs.index_select(0, parent)
                logp = logp.index_select(0, parent)
                state = engine.select(state, parent)
                self.reorder(parent)
            tokens[:, pos] = tok
            logprobs[:, pos] = logp.gather(1, tok[:, None])[:, 0]
            if col < W:
                self._update(tok, tok.tolist(), line, col, forced >= 0)
            if pos + 1 < P:
                top, state = engine.advance(tok, state)
        locked = logprobs[:, self.locked_positions].sum(1) if self.locked_positions else None
        return tokens, logprobs, locked, beam_score


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
