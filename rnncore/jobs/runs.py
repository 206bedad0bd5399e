"""Run directories: naming new ones and listing the finished ones for the pickers.

Every job writes a run directory under ``runs_dir`` (env ``RNNCORE_RUNS_DIR``, default
``./runs``) with ``job.json`` and the trainer's ``step-NNNNNN`` checkpoints
(``rnncore.checkpoint`` reads and writes both).
"""
from __future__ import annotations

import datetime as _dt
import os
import re
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Collection

from rnncore.checkpoint import latest_checkpoint, read_job_file, read_meta
from rnncore.jobs.job import ACTIVE, JobError
from rnncore.model import ModelConfig


def default_runs_dir() -> Path:
    return Path(os.environ.get("RNNCORE_RUNS_DIR") or "runs")


def new_run_dir(runs_dir: Path, model_config: ModelConfig) -> Path:
    """A fresh, empty ``<stamp>-<cell><hidden>-<hex>`` directory under ``runs_dir``."""
    runs_dir.mkdir(parents=True, exist_ok=True)
    stamp = _dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    cell = re.sub(r"[^a-z0-9]", "", model_config.cell.lower())
    for _ in range(100):
        name = f"{stamp}-{cell}{model_config.hidden_size}-{uuid.uuid4().hex[:6]}"
        path = runs_dir / name
        try:
            path.mkdir()  # never reuse (and so never touch) an existing run
            return path
        except FileExistsError:
            continue
    raise JobError(f"cannot create a new run directory under {runs_dir}")


@dataclass
class CheckpointInfo:
    """A run directory's latest checkpoint, for pickers."""

    path: str
    run: str
    step: int
    cell: str
    hidden_size: int
    num_layers: int
    val_bpc: float | None
    created: str
    label: str
    status: str = ""   # the job's ("finished", "stopped", "interrupted", ...); "" for the CLI

    def describe(self) -> str:
        bpc = f", val {self.val_bpc:.2f} bpc" if self.val_bpc is not None else ""
        note = " (interrupted)" if self.status == "interrupted" else ""
        return f"{self.run} — {self.cell.upper()} {self.num_layers}×{self.hidden_size}, " \
               f"step {self.step}{bpc}{note}"


def list_runs(runs_dir: str | os.PathLike | None = None, session_id: str | None = None,
              live: Collection[str] | None = None) -> list[CheckpointInfo]:
    """Latest checkpoint of every run under ``runs_dir``, newest first. With
    ``session_id``, runs the app started for *other* sessions are left out (runs made by the
    CLI, without a ``job.json``, are always listed). Unreadable runs are skipped.

    A run whose job.json says it is training is left out, unless ``live`` (the names of
    the run directories that jobs of this process train) is given and does not hold it:
    then its server died mid-run and it is listed as "interrupted" (resumable)."""
    root = Path(runs_dir) if runs_dir is not None else default_runs_dir()
    if not root.is_dir():
        return []
    found = []
    for run_dir in root.iterdir():
        if not run_dir.is_dir() or run_dir.name.startswith("."):
            continue
        job = read_job_file(run_dir)
        if session_id is not None and job is not None and job.get("session_id") != session_id:
            continue
        status = str((job or {}).get("status", ""))
        if status in ACTIVE:
            if live is None or run_dir.name in live:
                continue  # still training
            status = "interrupted"
        ckpt = latest_checkpoint(run_dir)
        if ckpt is None:
            continue
        try:
            meta = read_meta(ckpt)
            mc = meta["model_config"]
            metrics = meta.get("metrics") or {}
            found.append(CheckpointInfo(
                path=str(ckpt), run=run_dir.name, step=int(meta.get("step", 0)),
                cell=str(mc["cell"]), hidden_size=int(mc["hidden_size"]),
                num_layers=int(mc["num_layers"]), val_bpc=metrics.get("val_bpc"),
                created=str(meta.get("created", "")),
                label=(job or {}).get("label", run_dir.name), status=status))
        except (OSError, ValueError, KeyError, TypeError):
            continue
    return sorted(found, key=lambda c: c.created, reverse=True)


list_checkpoints = list_runs  # its former name, kept for importers (tests)
