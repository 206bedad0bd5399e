"""The character vocabulary: ids 0..3 are the special tokens, then characters by frequency;
a poem is trained as ``[BOS] + encode(text) + [EOS]``."""
from __future__ import annotations

from collections import Counter
from typing import Iterable, Sequence


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
