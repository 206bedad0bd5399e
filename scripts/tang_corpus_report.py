"""The full Tang corpus on real data: counts, load times and the held-out exclusion.

python scripts/tang_corpus_report.py [TARBALL]   (default: the fetched chinese-poetry-2.0.1.tgz)

Prints the poems by form and the records skipped by reason, the load time without and with
the parsed copy (in a temporary cache), how many of the bundled corpus's 362 held-out poems
the full corpus holds (exact / after t2s / near-duplicate; against the validated poems and
against every record's ideographs), and the per-form split that ``prepare_data`` builds.
"""
import json
import os
import sys
import tempfile
import time
from pathlib import Path

from rnncore.data import bundled_held_out, load_corpus, split_by_form, to_simplified
from rnncore.data import tang
from rnncore.data.neardup import NearDupIndex, ideographs, normalised
from rnncore.poetry import is_ideograph


def held_out_overlap(held: list[str], held_norm: list[str], exact: list[str],
                     norm: list[str]) -> tuple[int, int, int]:
    """Held-out poems with an exact, a t2s-exact and a near-duplicate copy among the texts."""
    index = NearDupIndex(norm)
    exact_set, norm_set = set(exact), set(norm)
    return (sum(h in exact_set for h in held), sum(h in norm_set for h in held_norm),
            sum(bool(index.matches(h)) for h in held_norm))


def main() -> None:
    path = Path(sys.argv[1]) if len(sys.argv) > 1 else tang.tarball_path()
    with tempfile.TemporaryDirectory() as cache:
        os.environ["RNNCORE_CACHE"] = cache  # a cold start: parse, then read the copy back
        times = []
        for _ in range(2):
            start = time.perf_counter()
            corpus = load_corpus(path)
            times.append(time.perf_counter() - start)
    stats = corpus.stats()
    print(f"{path}: {stats['poems']} poems, {stats['characters']} characters, "
          f"{stats['distinct_characters']} distinct")
    print(f"load: {times[0]:.1f} s parsing the tarball, {times[1]:.1f} s from the parsed copy")
    print("forms:", json.dumps(stats["forms"]))
    print(f"skipped {stats['skipped']}:", json.dumps(stats["skip_reasons"]))

    start = time.perf_counter()
    held = list(bundled_held_out())
    held_exact, held_norm = [ideographs(p) for p in held], normalised(held)
    poems = corpus.poems
    figures = held_out_overlap(held_exact, held_norm, [ideographs(p) for p in poems],
                               normalised(poems))
    print(f"bundled held-out poems: {len(held)}; with a copy among the validated poems: "
          f"exact {figures[0]}, t2s {figures[1]}, >=80% {figures[2]}")
    raw = ["".join(c for c in "".join(r.get("paragraphs", [])) if is_ideograph(c))
           for _, data in tang.layout_files(path) for r in json.loads(data)]
    raw_norm = to_simplified("\n".join(raw)).split("\n")
    figures = held_out_overlap(held_exact, held_norm, raw, raw_norm)
    print(f"  ... among all {len(raw)} records (ideographs only): exact {figures[0]}, "
          f"t2s {figures[1]}, >=80% {figures[2]}  ({time.perf_counter() - start:.1f} s)")

    start = time.perf_counter()
    split = split_by_form(poems)
    print(f"split_by_form (5% per form, seed 0) in {time.perf_counter() - start:.1f} s: "
          f"train {len(split.train)}, val {len(split.val)}, training poems removed "
          f"{sum(split.excluded.values())} {json.dumps(split.excluded)}")
    for form in stats["forms"]:
        train = sum(p.form == form for p in split.train)
        val = sum(p.form == form for p in split.val)
        print(f"  {form:<6} train {train:>6}  val {val:>5}")


if __name__ == "__main__":
    main()
