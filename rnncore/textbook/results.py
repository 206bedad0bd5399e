"""Shipped results of the chapter's experiments (``rnncore/assets/results/*.json``): where
one lives, a result dataclass to and from JSON, reading one back, and the command-line tail
that runs an experiment and writes its result."""
from __future__ import annotations

import dataclasses
import importlib.resources
import json
import sys
from pathlib import Path
from typing import Callable


class JSONResult:
    """Mixin for a result dataclass: ``to_dict()`` (every field) and ``from_dict()``."""

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict):
        return cls(**data)


def result_path(name: str) -> Path:
    """Where the shipped result ``name`` (a file name) lives."""
    return Path(str(importlib.resources.files("rnncore").joinpath("assets", "results", name)))


def read_result(cls, path: str | Path, error: type[ValueError], what: str):
    """``cls.from_dict`` of the JSON at ``path``; ``error`` (one line) if missing or
    malformed."""
    path = Path(path)
    try:
        return cls.from_dict(json.loads(path.read_text()))
    except (OSError, ValueError, TypeError) as exc:
        raise error(f"cannot read the {what} result {path}: {exc}") from None


def progress(line: str) -> None:
    """One progress line on stderr (the command line's ``progress`` callback)."""
    print(line, file=sys.stderr, flush=True)


def run_and_write(measure: Callable[[], object], out: str | None,
                  command: str | None = None) -> int:
    """Run ``measure()``, store ``command`` in the result (if given), write its JSON to
    ``out`` (else stdout) and its ``describe()`` to stderr; a ValueError is one
    ``error:`` line and exit status 2."""
    try:
        result = measure()
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if command is not None:
        result.command = command
    text = json.dumps(result.to_dict(), indent=1, ensure_ascii=False) + "\n"
    if out:
        Path(out).parent.mkdir(parents=True, exist_ok=True)
        Path(out).write_text(text)
    else:
        sys.stdout.write(text)
    print(result.describe(), file=sys.stderr)
    return 0


def run_cli(parser, measure, argv=None) -> int:
    """An experiment's command line: ``parser`` with its own options gains ``--val-poems``,
    ``--seed`` and ``--out``; ``measure(args)`` runs on one torch thread and its result goes
    through ``run_and_write``."""
    import torch

    parser.add_argument("--val-poems", type=int, default=None,
                        help="the first N held-out poems (default: all)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default=None, help="write the JSON here (default: stdout)")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    return run_and_write(lambda: measure(args), args.out)
