"""Training a ``CharRNN``: full, truncated and randomized BPTT (the window rule, keep factors
and window loss are ``rnncore.truncation``'s), clipping, schedules, callbacks.

Rooms, everything re-exported here:

    config     TrainConfig (+ TrainConfigError, the choices), lr_factor, resolve_device,
               RESUME_OVERRIDABLE
    optimizer  make_optimizer
    records    StepRecord, EvalRecord, TrainResult, Callbacks
    evaluate   evaluate_model, metrics_from_sums
    start_state  estimate_start_state: the state a poem starts from
    feed       WindowFeed: the windows in order, the carried state and prefix
    guard      params_finite, Snapshot: the non-finite guard's last good state
    resume     saved_state, restore: a checkpoint's state back into a trainer
    loop       Trainer: one step, evaluation, checkpoints and resume, run
"""
from rnncore.trainer.config import (DEVICES, LR_SCHEDULES, OPTIMIZERS, RESUME_OVERRIDABLE,
                                    STRATEGIES, TrainConfig, TrainConfigError, lr_factor,
                                    resolve_device)
from rnncore.trainer.evaluate import evaluate_by_form, evaluate_model, metrics_from_sums
from rnncore.trainer.start_state import estimate_start_state
from rnncore.trainer.feed import WindowFeed
from rnncore.trainer.loop import Trainer
from rnncore.trainer.optimizer import make_optimizer
from rnncore.trainer.records import CallbackSpec, Callbacks, EvalRecord, StepRecord, TrainResult
from rnncore.truncation import draw_keep_factors, window_loss

__all__ = [
    "STRATEGIES", "OPTIMIZERS", "LR_SCHEDULES", "DEVICES", "RESUME_OVERRIDABLE", "TrainConfig",
    "TrainConfigError", "lr_factor", "resolve_device", "make_optimizer", "StepRecord",
    "EvalRecord", "TrainResult", "Callbacks", "CallbackSpec", "evaluate_model", "evaluate_by_form",
    "metrics_from_sums", "estimate_start_state", "WindowFeed", "Trainer", "draw_keep_factors", "window_loss",
]
