"""Where the chapter's shipped results live and how a result goes to and from JSON (every
experiment with a ``to_dict`` / ``from_dict`` / ``describe`` result uses these)."""
from __future__ import annotations

import dataclasses
import importlib.resources
import json
import sys
from pathlib import Path


class JSONResult:
    """Mixin for a result dataclass: ``to_dict()`` (every field) and ``from_dict()``."""

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict):
        return cls(**data)


def shipped_path(name: str) -> Path:
    """``rnncore/assets/results/<name>``: the shipped full-size result of an experiment."""
    return Path(str(importlib.resources.files("rnncore").joinpath("assets", "results", name)))


def read_result(cls, path: Path, error: type[ValueError], what: str):
    """``cls.from_dict`` of the JSON at ``path``; ``error`` (one line) if it is missing or
    malformed."""
    try:
        return cls.from_dict(json.loads(Path(path).read_text()))
    except (OSError, ValueError, TypeError) as exc:
        raise error(f"cannot read the {what} result {path}: {exc}") from None


def compute_and_write(compute, out: str | None) -> int:
    """A command's end: ``compute()`` -> its result's JSON to ``out`` (stdout when None) and
    its ``describe()`` to stderr, exit code 0; a ``ValueError`` -> ``error: <message>``, 2."""
    try:
        result = compute()
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    text = json.dumps(result.to_dict(), indent=1, ensure_ascii=False) + "\n"
    if out:
        Path(out).parent.mkdir(parents=True, exist_ok=True)
        Path(out).write_text(text)
    else:
        sys.stdout.write(text)
    print(result.describe(), file=sys.stderr)
    return 0
