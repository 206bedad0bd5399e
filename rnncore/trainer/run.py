"""``run_trainer``: the loop that drives ``Trainer.train_step`` until a stop condition
(``max_steps``, ``max_minutes`` of training time, early stopping, divergence or a set
``stop_event``), with evaluations every ``eval_every`` steps and checkpoints when
``Trainer._checkpoint_due``, both outside the training clock. With ``out_dir`` the run
directory is locked while it runs and every step is appended to its step log."""
from __future__ import annotations

from rnncore.checkpoint import CheckpointError, RunLock, StepLog
from rnncore.trainer.records import Callbacks, EvalRecord, StepRecord, TrainResult


def run_trainer(trainer, callbacks, stop_event) -> TrainResult:
    """``Trainer.run``: lock the run directory, train, release the lock."""
    lock = _lock_out_dir(trainer)
    try:
        return _run(trainer, callbacks, stop_event)
    finally:
        if lock is not None:
            lock.release()


def _stop_reason(trainer, stop_event) -> str | None:
    cfg = trainer.cfg
    flags = trainer._any_rank(
        cfg.max_steps is not None and trainer.step >= cfg.max_steps,
        stop_event is not None and stop_event.is_set(),
        cfg.max_minutes is not None and trainer.training_seconds() >= cfg.max_minutes * 60.0)
    for flag, reason in zip(flags, ("max_steps", "stopped", "time_budget")):
        if flag:
            return reason
    return None


def _lock_out_dir(trainer) -> RunLock | None:
    """Take the run directory's lock (rank 0; every rank raises if it fails) and refuse to
    start a fresh run over another run's checkpoints."""
    lock, problem = None, None
    if trainer.cfg.out_dir and trainer.dist.is_main:
        lock = RunLock(trainer.cfg.out_dir)
        try:  # a trainer that never saved nor resumed starts a new run
            lock.acquire(fresh=trainer.last_checkpoint is None)
        except CheckpointError as exc:
            problem = exc
    if trainer._any_rank(problem is not None)[0]:
        raise problem or CheckpointError("rank 0 could not lock the run directory")
    return lock


def _run(trainer, callbacks, stop_event) -> TrainResult:
    cfg = trainer.cfg
    listeners = Callbacks(callbacks)
    if cfg.out_dir and trainer.dist.is_main:
        listeners.add({"on_step": StepLog(cfg.out_dir, trainer.step).write})

    def evaluate() -> None:  # the listeners' work (an app job samples a poem) too
        evals.append(trainer.evaluate())
        listeners.emit("on_eval", evals[-1])

    def checkpoint() -> None:
        path = trainer.save_checkpoint()
        if path:
            listeners.emit("on_checkpoint", path)

    trainer._start_clock()
    history: list[StepRecord] = []
    evals: list[EvalRecord] = []
    reason = None
    while reason is None:
        reason = _stop_reason(trainer, stop_event)
        if reason is not None:
            break
        record = trainer.train_step()
        history.append(record)
        listeners.emit("on_step", record)
        if trainer._consecutive_nonfinite >= cfg.max_nonfinite:
            reason = "diverged"
            break
        if trainer.has_val and cfg.eval_every and trainer.step % cfg.eval_every == 0:
            trainer._untimed(evaluate)
            if cfg.patience and trainer.state.bad_evals >= cfg.patience:
                reason = "early_stopping"
        if trainer._checkpoint_due():
            trainer._untimed(checkpoint)
    last_eval = trainer._last_eval
    if trainer.has_val and (last_eval is None or last_eval.step != trainer.step):
        trainer._untimed(evaluate)
    if cfg.out_dir and trainer._last_checkpoint_step != trainer.step:
        trainer._untimed(checkpoint)
    trainer._tick()
    from rnncore.distributed import max_replica_difference

    return TrainResult.from_history(
        history, evals, trainer._run_elapsed, steps=trainer.step, stop_reason=reason,
        final_eval=trainer._last_eval, best_val_loss=trainer.state.best_val_loss,
        checkpoint=trainer.last_checkpoint, nonfinite_steps=trainer.state.nonfinite_steps,
        world_size=trainer.dist.world_size,
        replica_max_diff=max_replica_difference(trainer.model, trainer.dist))
