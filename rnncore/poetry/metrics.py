"""Metrics of a generated poem: form, rhyme and tone checks, and how it sits against the
training corpus (``CorpusIndex``): the share of its within-line character pairs attested in
training (fluency: real poems score about 0.64 against the bundled corpus), the longest run
copied from one training poem and the share of 4-grams seen in training (novelty).
"""
from __future__ import annotations

from collections import Counter
from typing import Iterable, Sequence

from rnncore.poetry.forms import PoemForm, check_form, form_of_shape, get_form
from rnncore.poetry.rhyme import check_rhyme
from rnncore.poetry.text import END_MARKS, line_bodies, split_poem
from rnncore.poetry.tones import tone_match


class CorpusIndex:
    """Substring index over training poems for novelty metrics.

    Holds the poems' texts joined by "\\n" (so no match spans two poems) and the sets of
    all 1- to 4-grams (punctuation included, not spanning poems). The longest copied run
    of a poem uses a two-pointer sweep: a candidate of length <= 4 is answered by the sets,
    a longer one is only searched in the joined text (``str.__contains__``) when all its
    4-grams are in the set, so unseen material costs set lookups only.
    """

    MAX_N = 4

    def __init__(self, texts: Iterable[str]) -> None:
        texts = [t for t in texts if t]
        self.num_poems = len(texts)
        self.text = "\n".join(texts)
        self.ngrams: list[set] = [set() for _ in range(self.MAX_N + 1)]
        for t in texts:
            for n in range(1, self.MAX_N + 1):
                grams = self.ngrams[n]
                grams.update(t[i : i + n] for i in range(len(t) - n + 1))
        self.shapes = Counter()
        for t in texts:
            lines = split_poem(t)
            if lines:
                self.shapes[(len(lines), len(line_bodies(lines)[0]))] += 1

    def contains(self, s: str) -> bool:
        if len(s) <= self.MAX_N:
            return s in self.ngrams[len(s)]
        return s in self.text

    def longest_copied_run(self, text: str) -> str:
        """The longest substring of ``text`` found inside one training poem."""
        n, four = len(text), self.ngrams[self.MAX_N]
        seen4 = [text[i : i + 4] in four for i in range(max(0, n - 3))]
        best, j = "", 0
        for i in range(n):
            j = max(j, i)
            while j < n:
                cand_len = j + 1 - i
                if cand_len > self.MAX_N and not seen4[j - 3]:
                    break
                if not self.contains(text[i : j + 1]):
                    break
                j += 1
            if j - i > len(best):
                best = text[i:j]
        return best

    def ngram_share(self, text: str, n: int = 4) -> float:
        """Share of the ``n``-grams of ``text`` (marks included) seen in training."""
        grams = [text[i : i + n] for i in range(len(text) - n + 1)]
        if not grams:
            return 0.0
        return sum(g in self.ngrams[n] for g in grams) / len(grams)

    def attested_pair_share(self, text: str | Sequence[str]) -> float:
        """Share of the adjacent character pairs inside the lines of ``text`` that occur
        somewhere in the training poems (marks excluded: pairs never span lines)."""
        pairs = [b[i : i + 2] for b in line_bodies(split_poem(text)) for i in range(len(b) - 1)]
        if not pairs:
            return 0.0
        return sum(p in self.ngrams[2] for p in pairs) / len(pairs)

    def shape_share(self, form: PoemForm) -> float:
        total = sum(self.shapes.values())
        return self.shapes[(form.num_lines, form.line_length)] / total if total else 0.0

    def main_form(self) -> PoemForm | None:
        if not self.shapes:
            return None
        (lines, width), _ = self.shapes.most_common(1)[0]
        return form_of_shape(lines, width)


_INDEX_CACHE: dict = {}


def corpus_index(corpus) -> CorpusIndex:
    """A (cached) ``CorpusIndex`` for a ``Corpus``, a list of ``Poem`` or of strings, or an
    index already built. The cache keeps the last two corpora by identity."""
    if isinstance(corpus, CorpusIndex):
        return corpus
    key = id(corpus)
    hit = _INDEX_CACHE.get(key)
    if hit is not None and hit[0] is corpus:
        return hit[1]
    poems = getattr(corpus, "poems", corpus)
    texts = [p if isinstance(p, str) else p.text for p in poems]
    index = CorpusIndex(texts)
    if len(_INDEX_CACHE) >= 2:
        _INDEX_CACHE.pop(next(iter(_INDEX_CACHE)))
    _INDEX_CACHE[key] = (corpus, index)
    return index


def poem_metrics(text: str | Sequence[str], form: str | PoemForm | None = None,
                 index: CorpusIndex | None = None) -> dict:
    """Metrics of one poem.

    * ``form_valid``: exactly the form (``check_form``); without ``form`` the form is
      guessed from the shape.
    * ``rhyme_valid`` / ``rhyme_groups`` / ``first_line_rhymes`` (``check_rhyme``).
    * ``tone_match``: best share of fixed template positions satisfied, ``tone_template``.
    * with ``index``: ``attested_pair_share``, ``longest_copied_run`` (characters, marks
      not counted), ``copied_text`` and ``seen_4gram_share``.
    """
    lines = split_poem(text)
    bodies = line_bodies(lines)
    if form is None:
        form = form_of_shape(len(lines), len(bodies[0]) if bodies else 0)
    else:
        form = get_form(form)
    out: dict = {"form": form.key if form else None,
                 "form_valid": bool(form) and check_form(lines, form)}
    rhyme = check_rhyme(lines)
    out.update(rhyme_valid=rhyme.valid, rhyme_groups=list(rhyme.groups),
               first_line_rhymes=rhyme.first_line_rhymes)
    if form is not None:
        share, tmpl = tone_match(lines, form)
        out.update(tone_match=share, tone_template=tmpl.name if tmpl else None)
    else:
        out.update(tone_match=0.0, tone_template=None)
    if index is not None:
        full = "".join(lines)
        run = index.longest_copied_run(full)
        out.update(
            attested_pair_share=index.attested_pair_share(lines),
            longest_copied_run=sum(c not in END_MARKS for c in run),
            copied_text=run,
            seen_4gram_share=index.ngram_share(full),
        )
    return out
