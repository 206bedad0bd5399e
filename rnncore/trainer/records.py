"""What training reports: one ``StepRecord`` per update, one ``EvalRecord`` per
validation, the ``TrainResult`` of a ``Trainer.run`` call (``loss`` in nats per predicted
character, ``bpc = loss / ln 2``), and the ``Callbacks`` that hear of them."""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Iterable

CallbackSpec = Any  # an object with on_step/on_eval/on_checkpoint methods, or a dict of them


@dataclass
class StepRecord:
    """One update (or skipped update). ``tokens`` = predicted characters in this step, all
    ranks (k1 per row for the stream strategies: a re-read prefix is work, not new
    characters); ``tokens_per_s`` over the whole step (data, forward, backward, optimizer);
    ``elapsed_s`` the training time of the whole run so far, resumed parts included."""

    step: int
    epoch: int
    loss: float
    bpc: float
    grad_norm: float
    clipped: bool
    lr: float
    tokens: int
    tokens_per_s: float
    elapsed_s: float
    skipped: bool = False
    event: str = ""


@dataclass
class EvalRecord:
    """One validation at ``step`` (``evaluate.evaluate_model`` over all ranks' val poems);
    ``best_val_loss`` is the lowest so far, ``is_best`` whether this one set it."""

    step: int
    val_loss: float
    val_bpc: float
    val_perplexity: float
    best_val_loss: float
    is_best: bool
    characters: int
    elapsed_s: float


@dataclass
class TrainResult:
    """One ``Trainer.run`` call. ``elapsed_s``/``tokens_per_s`` cover this call's training
    time only (evaluations and checkpoints are not training: ``Trainer._untimed``);
    ``train_loss`` is the token-weighted mean loss of its last 50 non-skipped steps;
    ``stop_reason``: max_steps, stopped, time_budget, early_stopping or diverged."""

    steps: int
    stop_reason: str
    elapsed_s: float
    tokens_per_s: float
    train_loss: float | None
    final_eval: EvalRecord | None
    best_val_loss: float | None
    checkpoint: str | None
    nonfinite_steps: int
    world_size: int = 1
    replica_max_diff: float = 0.0  # data parallel: max |w - w_rank0| at the end
    history: list[StepRecord] = field(default_factory=list)
    evals: list[EvalRecord] = field(default_factory=list)

    @classmethod
    def from_history(cls, history: list[StepRecord], evals: list[EvalRecord],
                     elapsed_s: float, **fields) -> TrainResult:
        """The result of a call that took the steps ``history`` in ``elapsed_s`` seconds;
        ``fields`` are the rest."""
        tokens = sum(r.tokens for r in history)
        last = [r for r in history if not r.skipped][-50:]
        train_loss = (sum(r.loss * r.tokens for r in last) /
                      max(1, sum(r.tokens for r in last))) if last else None
        return cls(elapsed_s=elapsed_s, tokens_per_s=tokens / max(elapsed_s, 1e-9),
                   train_loss=train_loss, history=history, evals=evals, **fields)

    def summary(self) -> dict:
        """JSON-ready summary (what ``train --json`` prints)."""
        ev = self.final_eval

        def num(x):  # JSON has no NaN/inf
            return x if x is None or math.isfinite(x) else None

        return {
            "steps": self.steps,
            "stop_reason": self.stop_reason,
            "elapsed_s": round(self.elapsed_s, 3),
            "chars_per_s": round(self.tokens_per_s, 1),
            "train_loss": num(self.train_loss),
            "val_loss": num(ev.val_loss if ev else None),
            "val_bpc": num(ev.val_bpc if ev else None),
            "val_perplexity": num(ev.val_perplexity if ev else None),
            "best_val_loss": num(self.best_val_loss),
            "nonfinite_steps": self.nonfinite_steps,
            "checkpoint": self.checkpoint,
            "world_size": self.world_size,
            "replica_max_diff": self.replica_max_diff,
            "evals": [{"step": e.step, "elapsed_s": round(e.elapsed_s, 3),
                       "val_bpc": num(e.val_bpc), "val_loss": num(e.val_loss),
                       "characters": e.characters} for e in self.evals],
        }


class Callbacks:
    """Where a run's records go: each callback gets ``on_step(StepRecord)``,
    ``on_eval(EvalRecord)`` and ``on_checkpoint(path)``, those it has, in order."""

    def __init__(self, callbacks: Iterable[CallbackSpec] | CallbackSpec = ()) -> None:
        if callbacks is None:
            callbacks = []
        elif isinstance(callbacks, dict) or not isinstance(callbacks, (list, tuple)):
            callbacks = [callbacks]  # one object (e.g. a jobs._Job) or one dict
        self._callbacks = list(callbacks)

    def add(self, callback: CallbackSpec) -> None:
        self._callbacks.append(callback)

    def emit(self, name: str, arg) -> None:
        for cb in self._callbacks:
            fn = cb.get(name) if isinstance(cb, dict) else getattr(cb, name, None)
            if fn is not None:
                fn(arg)
