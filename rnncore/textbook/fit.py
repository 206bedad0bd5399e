"""A small training loop for the chapter's architecture comparisons (``textbook.patterns``,
``textbook.depth``): any module ``model(tokens (B, T)) -> (logits (B, T, V), state)``,
trained on whole poems under one budget, so every contestant gets the same one.

Loss per step: the mean over real targets of ``-log softmax(logits)[target]`` (padding
skipped), Adam, gradient norm clipped. The budget is a number of steps or a number of
seconds of this process's CPU time (``time.process_time``): on one torch thread that is the
wall clock an idle machine would show, and other jobs sharing the cores do not shift it.
Held-out bits per character come from ``trainer.evaluate_model`` (whole poems, zero state).
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F

from rnncore.data import IGNORE_INDEX, poem_batches
from rnncore.textbook.results import JSONResult
from rnncore.trainer.evaluate import LN2, evaluate_model


class FitError(ValueError):
    """A bad training budget (one-line message)."""


@dataclass
class FitRecord(JSONResult):
    """One model's run: ``steps`` taken, ``cpu_seconds`` spent on them (evaluation
    excluded), ``sec_per_step``, the final held-out ``val_bpc``; ``curve`` holds
    [step, cpu seconds, held-out bpc] at evenly spaced points of the budget."""

    steps: int
    cpu_seconds: float
    sec_per_step: float
    val_bpc: float
    train_bpc: float
    curve: list = field(default_factory=list)


def check_budget(steps, seconds) -> None:
    """Exactly one of ``steps`` (positive int) and ``seconds`` (positive number)."""
    if (steps is None) == (seconds is None):
        raise FitError("give exactly one budget: a number of steps or of CPU seconds")
    if steps is not None and (isinstance(steps, bool) or not isinstance(steps, int)
                              or steps < 1):
        raise FitError(f"steps must be a positive integer, got {steps!r}")
    if seconds is not None and not (isinstance(seconds, (int, float)) and seconds > 0):
        raise FitError(f"seconds must be positive, got {seconds!r}")


def fit(model: torch.nn.Module, train: list[list[int]], val: list[list[int]], *,
        steps: int | None = None, seconds: float | None = None, batch_size: int = 32,
        lr: float = 3e-3, clip: float = 1.0, seed: int = 0, evals: int = 3) -> FitRecord:
    """Train ``model`` on the encoded poems ``train`` until the budget is spent; score
    ``val`` (bits per character) ``evals`` times along the way and at the end."""
    check_budget(steps, seconds)
    if not train or not val:
        raise FitError("need training and held-out poems")
    torch.manual_seed(seed)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    # evaluation points, in the budget's own unit (steps or CPU seconds)
    total = float(steps if steps is not None else seconds)
    marks = [total * (k + 1) / (evals + 1) for k in range(evals)] if evals > 0 else []
    curve, done, spent, epoch, recent = [], 0, 0.0, 0, []
    model.train()
    while True:
        for batch in poem_batches(train, batch_size, seed=seed, epoch=epoch):
            start = time.process_time()
            logits, _ = model(batch.inputs)
            loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]),
                                   batch.targets.reshape(-1), ignore_index=IGNORE_INDEX)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), clip)
            opt.step()
            spent += time.process_time() - start
            done += 1
            recent = (recent + [float(loss.detach()) / LN2])[-20:]
            used = done if steps is not None else spent
            if marks and used >= marks[0]:
                marks.pop(0)
                curve.append([done, spent, evaluate_model(model, val)["bpc"]])
            if used >= total:
                bpc = evaluate_model(model, val)["bpc"]
                curve.append([done, spent, bpc])
                return FitRecord(steps=done, cpu_seconds=spent, sec_per_step=spent / done,
                                 val_bpc=bpc, train_bpc=sum(recent) / len(recent),
                                 curve=curve)
        epoch += 1


def parameter_count(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
