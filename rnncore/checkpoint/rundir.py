"""A run directory's layout, with its readers and the writers of its small files::

    step-000123/   a checkpoint (``store``); saved and pruned by ``CheckpointManager``
    latest.json    {"checkpoint": "step-000123", "step": 123}   (``CheckpointManager``)
    best.json      the same for the lowest validation loss, plus its value
    steps.jsonl    one step record a line (``StepLog``, the trainer's history)
    job.json       the app's record of a job (``write_job_file``: who, configs, status)
"""
from __future__ import annotations

import dataclasses
import json
import os
import re
from pathlib import Path
from typing import Any

from rnncore.checkpoint.files import (BEST_POINTER, JOB_FILE, LATEST_POINTER, META_FILE,
                                      STEP_LOG_FILE, CheckpointError, read_json_dict,
                                      write_text_atomic)

_STEP_DIR = re.compile(r"^step-(\d+)$")


def step_dir_name(step: int) -> str:
    return f"step-{int(step):06d}"


def is_checkpoint_dir(path: str | os.PathLike) -> bool:
    """Whether ``path`` holds a checkpoint's ``meta.json`` (not checked further)."""
    return (Path(path) / META_FILE).is_file()


def checkpoint_stamp(path: str | os.PathLike) -> str:
    """The checkpoint's ``meta.json`` modification time ("" without one): a cache key that
    changes whenever the checkpoint is saved again."""
    try:
        return str((Path(path) / META_FILE).stat().st_mtime_ns)
    except OSError:
        return ""


# --------------------------------------------------------------------------- checkpoints

def list_checkpoints(run_dir: str | os.PathLike) -> list[tuple[int, Path]]:
    """(step, path) of every complete ``step-NNNNNN`` checkpoint, by step."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        return []
    found = []
    for child in run_dir.iterdir():
        match = _STEP_DIR.match(child.name)
        if match and is_checkpoint_dir(child):
            found.append((int(match.group(1)), child))
    return sorted(found)


def pointed_checkpoint(run_dir: Path, pointer: str) -> Path | None:
    """The checkpoint a pointer file names, if it is a complete one inside ``run_dir``."""
    data = read_json_dict(run_dir / pointer)
    if data and isinstance(data.get("checkpoint"), str) and _STEP_DIR.match(data["checkpoint"]):
        target = run_dir / data["checkpoint"]
        if is_checkpoint_dir(target):
            return target
    return None


def latest_checkpoint(run_dir: str | os.PathLike) -> Path | None:
    """The run's newest checkpoint: the ``latest.json`` pointer, else the highest step."""
    run_dir = Path(run_dir)
    target = pointed_checkpoint(run_dir, LATEST_POINTER)
    if target is not None:
        return target
    found = list_checkpoints(run_dir)
    return found[-1][1] if found else None


def best_checkpoint(run_dir: str | os.PathLike) -> Path | None:
    """The checkpoint with the lowest validation loss (``best.json``), if any."""
    return pointed_checkpoint(Path(run_dir), BEST_POINTER)


def resolve_checkpoint(path: str | os.PathLike) -> Path:
    """A checkpoint directory as given, or a run directory's latest checkpoint."""
    path = Path(path)
    if not path.exists():
        raise CheckpointError(f"checkpoint not found: {path}")
    if not path.is_dir():
        raise CheckpointError(f"{path} is not a checkpoint directory")
    if not is_checkpoint_dir(path):
        latest = latest_checkpoint(path)
        if latest is not None:
            return latest
    return path


# --------------------------------------------------------------------------- step log

def read_step_records(path: str | os.PathLike) -> list[dict]:
    """The records of a step log; ``path`` is a run directory or the log file itself."""
    path = Path(path)
    if path.is_dir():
        path = path / STEP_LOG_FILE
    try:
        text = path.read_text(encoding="utf-8")
    except OSError:
        raise CheckpointError(f"step records not found: {path}") from None
    try:
        return [json.loads(line) for line in text.splitlines() if line.strip()]
    except json.JSONDecodeError as exc:
        raise CheckpointError(f"{path} is not valid JSON: {exc.msg}") from None


class StepLog:
    """Appends every step record (a dataclass) as one JSON line to ``<run dir>/steps.jsonl``.
    On resume from step n, lines past n are dropped: they belong to the tail of the earlier
    run that no checkpoint kept."""

    def __init__(self, run_dir: str | os.PathLike, resume_step: int):
        os.makedirs(run_dir, exist_ok=True)
        self.path = Path(run_dir) / STEP_LOG_FILE
        if self.path.exists():
            keep = [r for r in read_step_records(self.path) if r.get("step", 0) <= resume_step]
            self.path.write_text("".join(json.dumps(r) + "\n" for r in keep), encoding="utf-8")

    def write(self, record: Any) -> None:
        with open(self.path, "a", encoding="utf-8") as f:
            f.write(json.dumps(dataclasses.asdict(record)) + "\n")


# --------------------------------------------------------------------------- job file

def read_job_file(run_dir: str | os.PathLike) -> dict | None:
    """The run's ``job.json`` (None for a run the app did not start, or an unreadable one)."""
    return read_json_dict(Path(run_dir) / JOB_FILE)


def write_job_file(run_dir: str | os.PathLike, info: dict) -> None:
    write_text_atomic(Path(run_dir) / JOB_FILE, json.dumps(info, ensure_ascii=False, indent=1))
