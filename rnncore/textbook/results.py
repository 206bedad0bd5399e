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
