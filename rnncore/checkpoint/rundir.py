"""A run directory's layout, with its readers and the writers of its small files::

    step-000123/   a checkpoint (``store``); saved and pruned by ``CheckpointManager``
    latest.json    {"checkpoint": "step-000123", "step": 123}   (``CheckpointManager``)
    best.json      the same for the lowest validation loss, plus its value
    steps.jsonl    one step record a line (``StepLog``, the trainer's history)
    job.json       the app's record of a job (``write_job_file``: who, configs, status)
    .lock          held by the trainer writing the directory (``RunLock``), removed after
"""
from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import json
import os
import re
from pathlib import Path
from typing import Any

from rnncore.checkpoint.files import (BEST_POINTER, JOB_FILE, LATEST_POINTER, LOCK_FILE,
                                      META_FILE, STEP_LOG_FILE, CheckpointError, read_json_dict,
                                      write_error, write_text_atomic)

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

def _parse_record(line: bytes, number: int, path: Path) -> dict:
    try:
        record = json.loads(line)
    except (ValueError, RecursionError) as exc:  # JSONDecodeError, UnicodeDecodeError
        raise CheckpointError(f"{path} is not valid JSON at line {number}: "
                              f"{getattr(exc, 'msg', exc)}") from None
    if not isinstance(record, dict) or not isinstance(record.get("step", 0), (int, float)):
        raise CheckpointError(f"{path} line {number} is not a step record")
    return record


def read_step_records(path: str | os.PathLike) -> list[dict]:
    """The records of a step log; ``path`` is a run directory or the log file itself."""
    path = Path(path)
    if path.is_dir():
        path = path / STEP_LOG_FILE
    try:
        data = path.read_bytes()
    except OSError:
        raise CheckpointError(f"step records not found: {path}") from None
    return [_parse_record(line, number, path)
            for number, line in enumerate(data.splitlines(), 1) if line.strip()]


def _resume_offset(data: bytes, resume_step: int, path: Path) -> int:
    """Where a log resumed from ``resume_step`` continues: after the last complete line of a
    step up to ``resume_step``. A last line without its newline was torn by a failed write
    or a kill and goes too."""
    offset = 0
    for number, line in enumerate(data.splitlines(keepends=True), 1):
        if not line.endswith(b"\n"):
            break
        if line.strip() and _parse_record(line, number, path).get("step", 0) > resume_step:
            break
        offset += len(line)
    return offset


class StepLog:
    """Appends every step record (a dataclass) as one JSON line to ``<run dir>/steps.jsonl``.
    On resume from step n, lines past n are dropped: they belong to the tail of the earlier
    run that no checkpoint kept. Dropping truncates the file at a byte offset, so the lines
    kept are never rewritten (a kill cannot lose them); a failed append is truncated away."""

    def __init__(self, run_dir: str | os.PathLike, resume_step: int):
        os.makedirs(run_dir, exist_ok=True)
        self.path = Path(run_dir) / STEP_LOG_FILE
        if self.path.exists():
            with open(self.path, "r+b") as fh:
                fh.truncate(_resume_offset(fh.read(), resume_step, self.path))
                fh.flush()
                os.fsync(fh.fileno())

    def write(self, record: Any) -> None:
        line = (json.dumps(dataclasses.asdict(record)) + "\n").encode("utf-8")
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o666)
        try:
            start = os.lseek(fd, 0, os.SEEK_END)
            try:
                view = memoryview(line)
                while view:
                    view = view[os.write(fd, view):]
            except OSError as exc:
                with contextlib.suppress(OSError):
                    os.ftruncate(fd, start)  # leave no torn line behind
                raise write_error(str(self.path), exc) from None
        finally:
            os.close(fd)


# --------------------------------------------------------------------------- lock

class RunLock:
    """An exclusive ``flock`` on ``<run dir>/.lock``, so one trainer at a time writes a run
    directory; ``acquire`` raises ``CheckpointError`` naming the holder's pid. The file is
    removed on release (a finished run holds only its own files); the OS drops the lock of
    a killed process, so a stale file never blocks."""

    def __init__(self, run_dir: str | os.PathLike) -> None:
        self.run_dir = Path(run_dir)
        self.path = self.run_dir / LOCK_FILE
        self._fd: int | None = None

    def acquire(self, fresh: bool = False) -> None:
        """Take the lock; ``fresh`` (a new run) also refuses a directory that already holds
        another run's checkpoints."""
        try:
            self.run_dir.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise write_error(f"run directory {self.run_dir}", exc) from None
        while True:
            try:
                fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o666)
            except OSError as exc:
                raise write_error(str(self.path), exc) from None
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                owner = os.read(fd, 32).decode("ascii", "replace").strip()
                os.close(fd)
                raise CheckpointError(f"{self.run_dir} is in use by another trainer"
                                      + (f" (pid {owner})" if owner else "")) from None
            # the previous holder may have removed the file between our open and flock:
            # then we hold a lock on a file nobody else can find; take the one that is there
            try:
                here = os.stat(self.path)
            except FileNotFoundError:
                here = None
            mine = os.fstat(fd)
            if here is not None and (here.st_ino, here.st_dev) == (mine.st_ino, mine.st_dev):
                break
            os.close(fd)
        with contextlib.suppress(OSError):  # the pid only names the holder in errors
            os.ftruncate(fd, 0)
            os.write(fd, f"{os.getpid()}\n".encode("ascii"))
        self._fd = fd
        if fresh and latest_checkpoint(self.run_dir) is not None:
            self.release()
            raise CheckpointError(f"{self.run_dir} already holds a run's checkpoints (resume "
                                  f"it, or choose another directory)")

    def release(self) -> None:
        if self._fd is None:
            return
        with contextlib.suppress(OSError):
            self.path.unlink()  # while still locked: see acquire
        os.close(self._fd)
        self._fd = None


# --------------------------------------------------------------------------- job file

def read_job_file(run_dir: str | os.PathLike) -> dict | None:
    """The run's ``job.json`` (None for a run the app did not start, or an unreadable one)."""
    return read_json_dict(Path(run_dir) / JOB_FILE)


def write_job_file(run_dir: str | os.PathLike, info: dict) -> None:
    write_text_atomic(Path(run_dir) / JOB_FILE, json.dumps(info, ensure_ascii=False, indent=1))
