"""How a set of poems reads against a training corpus, and the decoding sweep behind the
default temperature and top-p.

For a set of poems P and the training index (``poetry.CorpusIndex``):

    attested  = mean over P of the share of within-line character pairs seen in training
    distinct2 = |distinct within-line pairs of P| / |within-line pairs of P|   (between poems)
    copied    = 50th / 95th percentile of the longest run copied from one training poem
    seen4     = mean share of 4-grams seen in training
    rhyme_repeats = share of poems whose rhyming line ends repeat a character

Real held-out poems give the reference row; a decoding setting reads like verse when its
``attested`` is near theirs while ``copied`` and ``seen4`` stay poem-like.
"""
from __future__ import annotations

import statistics
from typing import Iterable, Sequence

from rnncore.poetry import END_MARKS, CorpusIndex, get_form, line_bodies, split_poem


def _percentile(values: Sequence[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else 0.0


def _repeats_rhyme(bodies: list[str]) -> bool:
    ends = [b[-1] for i, b in enumerate(bodies) if b and (i == 0 or i % 2 == 1)]
    return len(set(ends)) < len(ends)


def poem_set_quality(texts: Iterable[str], index: CorpusIndex) -> dict:
    """The measures of the module docstring for poems given as texts (marks included)."""
    texts = list(texts)
    pairs, attested, copied, seen4, repeats = [], [], [], [], 0
    for text in texts:
        lines = split_poem(text)
        bodies = line_bodies(lines)
        pairs += [b[i:i + 2] for b in bodies for i in range(len(b) - 1)]
        attested.append(index.attested_pair_share(lines))
        full = "".join(lines)
        copied.append(sum(c not in END_MARKS for c in index.longest_copied_run(full)))
        seen4.append(index.ngram_share(full))
        repeats += _repeats_rhyme(bodies)
    n = max(1, len(texts))
    return {"poems": len(texts),
            "attested_pair_share": statistics.fmean(attested) if texts else 0.0,
            "distinct_pairs": len(set(pairs)) / max(1, len(pairs)),
            "copied_run_p50": _percentile(copied, 0.5),
            "copied_run_p95": _percentile(copied, 0.95),
            "seen_4gram_share": statistics.fmean(seen4) if texts else 0.0,
            "rhyme_repeat_share": repeats / n}


def decoding_sweep(model, vocab, index: CorpusIndex, form: str = "qilv",
                   temperatures: Sequence[float] = (0.6, 0.7, 0.8, 0.9, 1.0),
                   top_ps: Sequence[float] = (0.8, 0.9, 1.0), num: int = 100,
                   seed: int = 1, rhyme: bool = True, tones: bool = True) -> list[dict]:
    """One row per (temperature, top_p): ``poem_set_quality`` of ``num`` sampled poems of
    ``form`` (rhyme and tone constraints as given), each setting from the same seed."""
    from rnncore.generate import GenerationConfig, generate

    get_form(form)
    rows = []
    for temperature in temperatures:
        for top_p in top_ps:
            cfg = GenerationConfig(form=form, temperature=temperature, top_p=top_p, num=num,
                                   seed=seed, rhyme=rhyme, tones=tones)
            poems = generate(model, vocab, cfg)
            rows.append({"temperature": temperature, "top_p": top_p,
                         **poem_set_quality((p.text for p in poems), index)})
    return rows


def closest_to(rows: list[dict], reference: dict, max_copied_p95: int = 6,
               max_seen4: float = 0.10) -> dict:
    """The row whose attested-pair share is nearest the reference's among those whose
    novelty stays poem-like (95th-percentile copied run and seen 4-grams within bounds)."""
    novel = [r for r in rows if r["copied_run_p95"] <= max_copied_p95
             and r["seen_4gram_share"] <= max_seen4] or rows
    return min(novel, key=lambda r: abs(r["attested_pair_share"]
                                        - reference["attested_pair_share"]))


QUALITY_COLUMNS = ("attested_pair_share", "distinct_pairs", "copied_run_p50",
                   "copied_run_p95", "seen_4gram_share", "rhyme_repeat_share")


def quality_table(first: str, rows: Sequence[tuple[str, dict]]) -> list[str]:
    """A Markdown table of ``poem_set_quality`` results: ``first`` names the label column,
    one line per (label, result)."""
    lines = [f"| {first} | " + " | ".join(QUALITY_COLUMNS) + " |",
             "|---" * (len(QUALITY_COLUMNS) + 1) + "|"]
    for name, r in rows:
        lines.append(f"| {name} | " + " | ".join(
            f"{r[c]:.3f}" if isinstance(r[c], float) else str(r[c]) for c in QUALITY_COLUMNS)
            + " |")
    return lines
