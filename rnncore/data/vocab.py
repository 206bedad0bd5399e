"""The character vocabulary: ids 0..3 are the special tokens, then characters by frequency;
a poem is trained as ``[BOS] + encode(text) + [EOS]``.

A vocab built with ``forms=True`` also has one start token per form, ``<bos:qilv>`` and so
on (ids 4..8), and a poem starts with its own form's: the model is told which form it
writes. The start token is an input only (never a target of a whole poem), so held-out
bits per character stay comparable with a vocab without them.
"""
from __future__ import annotations

from collections import Counter
from typing import Iterable, Sequence

from rnncore.poetry import FORMS, OTHER_FORM

FORM_KEYS = (*FORMS, OTHER_FORM)


class Vocab:
    """Character vocabulary. Ids 0..3 are ``<pad> <unk> <bos> <eos>``; then characters by
    descending frequency, ties broken by code point, so ``build`` is deterministic."""

    PAD, UNK, BOS, EOS = "<pad>", "<unk>", "<bos>", "<eos>"
    SPECIALS = (PAD, UNK, BOS, EOS)
    pad_id, unk_id, bos_id, eos_id = 0, 1, 2, 3
    FORM_STARTS = tuple(f"<bos:{key}>" for key in FORM_KEYS)
    FORMAT = "rnncore-vocab/1"

    def __init__(self, itos: Sequence[str]) -> None:
        itos = list(itos)
        if tuple(itos[:4]) != self.SPECIALS:
            raise ValueError(f"vocab must start with {', '.join(self.SPECIALS)}")
        for token in itos[4:]:
            if not isinstance(token, str) or (len(token) != 1 and token not in self.FORM_STARTS):
                raise ValueError(f"vocab entries must be single characters, got {token!r}")
        if len(set(itos)) != len(itos):
            raise ValueError("vocab has duplicate entries")
        self.itos: list[str] = itos
        self.stoi: dict[str, int] = {s: i for i, s in enumerate(itos)}

    @classmethod
    def build(cls, texts: Iterable[str], min_freq: int = 1, forms: bool = False) -> "Vocab":
        """Specials, the form start tokens if ``forms``, then the characters of ``texts``."""
        counts = Counter()
        for text in texts:
            counts.update(text)
        chars = [c for c, n in counts.items() if n >= min_freq and c not in cls.SPECIALS]
        chars.sort(key=lambda c: (-counts[c], ord(c)))
        return cls(list(cls.SPECIALS) + (list(cls.FORM_STARTS) if forms else []) + chars)

    @property
    def has_forms(self) -> bool:
        return self.FORM_STARTS[0] in self.stoi

    def start_id(self, form: str | None = None) -> int:
        """The id a poem of ``form`` starts with: its form's start token where the vocab has
        one, else ``bos_id``."""
        return self.stoi.get(f"<bos:{form}>", self.bos_id) if form else self.bos_id

    def __len__(self) -> int:
        return len(self.itos)

    def __contains__(self, char: object) -> bool:
        """True for the characters of the vocab (not for special or start tokens)."""
        return isinstance(char, str) and len(char) == 1 and char in self.stoi

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Vocab) and self.itos == other.itos

    def __repr__(self) -> str:
        return f"Vocab(size={len(self)})"

    def encode(self, text: str) -> list[int]:
        """One id per character; characters outside the vocab become ``unk_id``."""
        unk = self.unk_id
        return [self.stoi.get(c, unk) for c in text]

    def decode(self, ids: Iterable[int]) -> str:
        """Characters for ``ids``; special and start tokens are dropped."""
        out = []
        for i in ids:
            i = int(i)
            if 4 <= i < len(self.itos) and len(self.itos[i]) == 1:
                out.append(self.itos[i])
        return "".join(out)

    def encode_poem(self, text: str, form: str | None = None) -> list[int]:
        """``[start] + encode(text) + [EOS]`` -- how a poem is trained; ``start`` is the
        form's start token when the vocab has them (``start_id``), else ``BOS``."""
        return [self.start_id(form)] + self.encode(text) + [self.eos_id]

    def to_dict(self) -> dict:
        return {"format": self.FORMAT, "itos": list(self.itos)}

    @classmethod
    def from_dict(cls, data: dict) -> "Vocab":
        if not isinstance(data, dict) or not isinstance(data.get("itos"), list):
            raise ValueError("vocab data must be a dict with an 'itos' list")
        if data.get("format", cls.FORMAT) != cls.FORMAT:
            raise ValueError(f"unknown vocab format {data.get('format')!r}")
        return cls(data["itos"])
