"""對句: the 下句 for a 上句, written by the encoder-decoder under the rules of regulated verse.

The 上句 x (W = 5 or 7 ideographs) is encoded once; the 下句 is decoded one character at a
time for B rows. At position t (0-based) and row b the score of token v is::

    s[b, v] = log p(v | y_<t, x) / temperature  +  0 if v is allowed else -inf

Allowed (each rule a (B, V) or (V,) bool mask built from ``rnncore.generate.tables`` and
``rnncore.poetry``; nothing here re-derives a tone or a rhyme):

* structure: the vocabulary's CJK ideographs (``char_ok``);
* tones (對): the 上句 is matched against the first line of every couplet of the form's
  four 平仄 templates (``poetry.tone_templates``; W = 7: 七律, 5: 五律); the second lines of
  the couplets it breaks least are the 下句's patterns (``down_patterns``). A character must
  meet some pattern still alive (``tone_ok`` rows: 0 free, 1 平, 2 仄, 3 either), and a
  written character retires the patterns it breaks. Every such line ends in 平;
* rhyme: the last character is in a 平水韻 level-tone group (``rhyme``), one it shares with
  the 上句's last character when that can only be read 平 (the 上句 rhymes: 首句入韻), and
  has no oblique reading (``level_only``: a polyphone like 不 is rarely read 平 at a line's
  end; this preference is dropped first);
* repetition: no character of the 上句 (上下句不重字).

If a row would be left without a token, the level-only preference is dropped first, then
the repetition rule, then the tone rule, then the rhyme (the order of ``generate.decoder``);
a note says so. Drawing uses the
project's sampler (``generate.sampling``: top-k, nucleus, seeded) or the argmax.
"""
from __future__ import annotations

import functools
import importlib.resources
import random
from dataclasses import dataclass, field
from pathlib import Path

import torch

from rnncore.configs import DictConfig
from rnncore.textbook.couplets import CoupletError

MODEL_FILE = ("assets", "couplets", "attention.safetensors")
STRATEGIES = ("sample", "greedy")
FORM_OF_LENGTH = {5: "wulv", 7: "qilv"}
_CODES = {"中": 0, "平": 1, "仄": 2}


@dataclass
class MatchConfig(DictConfig):
    """How to write the 下句: ``strategy`` sample or greedy, the sampling knobs, ``num``
    rows, ``seed`` (None: a fresh one) and which rules apply."""

    config_error = CoupletError

    strategy: str = "sample"
    temperature: float = 0.8
    top_k: int = 0
    top_p: float = 0.9
    num: int = 1
    seed: int | None = None
    tones: bool = True
    rhyme: bool = True
    no_repeat: bool = True

    def __post_init__(self) -> None:
        if self.strategy not in STRATEGIES:
            raise CoupletError(f"strategy must be one of {', '.join(STRATEGIES)}")
        if not 0.05 <= float(self.temperature) <= 5.0:
            raise CoupletError(f"temperature must be in [0.05, 5], got {self.temperature}")
        if not 0.0 < float(self.top_p) <= 1.0:
            raise CoupletError(f"top_p must be in (0, 1], got {self.top_p}")
        if not isinstance(self.top_k, int) or self.top_k < 0:
            raise CoupletError(f"top_k must be >= 0, got {self.top_k!r}")
        if isinstance(self.num, bool) or not isinstance(self.num, int) or not 1 <= self.num <= 32:
            raise CoupletError(f"num must be 1 to 32, got {self.num!r}")


@dataclass
class CoupletMatch:
    """One written 下句: ``line`` (W characters), the model's own ``bits`` per character
    (-log2 p at temperature 1, no rules), the rule ``checks`` and relaxation ``notes``."""

    first: str
    line: str
    bits: list
    checks: dict
    notes: list = field(default_factory=list)

    @property
    def mean_bits(self) -> float:
        return sum(self.bits) / len(self.bits)

    @property
    def couplet(self) -> str:
        return f"{self.first}，{self.line}。"

    def summary(self) -> str:
        """The model's bits per character and the rules, e.g. "4.1 bits/char · rhyme ✓"."""
        c = self.checks
        return (f"{self.mean_bits:.2f} bits/char · rhyme {'✓' if c['rhyme'] else '✗'} · "
                f"level end {'✓' if c['level_end'] else '✗'} · tones {c['tones']:.0%}"
                + "".join(f" · {n}" for n in self.notes))

    def describe(self) -> str:
        return f"{self.couplet}  {self.summary()}"


