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
    """Read step records from a JSON-lines file (one record per line) or a JSON list, or
    a checkpoint/run directory holding ``steps.jsonl`` or ``meta.json`` with ``steps``."""
    path = Path(path)
    if path.is_dir():
        for name in ("steps.jsonl", "steps.json", "meta.json"):
            if (path / name).is_file():
                path = path / name
                break
        else:
            raise GradFlowError(f"{path} holds no step records (steps.jsonl)")
    if not path.is_file():
        raise GradFlowError(f"step records not found: {path}")
    text = path.read_text(encoding="utf-8")
    try:
        if path.suffix == ".jsonl":
            records = [json.loads(line) for line in text.splitlines() if line.strip()]
        else:
            data = json.loads(text)
            records = data.get("steps", data.get("history", [])) if isinstance(data, dict) \
                else data
    except json.JSONDecodeError as exc:
        raise GradFlowError(f"{path} is not valid JSON: {exc.msg}") from None
    if not isinstance(records, list):
        raise GradFlowError(f"{path}: step records must be a list")
    if clip_threshold is None and path.name == "meta.json" and isinstance(data, dict):
        clip_threshold = (data.get("train_config") or {}).get("clip_norm")
    return clipping_frame(records, clip_threshold)

