"""``python -m rnncore corpus fetch|info``: get the full Tang corpus (chinese-poetry 2.0.1
through npm, checked against its sha512) and count what a corpus holds.

``info [SOURCE]`` loads a source as training would (``quantangshi`` by default; also
``tang``, an archive, a directory or a file) and prints its poems by form and the records
skipped by reason. Errors print one ``error: ...`` line and exit 2 (through ``rnncore.cli``).
"""
from __future__ import annotations

import time

from rnncore.commands import print_json


def register(subparsers) -> None:
    p = subparsers.add_parser("corpus", help="fetch the full Tang corpus; count a corpus",
                              description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="action", required=True, metavar="ACTION")
    fetch = sub.add_parser("fetch", help="npm pack chinese-poetry@2.0.1 into the cache")
    fetch.set_defaults(func=run_fetch)
    info = sub.add_parser("info", help="poems by form and skipped records by reason")
    info.add_argument("source", nargs="?", default="quantangshi",
                      help="quantangshi (default) | tang | an archive, directory or file")
    info.add_argument("--simplified", action="store_true",
                      help="convert to simplified characters (as training would)")
    info.add_argument("--json", action="store_true", help="print JSON on stdout")
    info.set_defaults(func=run_info)


def run_fetch(args) -> int:
    from rnncore.data.fetch import fetch_tarball

    path, downloaded = fetch_tarball()
    print(f"{'saved' if downloaded else 'already have'} {path} (integrity checked)")
    return 0


def run_info(args) -> int:
    from rnncore.data import load_corpus

    start = time.perf_counter()
    corpus = load_corpus(args.source, simplified=args.simplified)
    stats = corpus.stats()
    stats["load_seconds"] = round(time.perf_counter() - start, 2)
    if args.json:
        print_json(stats)
        return 0
    print(f"{stats['source']}: {stats['poems']} poems, {stats['characters']} characters, "
          f"{stats['distinct_characters']} distinct (loaded in {stats['load_seconds']} s)")
    for form, count in stats["forms"].items():
        print(f"  {form:<8} {count:>7}")
    print(f"skipped {stats['skipped']} records:")
    for reason, count in stats["skip_reasons"].items():
        print(f"  {reason:<26} {count:>7}")
    return 0
