"""Vocab tables for constrained decoding, computed once per vocab (and per form).

For a vocab of V tokens and the 30 平水韻 level-tone groups G:

* ``char_ok`` (V,): CJK ideographs of the vocab (special tokens and marks excluded) --
  the only tokens allowed inside a line;
* ``tone_ok`` (4, V): tokens meeting tone requirement k = 0 free, 1 平, 2 仄, 3 平 or 仄,
  and ``tone_bias`` (4, V), the same as an additive 0 / -inf row;
* ``rhyme`` (V, G): which level-tone rhyme groups each token can belong to.

Per form, ``_template_codes`` (T, L, W) holds the requirement of each 平仄 template and
``_union_kinds`` (L, W, 2**T) the requirement of every set of templates still alive.
"""
from __future__ import annotations

import functools

import torch

from rnncore.generate.config import GenerationError
from rnncore.poetry import (
    FREE,
    PING,
    is_ideograph,
    rhyme_table,
    to_simplified,
    to_traditional,
    tone_templates,
)


class _VocabTables:
    """Per-vocab tensors: structure mask, tone capabilities, rhyme-group membership."""

    def __init__(self, vocab) -> None:
        table = rhyme_table()
        V = len(vocab)
        self.char_ok = torch.zeros(V, dtype=torch.bool)
        can_ping = torch.zeros(V, dtype=torch.bool)
        can_ze = torch.zeros(V, dtype=torch.bool)
        groups = table.ping_groups
        gindex = {g: i for i, g in enumerate(groups)}
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
        self._rhyme_rows: dict = {}

    def rhyme_row(self, groups: tuple, first_line: bool, kind: int | None):
        """The hard rules at a rhyming line end for one row, cached (a few hundred bool ops
        a position otherwise): ``(bias (V,) 0 allowed / -inf, tone relaxed, rhyme relaxed)``.

        Allowed: characters sharing one of the open rhyme ``groups`` (30 bools), or at the end
        of line 1 (``first_line``) any that can be read 仄; with tones (``kind`` not None)
        also meeting ``tone_ok[kind]``, a rule dropped when nothing would be left, then the
        rhyme rule too (any character)."""
        key = (groups, first_line, kind)
        hit = self._rhyme_rows.get(key)
        if hit is None:
            if len(self._rhyme_rows) >= 256:  # 33 KB each for the bundled vocab
                self._rhyme_rows.clear()  # (one call, safe with threads sharing the tables)
            allowed = (torch.tensor(groups, dtype=torch.float32) @ self.rhyme_fT) > 0
            if first_line:  # a 仄-capable (or unknown) ending may leave line 1 unrhymed
                allowed |= self.not_level_only
            allowed &= self.char_ok
            tone_relaxed = rhyme_relaxed = False
            if kind is not None:
                full = allowed & self.tone_ok[kind]
                tone_relaxed = not bool(full.any())
                allowed = allowed if tone_relaxed else full
            if not bool(allowed.any()):
                allowed, rhyme_relaxed = self.char_ok, True
            bias = torch.zeros(len(allowed)).masked_fill_(~allowed, float("-inf"))
            hit = self._rhyme_rows[key] = (bias, tone_relaxed, rhyme_relaxed)
        return hit


# keyed by the tokens, so equal vocabs (the same checkpoint loaded twice) share one entry
_TABLE_CACHE: dict = {}


def _tables(vocab) -> _VocabTables:
    """The tables of ``vocab``, built once (at most 4 vocabs kept, the oldest dropped first)."""
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


def _vocab_char(char: str, vocab, what: str) -> int:
    """Token id of ``char``, trying its simplified / traditional variant if needed."""
    for variant in (char, to_simplified(char), to_traditional(char)):
        if len(variant) == 1 and variant in vocab:
            return vocab.stoi[variant]
    raise GenerationError(f"{what} character {char} is not in the model's vocabulary")
