"""Run directories: naming new ones, listing them for the pickers, reading one back.

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

from rnncore.checkpoint import (CheckpointError, latest_checkpoint, read_job_file, read_meta,
                                read_step_records)
from rnncore.checkpoint import list_checkpoints as list_checkpoints_in
from rnncore.jobs.job import ACTIVE, JobError, JobSnapshot, step_row
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
    """A run directory's latest checkpoint, for pickers. ``status``: the app job's
    (``job.json``), or ``"cli"`` for a run trained with the command line."""

    path: str
    run: str
    step: int
    cell: str
    hidden_size: int
    num_layers: int
    val_bpc: float | None
    created: str
    label: str
    run_dir: str = ""
    status: str = "cli"   # the job's ("training", "finished", "interrupted", ...) or "cli"

    def describe(self) -> str:
        bpc = f", val {self.val_bpc:.2f} bpc" if self.val_bpc is not None else ""
        state = (" (training)" if self.status in ACTIVE
                 else " (interrupted)" if self.status == "interrupted" else "")
        return f"{self.run} — {self.cell.upper()} {self.num_layers}×{self.hidden_size}, " \
               f"step {self.step}{bpc}{state}"


def list_runs(runs_dir: str | os.PathLike | None = None, session_id: str | None = None,
              live: Collection[str] | None = None) -> list[CheckpointInfo]:
    """Latest checkpoint of every run under ``runs_dir`` (as TensorBoard lists a logdir:
    the app's runs of every session, still training or not, and the command line's),
    newest first. With ``session_id``, runs the app started for *other* sessions are left
    out. Runs without a checkpoint and unreadable ones are skipped.

    With ``live`` (the names of the run directories that jobs of this process train), a
    run whose job.json says it is training but that no live job holds is "interrupted":
    its server died mid-run, and it can be resumed."""
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
        status = str((job or {}).get("status", "cli"))
        if status in ACTIVE and live is not None and run_dir.name not in live:
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
                label=(job or {}).get("label", run_dir.name), run_dir=str(run_dir),
                status=status))
        except (OSError, ValueError, KeyError, TypeError):
            continue
    return sorted(found, key=lambda c: c.created, reverse=True)


list_checkpoints = list_runs  # its former name, kept for importers (tests)


def run_snapshot(run_dir: str | os.PathLike) -> JobSnapshot:
    """A run on disk as a ``JobSnapshot``: its step log (``steps.jsonl``), the validation
    of each kept checkpoint, the status and configs of its ``job.json`` or latest
    checkpoint. For runs this process is not training (another session's, the CLI's)."""
    run_dir = Path(run_dir)
    job = read_job_file(run_dir) or {}
    try:
        steps = [step_row(r) for r in read_step_records(run_dir)]
    except CheckpointError:
        steps = []
    evals, checkpoints, meta = [], [], {}
    for step, path in list_checkpoints_in(run_dir):
        try:
            meta = read_meta(path)
        except CheckpointError:
            continue
        checkpoints.append(str(path))
        if (meta.get("metrics") or {}).get("val_bpc") is not None:
            evals.append({"step": step, "val_bpc": meta["metrics"]["val_bpc"]})
    train_config = job.get("train_config") or meta.get("train_config") or {}
    status = str(job.get("status", "cli"))
    message = str(job.get("message") or f"Trained with the command line to step "
                                        f"{int(meta.get('step', 0)):,}")
    return JobSnapshot(
        job_id=run_dir.name, status=status, message=message,
        run_dir=str(run_dir), label=str(job.get("label", run_dir.name)),
        progress=0.0 if status in ACTIVE else 1.0,
        elapsed_s=(steps[-1]["elapsed_s"] or 0.0) if steps else 0.0, eta_s=None,
        step=steps[-1]["step"] if steps else int(meta.get("step", 0)), steps=steps,
        evals=evals, samples=[], checkpoints=checkpoints,
        clip_norm=float(train_config.get("clip_norm") or 0.0), budget_s=None,
        model_config=job.get("model_config") or meta.get("model_config") or {},
        train_config=train_config,
        data_stats={"vocab_size": len(meta["vocab"].get("itos", []))}
        if isinstance(meta.get("vocab"), dict) else {})
