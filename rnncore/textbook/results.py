"""Results of the chapter's experiments: JSON files in ``rnncore/assets/results/``,
each written by its module's own command (the command string is stored in the result)."""
from __future__ import annotations

import importlib.resources
import json
import sys
from dataclasses import asdict
from pathlib import Path


class JsonResult:
    """Mixin for result dataclasses: ``to_dict()`` / ``from_dict()`` (plain JSON values)."""

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict):
        return cls(**data)


def check_positive(cfg, names, error: type[ValueError], optional=()) -> None:
    """Each of ``names`` on ``cfg`` a positive int (those in ``optional`` may be None)."""
    for name in names:
        v = getattr(cfg, name)
        if v is None and name in optional:
            continue
        if isinstance(v, bool) or not isinstance(v, int) or v < 1:
            raise error(f"{name} must be a positive integer, got {v!r}")


def result_path(name: str) -> Path:
    """``rnncore/assets/results/<name>``."""
    return Path(str(importlib.resources.files("rnncore").joinpath("assets", "results", name)))


def load_json(cls, name: str, path, error: type[ValueError], what: str):
    """``cls.from_dict`` of the shipped ``name`` (or of ``path``); ``error`` with one line
    if the file is missing or malformed."""
    path = Path(path) if path is not None else result_path(name)
    try:
        return cls.from_dict(json.loads(path.read_text()))
    except (OSError, ValueError, TypeError, KeyError) as exc:
        raise error(f"cannot read the {what} result {path}: {exc}") from None


def write_json(data: dict, out: str | None) -> None:
    """Write ``data`` as JSON to ``out`` (its folder created) or to stdout."""
    text = json.dumps(data, indent=1, ensure_ascii=False) + "\n"
    if out:
        Path(out).parent.mkdir(parents=True, exist_ok=True)
        Path(out).write_text(text)
    else:
        sys.stdout.write(text)


def run_cli(parser, measure, argv=None) -> int:
    """The experiments' command line: ``parser`` with its own options gains ``--val-poems``,
    ``--seed`` and ``--out``; ``measure(args)`` runs on one torch thread and returns the
    result, written as JSON (its ``describe()`` to stderr). A ``ValueError`` is one line
    ``error: ...`` and exit status 2."""
    import torch

    parser.add_argument("--val-poems", type=int, default=None,
                        help="the first N held-out poems (default: all)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default=None, help="write the JSON here (default: stdout)")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    try:
        result = measure(args)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    write_json(result.to_dict(), args.out)
    print(result.describe(), file=sys.stderr)
    return 0
