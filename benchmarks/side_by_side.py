"""Trainings started together, one torch thread each, so they see the same machine load and
the same budget; and the one evaluator every trained model is scored with.

``start(name, argv, log)`` launches a command (stdout captured, stderr to ``log``);
``finish(launched)`` waits for all of them and returns each one's last stdout line parsed as
JSON (``python -m rnncore train --json`` and ``python -m benchmarks.plain_loop`` both end
with one). ``score_checkpoint(path)`` is every held-out poem's bits per character of a
saved model (``rnncore.trainer.evaluate_model``: whole poems from the zero state, exact over
the full vocabulary). Used by ``benchmarks/measure_qps.py`` and ``scripts/quality_record.py``.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import IO

ROOT = Path(__file__).resolve().parents[1]


class SideBySideError(ValueError):
    """A training that failed or printed no JSON summary (one line, with its log)."""


def one_thread_env() -> dict:
    """The environment of every run: one intra-op thread, this checkout importable."""
    path = os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH")) if p)
    return dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", PYTHONPATH=path)


def rnncore_train(*flags: str) -> list[str]:
    """``python -m rnncore train FLAGS --json --no-progress`` with this interpreter."""
    return [sys.executable, "-m", "rnncore", "train", *flags, "--json", "--no-progress"]


@dataclass
class Launched:
    name: str
    proc: subprocess.Popen
    log: IO
    log_path: Path


def start(name: str, argv: list[str], log_path: str | os.PathLike) -> Launched:
    """Start ``argv`` now (cwd: the checkout), stderr into ``log_path``."""
    log_path = Path(log_path)
    log_path.parent.mkdir(parents=True, exist_ok=True)
    log = open(log_path, "w", encoding="utf-8")
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=log, env=one_thread_env(),
                            text=True, cwd=ROOT)
    return Launched(name, proc, log, log_path)


def finish(launched: list[Launched]) -> dict[str, dict]:
    """Wait for every launched run; {name: its JSON summary}. A failed run raises
    ``SideBySideError`` after all have ended (the others are not killed: they finish)."""
    out, failed = {}, []
    for run in launched:
        stdout, _ = run.proc.communicate()
        run.log.close()
        lines = stdout.strip().splitlines()
        try:
            if run.proc.returncode != 0 or not lines:
                raise ValueError
            out[run.name] = json.loads(lines[-1])
        except ValueError:
            failed.append(f"{run.name} (rc {run.proc.returncode}; see {run.log_path})")
    if failed:
        raise SideBySideError(f"failed: {', '.join(failed)}")
    return out


def held_out(data_config=None):
    """``prepare_data(data_config or DataConfig())``: the split and vocabulary the runs saw."""
    from rnncore.data import DataConfig, prepare_data

    return prepare_data(data_config or DataConfig())


def score_model(model, poems: list[list[int]]) -> dict:
    """The one evaluator: ``evaluate_model`` on ``poems`` (bpc, loss, perplexity, characters),
    every poem from the zero state for both trainers (the plain loop has no start state)."""
    from rnncore.trainer import evaluate_model

    m = evaluate_model(model, poems, from_start_state=False)
    return {k: m[k] for k in ("bpc", "loss", "perplexity", "characters")}


def score_checkpoint(path: str | os.PathLike, which: str = "latest") -> dict:
    """A run's ``which`` ("latest" or "best") checkpoint on every held-out poem of the data
    it was trained on."""
    import torch

    from rnncore.checkpoint import best_checkpoint, latest_checkpoint, load_checkpoint

    torch.set_num_threads(1)
    src = {"latest": latest_checkpoint, "best": best_checkpoint}[which](path)
    if src is None:
        raise SideBySideError(f"{path} holds no {which} checkpoint")
    ck = load_checkpoint(src, load_optimizer=False)
    state = ck.trainer_state
    data = held_out(state.data_config if state is not None else None)
    return {"checkpoint": str(src), "step": ck.meta.get("step"), "val_poems": len(data.val),
            "head": ck.model_config.head,
            **score_model(ck.model, data.val)}
