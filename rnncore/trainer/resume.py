"""Resuming: a checkpoint's saved state put back into a ``Trainer`` built from its configs,
so ``run()`` continues exactly. A checkpoint whose state does not fit (damaged, hand-made,
another vocabulary or process count) is one ``CheckpointError`` line, never a traceback."""
from __future__ import annotations

import torch

from rnncore.checkpoint import Checkpoint, CheckpointError, TrainerState, restore_rng_state
from rnncore.trainer.config import RESUME_OVERRIDABLE, TrainConfigError


def saved_state(ckpt: Checkpoint, overrides: dict | None) -> TrainerState:
    """The checkpoint's ``TrainerState``, once it is known to be resumable with
    ``overrides`` (only ``RESUME_OVERRIDABLE`` fields may change)."""
    saved = ckpt.trainer_state
    if saved is None or not isinstance(ckpt.optimizer_state, dict) or ckpt.train_config is None:
        raise CheckpointError(f"{ckpt.path} has no trainer state (not saved by a Trainer)")
    bad = sorted(set(overrides or {}) - set(RESUME_OVERRIDABLE))
    if bad:
        raise TrainConfigError(f"cannot change {', '.join(bad)} when resuming "
                               f"(allowed: {', '.join(RESUME_OVERRIDABLE)})")
    return saved


def restore(trainer, ckpt: Checkpoint, saved: TrainerState) -> None:
    """Weights, optimizer, step, ``state``, feed position and tensors, RNG states."""
    if trainer.vocab != ckpt.vocab:
        raise CheckpointError(f"the corpus no longer gives the vocabulary {ckpt.path} was "
                              f"trained with")
    if saved.world_size != trainer.dist.world_size:
        raise CheckpointError(f"{ckpt.path} was trained with {saved.world_size} "
                              f"process(es), now {trainer.dist.world_size}")
    tensors = ckpt.optimizer_state
    try:
        trainer.model.load_state_dict(ckpt.model.state_dict())
        trainer.optimizer.load_state_dict(tensors["optimizer"])
        trainer.step = ckpt.step
        trainer.state = saved
        trainer.feed.restore_position(ckpt.data_position)  # the epoch of ``saved``
        trainer.feed.load_tensors(tensors, trainer.device)
        restore_rng_state(ckpt.rng_state or {})
        if trainer.device.type == "cuda" and tensors["cuda_rng"].numel():
            torch.cuda.set_rng_state(tensors["cuda_rng"], trainer.device)
    except (CheckpointError, TrainConfigError):
        raise
    except (KeyError, TypeError, ValueError, AttributeError, IndexError, RuntimeError) as exc:
        reason = (str(exc).splitlines() or [""])[0][:200]
        raise CheckpointError(f"{ckpt.path} cannot be resumed: its saved state does not fit "
                              f"({type(exc).__name__}: {reason})") from None
