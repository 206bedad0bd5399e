"""The name of every file the checkpoint package writes, and how it writes them.

Small files (pointers, the job file) are replaced atomically: written to a temporary
sibling, fsynced, then ``os.replace``d, so a reader sees the old or the new content.
A failed write (a full disk) becomes one ``CheckpointError`` line (``write_error``).
"""
from __future__ import annotations

import hashlib
import json
import os
import tempfile
from pathlib import Path

# in a checkpoint directory
MODEL_FILE, META_FILE, OPTIMIZER_FILE = "model.safetensors", "meta.json", "optimizer.pt"
CHECKPOINT_FILES = (MODEL_FILE, META_FILE, OPTIMIZER_FILE)
# in a run directory, next to its step-NNNNNN checkpoints
LATEST_POINTER, BEST_POINTER = "latest.json", "best.json"
STEP_LOG_FILE = "steps.jsonl"
JOB_FILE = "job.json"
LOCK_FILE = ".lock"  # held (flock) by the one trainer writing the run directory
# meta.json holds configs, a vocabulary and RNG states (the bundled one: 64 KB); the cap keeps
# a hostile one from costing gigabytes to parse
MAX_META_BYTES = 8 * 2**20


class CheckpointError(ValueError):
    """A checkpoint that cannot be saved or loaded (one-line message)."""


def write_error(what: str, exc: BaseException, note: str = "") -> CheckpointError:
    """The one-line error for a write that failed (``OSError``: its errno's text, e.g. "No
    space left on device"; writers that wrap it in their own error: its first line)."""
    errno = getattr(exc, "errno", None)
    reason = os.strerror(errno) if errno else (str(exc).strip().splitlines() or [""])[0][:200]
    return CheckpointError(f"cannot write {what}: {reason or type(exc).__name__}{note}")


def fsync_file(path: Path) -> None:
    with open(path, "rb") as fh:
        os.fsync(fh.fileno())


def fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:  # some platforms cannot open directories; rename is still atomic
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def write_text_atomic(path: Path, text: str) -> None:
    """Write a small file via temp file + fsync + os.replace (readers see old or new)."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    fsync_dir(path.parent)


def read_json_dict(path: Path) -> dict | None:
    """A small JSON object file, or None when it is missing, unreadable or not an object."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, RecursionError):
        return None
    return data if isinstance(data, dict) else None