def check_first_line(text: str) -> str:
    """The 上句 without spaces and a trailing mark; ``CoupletError`` unless it is 5 or 7
    ideographs."""
    from rnncore.poetry import END_MARKS, is_ideograph

    line = "".join(str(text).split()).rstrip("".join(END_MARKS) + ",.;!?")
    if not line:
        raise CoupletError("type a 上句 of 5 or 7 Chinese characters")
    bad = [c for c in line if not is_ideograph(c)]
    if bad:
        raise CoupletError(f"a 上句 is Chinese characters only; {''.join(bad[:5])!r} is not")
    if len(line) not in FORM_OF_LENGTH:
        raise CoupletError(f"a 上句 has 5 or 7 characters, this one has {len(line)}")
    return line


def down_patterns(first: str, table=None) -> list[str]:
    """The 平仄 patterns (over 平/仄/中) the 下句 of ``first`` may follow: the second lines of
    the couplets (of the four templates of its form) whose first line ``first`` breaks
    least (unknown characters break every fixed position)."""
    from rnncore.poetry import rhyme_table, tone_templates

    table = table or rhyme_table()
    pairs = {(t.lines[i], t.lines[i + 1]) for t in tone_templates(FORM_OF_LENGTH[len(first)])
             for i in range(0, len(t.lines), 2)}
    misses = {p: sum(not table.can_be(c, tone) for c, tone in zip(first, p[0]))
              for p in pairs}
    low = min(misses.values())
    return sorted({down for (up, down), n in misses.items() if n == low})


def couplet_checks(first: str, second: str, table=None) -> dict:
    """The rules on a written couplet: ``length`` and ``ideographs``, ``level_end`` (the
    last character can be read 平), ``rhyme`` (it is in a level-tone group, shared with the
    上句's last when that is only 平) and ``tones``, the best share of the fixed positions
    of a ``down_patterns`` pattern that ``second`` meets."""
    from rnncore.poetry import PING, is_ideograph, rhyme_table

    table = table or rhyme_table()
    ok_len = len(second) == len(first)
    groups = table.rhyme_groups(second[-1]) if second else frozenset()
    up = table.info(first[-1])
    rhymes = bool(groups) and (up.tones != {PING} or bool(groups & up.ping_groups))
    share = 0.0
    if ok_len:
        for p in down_patterns(first, table):
            fixed = [(c, t) for c, t in zip(second, p) if t != "中"]
            share = max(share, sum(table.can_be(c, t) for c, t in fixed) / len(fixed))
    return {"length": ok_len, "ideographs": all(map(is_ideograph, second)),
            "level_end": bool(second) and table.can_be(second[-1], PING), "rhyme": rhymes,
            "tones": share}


def model_path() -> Path:
    return Path(str(importlib.resources.files("rnncore").joinpath(*MODEL_FILE)))


@functools.lru_cache(maxsize=2)
def load_couplet_model(path: str | None = None):
    """(model, vocab) of the shipped attention model (or the file at ``path``), once."""
    from rnncore.data import Vocab
    from rnncore.textbook.seq2seq import load_seq2seq

    model, itos, _ = load_seq2seq(path or model_path())
    return model, Vocab(itos)


def _allowed(masks: list[tuple[str, torch.Tensor]], base: torch.Tensor, notes: list,
             where: str) -> torch.Tensor:
    """base (V,) & every mask (B, V); rows left empty drop the masks in order, noted."""
    allowed = base & torch.stack([m for _, m in masks]).all(0)
    for k, (name, _) in enumerate(masks):
        empty = ~allowed.any(1)
        if not bool(empty.any()):
            break
        rest = [m for _, m in masks[k + 1:]]
        fallback = base & (torch.stack(rest).all(0) if rest else True)
        allowed = torch.where(empty[:, None], fallback, allowed)
        for r in empty.nonzero().flatten().tolist():
            notes[r].append(f"{name} rule relaxed at character {where}")
    return allowed


