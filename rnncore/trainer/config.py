"""``TrainConfig``: how to train, validated on construction; the LR schedule and the device.

``lr_factor`` is the schedule multiplier; the update's LR is
``lr * lr_scale * lr_factor(cfg, step)`` (``lr_scale`` starts at 1 and shrinks after each
non-finite step, see ``loop``).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from rnncore.configs import DictConfig

STRATEGIES = ("full", "truncated", "randomized")


def streams_poems(strategy: str) -> bool:
    """True if ``strategy`` trains on the poems as one stream with the state carried from
    poem to poem (truncated, randomized); "full" reads every poem whole from zeros."""
    return strategy != "full"
OPTIMIZERS = ("adam", "sgd")
LR_SCHEDULES = ("none", "cosine", "step")
DEVICES = ("auto", "cpu", "cuda")
# the fields a resumed run may change: budgets, device, evaluation and checkpoint settings
RESUME_OVERRIDABLE = ("max_steps", "max_minutes", "device", "out_dir", "checkpoint_every",
                      "checkpoint_minutes", "keep_last", "eval_every", "eval_max_poems",
                      "patience")


class TrainConfigError(ValueError):
    """An invalid training setting (one-line message)."""


@dataclass
class TrainConfig(DictConfig):
    """How to train. ``batch_size`` is per process (data parallel multiplies it)."""

    config_error = TrainConfigError

    strategy: str = "truncated"
    truncation_len: int = 64            # k2: steps backpropagated through
    update_interval: int | None = None  # k1: new tokens per update; None -> truncation_len
    randomized_keep_prob: float = 0.9   # p: chance the gradient passes one more edge back
    batch_size: int = 32
    optimizer: str = "adam"
    lr: float = 2e-3
    momentum: float = 0.0               # SGD only
    weight_decay: float = 0.0
    lr_schedule: str = "none"
    warmup_steps: int = 0
    lr_step_size: int = 1000            # "step": multiply by lr_gamma every lr_step_size
    lr_gamma: float = 0.5
    min_lr_ratio: float = 0.0           # "cosine": floor as a fraction of lr
    clip_norm: float = 1.0              # global L2 norm; 0 = off
    max_steps: int | None = 1000
    max_minutes: float | None = None    # training time: evaluations and checkpoints not counted
    eval_every: int = 200               # 0 = only at the end
    eval_batch_size: int = 64
    eval_max_poems: int | None = None
    patience: int = 0                   # evaluations without a new best; 0 = off
    seed: int = 0
    device: str = "auto"
    checkpoint_every: int = 0           # 0 = only at the end (when out_dir is set)
    checkpoint_minutes: float | None = None  # also save when this much time has passed
    keep_last: int = 3
    out_dir: str | None = None
    snapshot_every: int = 50
    nonfinite_lr_factor: float = 0.5
    max_nonfinite: int = 5

    def __post_init__(self) -> None:
        def bad(msg: str) -> TrainConfigError:
            return TrainConfigError(msg)

        def positive_int(name: str, allow_zero: bool = False, allow_none: bool = False) -> None:
            value = getattr(self, name)
            if value is None and allow_none:
                return
            low = 0 if allow_zero else 1
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                kind = "a non-negative" if allow_zero else "a positive"
                raise bad(f"{name} must be {kind} integer, got {value!r}")

        if self.strategy not in STRATEGIES:
            raise bad(f"unknown strategy {self.strategy!r} (choose from {', '.join(STRATEGIES)})")
        if self.optimizer not in OPTIMIZERS:
            raise bad(f"unknown optimizer {self.optimizer!r} (choose from {', '.join(OPTIMIZERS)})")
        if self.lr_schedule not in LR_SCHEDULES:
            raise bad(f"unknown lr_schedule {self.lr_schedule!r} "
                      f"(choose from {', '.join(LR_SCHEDULES)})")
        if self.device not in DEVICES and not str(self.device).startswith("cuda:"):
            raise bad(f"unknown device {self.device!r} (choose from {', '.join(DEVICES)})")
        for name in ("truncation_len", "batch_size", "lr_step_size", "eval_batch_size",
                     "keep_last", "snapshot_every", "max_nonfinite"):
            positive_int(name)
        for name in ("warmup_steps", "eval_every", "patience", "checkpoint_every", "seed"):
            positive_int(name, allow_zero=True)
        positive_int("update_interval", allow_none=True)
        positive_int("max_steps", allow_none=True)
        positive_int("eval_max_poems", allow_none=True)
        if self.update_interval is None:
            self.update_interval = self.truncation_len
        if self.update_interval > self.truncation_len:
            raise bad(f"update_interval (k1={self.update_interval}) cannot exceed "
                      f"truncation_len (k2={self.truncation_len})")
        if not 0.0 < float(self.randomized_keep_prob) <= 1.0:
            raise bad(f"randomized_keep_prob must be in (0, 1], got {self.randomized_keep_prob}")
        for name in ("lr", "lr_gamma"):
            value = getattr(self, name)
            if not _finite(value) or value <= 0:
                raise bad(f"{name} must be a positive number, got {value!r}")
        if not isinstance(self.momentum, (int, float)) or not 0.0 <= self.momentum < 1.0:
            raise bad(f"momentum must be in [0, 1), got {self.momentum!r}")
        if not isinstance(self.min_lr_ratio, (int, float)) or not 0.0 <= self.min_lr_ratio <= 1.0:
            raise bad(f"min_lr_ratio must be in [0, 1], got {self.min_lr_ratio!r}")
        if not _finite(self.weight_decay) or self.weight_decay < 0:
            raise bad(f"weight_decay must be a finite number >= 0, got {self.weight_decay!r}")
        if not _finite(self.clip_norm) or not self.clip_norm >= 0:
            raise bad(f"clip_norm must be a finite number >= 0 (0 = off), got {self.clip_norm!r}")
        if not 0.0 < float(self.nonfinite_lr_factor) <= 1.0:
            raise bad(f"nonfinite_lr_factor must be in (0, 1], got {self.nonfinite_lr_factor}")
        for name in ("max_minutes", "checkpoint_minutes"):
            value = getattr(self, name)
            if value is not None and (not _finite(value) or not value > 0):
                raise bad(f"{name} must be a finite positive number, got {value!r}")
        if self.max_steps is None and self.max_minutes is None and self.patience == 0:
            raise bad("set max_steps, max_minutes or patience: otherwise training never stops")
        if self.patience and not self.eval_every:
            raise bad("early stopping (patience) needs eval_every > 0")
        if self.lr_schedule == "cosine" and self.max_steps is None:
            raise bad("lr_schedule 'cosine' needs max_steps (the length of the decay)")
        if self.out_dir is not None:
            self.out_dir = str(self.out_dir)


def _finite(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) \
        and math.isfinite(value)


def lr_factor(cfg: TrainConfig, step: int) -> float:
    """Schedule multiplier at ``step`` (0-based index of the update about to happen).

    warm-up: ``(step + 1) / warmup_steps`` for ``step < warmup_steps``; then
    ``cosine``: ``m + (1 - m) * (1 + cos(pi * u)) / 2``, ``u = (step - warmup) /
    (max_steps - warmup)`` clamped to [0, 1], ``m = min_lr_ratio``;
    ``step``: ``lr_gamma ** ((step - warmup) // lr_step_size)``; ``none``: 1.
    """
    if step < cfg.warmup_steps:
        return (step + 1) / cfg.warmup_steps
    k = step - cfg.warmup_steps
    if cfg.lr_schedule == "cosine":
        span = max(1, (cfg.max_steps or 1) - cfg.warmup_steps)
        u = min(1.0, k / span)
        return cfg.min_lr_ratio + (1 - cfg.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * u))
    if cfg.lr_schedule == "step":
        return cfg.lr_gamma ** (k // cfg.lr_step_size)
    return 1.0


def resolve_device(device: str) -> torch.device:
    """``auto`` -> ``cuda`` if available else ``cpu``; asking for CUDA without one is an error."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if str(device).startswith("cuda") and not torch.cuda.is_available():
        raise TrainConfigError(f"device {device!r} requested but CUDA is not available")
    return torch.device(device)
