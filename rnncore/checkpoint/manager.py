"""``CheckpointManager``: the writer of a run directory's checkpoints and pointers.

It keeps the newest ``keep_last`` ``step-NNNNNN`` checkpoints plus the best by validation
loss, points ``latest.json`` / ``best.json`` at them (replaced atomically) and cleans up
after a save that crashed.
"""
from __future__ import annotations

import json
import math
import os
import shutil
from pathlib import Path
from typing import Any

import torch

from rnncore.checkpoint.files import (BEST_POINTER, LATEST_POINTER, read_json_dict,
                                      write_error, write_text_atomic)
from rnncore.checkpoint.rundir import (best_checkpoint, latest_checkpoint, list_checkpoints,
                                       pointed_checkpoint, step_dir_name)
from rnncore.checkpoint.store import Checkpoint, load_checkpoint, save_checkpoint
from rnncore.data import Vocab
from rnncore.model import ModelConfig


class CheckpointManager:
    """Saves ``run_dir/step-NNNNNN`` checkpoints, keeps the newest ``keep_last`` plus the
    best by ``best_metric`` (lower is better), and maintains ``latest.json``/``best.json``."""

    def __init__(self, run_dir: str | os.PathLike, keep_last: int = 3,
                 best_metric: str = "val_loss") -> None:
        if keep_last < 1:
            raise ValueError(f"keep_last must be at least 1, got {keep_last}")
        self.run_dir = Path(run_dir)
        self.keep_last = keep_last
        self.best_metric = best_metric
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self._remove_stale_temps()

    def _remove_stale_temps(self) -> None:
        """Clean up after a save that crashed: ``.step-N.tmp-*`` are never complete
        checkpoints; ``.step-N.old-*`` is the replaced copy of ``step-N``, put back if the
        crash came before the new one was renamed into place; ``.latest.json.*.tmp`` (and
        best's) are pointers never renamed into place."""
        pointer_temps = tuple(f".{name}." for name in (LATEST_POINTER, BEST_POINTER))
        for child in sorted(self.run_dir.iterdir()):
            if child.name.startswith(pointer_temps) and child.name.endswith(".tmp"):
                child.unlink(missing_ok=True)
                continue
            if not child.name.startswith(".step-") or not child.is_dir():
                continue
            if ".tmp-" in child.name:
                shutil.rmtree(child, ignore_errors=True)
            elif ".old-" in child.name:
                original = self.run_dir / child.name[1:].split(".old-")[0]
                if original.exists():
                    shutil.rmtree(child, ignore_errors=True)
                else:
                    os.rename(child, original)

    def path_for(self, step: int) -> Path:
        return self.run_dir / step_dir_name(step)

    def best_value(self) -> float | None:
        data = read_json_dict(self.run_dir / BEST_POINTER)
        if data and best_checkpoint(self.run_dir) is not None:
            value = data.get(self.best_metric)
            if isinstance(value, (int, float)):
                return float(value)
        return None

    def save(self, model: torch.nn.Module, vocab: Vocab, model_config: ModelConfig, *,
             step: int, metrics: dict | None = None, **kwargs: Any) -> Path:
        """Save step ``step`` (same keywords as ``save_checkpoint``), update the pointers,
        prune old checkpoints. Saving a step that exists replaces it."""
        path = save_checkpoint(self.path_for(step), model, vocab, model_config, step=step,
                               metrics=metrics, overwrite=True, **kwargs)
        try:
            write_text_atomic(self.run_dir / LATEST_POINTER,
                              json.dumps({"checkpoint": path.name, "step": int(step)}))
            value = (metrics or {}).get(self.best_metric)
            if isinstance(value, (int, float)) and math.isfinite(value):
                best = self.best_value()
                if best is None or value <= best:
                    write_text_atomic(
                        self.run_dir / BEST_POINTER,
                        json.dumps({"checkpoint": path.name, "step": int(step),
                                    self.best_metric: float(value)}),
                    )
        except OSError as exc:
            raise write_error(f"the pointers of {self.run_dir}", exc,
                              f" ({path.name} itself is saved)") from None
        self._prune()
        return path

    def _prune(self) -> None:
        keep = {p for _, p in list_checkpoints(self.run_dir)[-self.keep_last:]}
        for pointer in (LATEST_POINTER, BEST_POINTER):
            target = pointed_checkpoint(self.run_dir, pointer)
            if target is not None:
                keep.add(target)
        for _, path in list_checkpoints(self.run_dir):
            if path not in keep:
                # rename first: a crash mid-delete must not leave a half checkpoint that
                # still looks complete (the .tmp- name is cleaned up on the next start)
                doomed = path.parent / f".{path.name}.tmp-delete"
                try:
                    os.rename(path, doomed)
                except OSError:
                    continue
                shutil.rmtree(doomed, ignore_errors=True)

    def checkpoints(self) -> list[Path]:
        return [p for _, p in list_checkpoints(self.run_dir)]

    def latest(self) -> Path | None:
        return latest_checkpoint(self.run_dir)

    def best(self) -> Path | None:
        return best_checkpoint(self.run_dir)

    def load_latest(self, map_location: str | torch.device = "cpu") -> Checkpoint | None:
        path = self.latest()
        return None if path is None else load_checkpoint(path, map_location)