@torch.no_grad()
def match_line(first: str, cfg: MatchConfig | None = None, model=None, vocab=None
               ) -> list[CoupletMatch]:
    """``cfg.num`` 下句 for the 上句 ``first`` (see the module docstring); the shipped model
    unless ``model`` and ``vocab`` are given. Bad input raises ``CoupletError``."""
    from rnncore.generate.config import GenerationError
    from rnncore.generate.sampling import _draw, _Uniforms
    from rnncore.generate.tables import _tables, _vocab_char

    cfg = cfg or MatchConfig()
    first = check_first_line(first)
    if model is None:
        model, vocab = load_couplet_model()
    try:
        src_ids = [_vocab_char(c, vocab, "the 上句's") for c in first]
    except GenerationError as exc:
        raise CoupletError(str(exc)) from None
    if not model.cfg.conditional:
        raise CoupletError("this model does not read a 上句 (unconditional)")
    known = "".join(vocab.itos[i] for i in src_ids)        # the vocabulary's script
    t, W, B = _tables(vocab), len(first), cfg.num
    patterns = [[_CODES[c] for c in p] for p in down_patterns(known)]
    alive = [list(range(len(patterns))) for _ in range(B)]
    up_last = src_ids[-1]
    rhyme_ok = t.rhyme.any(1)
    if bool(t.level_only[up_last]):                         # 首句入韻: rhyme with it
        rhyme_ok = rhyme_ok & ((t.rhyme[up_last].float() @ t.rhyme_fT) > 0)
    repeat_ok = torch.ones(len(vocab), dtype=torch.bool)
    repeat_ok[src_ids] = False
    seed = random.randrange(2**31) if cfg.seed is None else cfg.seed
    uniforms = _Uniforms(torch.Generator().manual_seed(seed))
    model.eval()
    states, c, s = model.encode(torch.tensor([src_ids] * B))
    tok = torch.full((B,), vocab.bos_id, dtype=torch.long)
    notes: list[list[str]] = [[] for _ in range(B)]
    out, bits = [], []
    for pos in range(W):
        o, s, _ = model.decode(tok[:, None], states, c, s)
        logp = model.head.log_prob(o[:, 0])                 # (B, V)
        masks = []
        if cfg.rhyme and pos == W - 1:   # a polyphone with a rare level reading (不, 幾)
            masks.append(("level-only ending", (rhyme_ok & t.level_only).expand(B, -1)))
        if cfg.no_repeat:
            masks.append(("repetition", repeat_ok.expand(B, -1)))
        if cfg.tones:
            kinds = []
            for row in alive:
                needs = {patterns[p][pos] for p in row}
                kinds.append(0 if 0 in needs else 3 if needs == {1, 2} else needs.pop())
            masks.append(("tone", t.tone_ok[kinds]))
        if cfg.rhyme and pos == W - 1:
            masks.append(("rhyme", (rhyme_ok & t.tone_ok[1]).expand(B, -1)))
        allowed = _allowed(masks, t.char_ok, notes, str(pos + 1)) if masks else \
            t.char_ok.expand(B, -1)
        scores = (logp / cfg.temperature).masked_fill(~allowed, float("-inf"))
        ids = (scores.argmax(-1).tolist() if cfg.strategy == "greedy"
               else _draw(scores, cfg.top_k, cfg.top_p, uniforms))
        tok = torch.tensor(ids, dtype=torch.long)
        bits.append((-logp.gather(1, tok[:, None])[:, 0] / 0.6931471805599453).tolist())
        out.append(ids)
        for r, i in enumerate(ids):                          # retire broken patterns
            kept = [p for p in alive[r] if t.tone_ok_rows[i][patterns[p][pos]]]
            alive[r] = kept or alive[r]
    matches = []
    for r in range(B):
        line = "".join(vocab.itos[i] for i in (col[r] for col in out))
        checks = couplet_checks(known, line)
        matches.append(CoupletMatch(first, line, [b[r] for b in bits], checks, notes[r]))
    return matches
