"""Gradient clipping as a training run logged it: one row per optimiser step.

With g the pre-clip global gradient norm and c the run's ``clip_norm``, a step is
clipped when g > c, and then its gradient is scaled by c / g; c <= 0 means clipping off.
"""
from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Iterable

import pandas as pd

from rnncore.checkpoint import CheckpointError, latest_checkpoint, read_meta, read_step_records
from rnncore.gradflow.config import GradFlowError

CLIP_COLUMNS = ["step", "grad_norm", "clip_threshold", "clipped"]


def clipping_frame(records: Iterable, clip_threshold: float | None = None) -> pd.DataFrame:
    """Step records (``trainer.StepRecord`` objects or dicts with ``step``, ``grad_norm`` =
    pre-clip global norm, ``clipped``, optionally ``clip_threshold``/``clip_norm``) ->
    DataFrame with CLIP_COLUMNS. The threshold is the record's own or ``clip_threshold``
    (the run's ``TrainConfig.clip_norm``; 0 = clipping off -> nan). A missing ``clipped``
    is derived as grad_norm > threshold."""
    rows = []
    for i, rec in enumerate(records):
        get = rec.get if isinstance(rec, dict) else (lambda k, d=None, r=rec: getattr(r, k, d))
        norm = get("grad_norm")
        if norm is None:
            raise GradFlowError(f"step record {i} has no grad_norm")
        threshold = get("clip_threshold", get("clip_norm", None))
        threshold = clip_threshold if threshold is None else threshold
        threshold = None if threshold is not None and float(threshold) <= 0 else threshold
        clipped = get("clipped")
        if clipped is None:
            clipped = threshold is not None and float(norm) > float(threshold)
        rows.append((int(get("step", i)), float(norm),
                     math.nan if threshold is None else float(threshold), bool(clipped)))
    return pd.DataFrame(rows, columns=CLIP_COLUMNS)


def clip_rate(frame: pd.DataFrame) -> float:
    """Fraction of steps whose gradient was clipped (nan for no steps)."""
    return float(frame["clipped"].mean()) if len(frame) else math.nan


def load_step_records(path: str | Path, clip_threshold: float | None = None) -> pd.DataFrame:
    """Step records of a run: its directory or step log (JSON lines, as the trainer writes
    it, read through ``rnncore.checkpoint``), or a ``.json`` file holding a list of records
    (or a dict with ``steps``/``history``). Without ``clip_threshold`` a run directory's
    latest checkpoint gives the run's ``clip_norm``."""
    path = Path(path)
    if path.suffix == ".json":
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except OSError:
            raise GradFlowError(f"step records not found: {path}") from None
        except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as exc:
            raise GradFlowError(f"{path} is not valid JSON: {exc}") from None
        records = data.get("steps", data.get("history")) if isinstance(data, dict) else data
        if not isinstance(records, list):
            raise GradFlowError(f"{path}: step records must be a list")
    else:
        try:
            records = read_step_records(path)
        except CheckpointError as exc:
            raise GradFlowError(str(exc)) from None
        if clip_threshold is None and path.is_dir():
            clip_threshold = _run_clip_norm(path)
    return clipping_frame(records, clip_threshold)


def _run_clip_norm(run_dir: Path) -> float | None:
    latest = latest_checkpoint(run_dir)
    if latest is None:
        return None
    try:
        return (read_meta(latest).get("train_config") or {}).get("clip_norm")
    except CheckpointError:
        return None
