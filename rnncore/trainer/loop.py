"""``Trainer``: the training loop of a ``CharRNN``, one update per ``train_step``.

An update takes the next window from the ``WindowFeed`` and descends on
``loss = sum_t L_t / #targets`` over its loss positions (``L_t`` the cross-entropy at
position t, all ranks' sums; ``truncation.window_loss``), with global-norm clipping
(``clip_norm``, 0 = off) and the LR ``lr * lr_scale * lr_factor(step)``. A non-finite loss,
gradient norm or updated weight never stays: the update is skipped, the weights and
optimizer come back from the in-memory snapshot (last checkpoint, or every
``snapshot_every`` steps) if they were hit, the carried state resets and
``lr_scale *= nonfinite_lr_factor``; ``max_nonfinite`` in a row stop the run.

Data parallel (``rnncore.distributed``): one process per rank on its own shard; DDP wraps
one whole window's forward (``_WindowModule``: the step-by-step randomized forward is still
one DDP forward per backward) and averages the gradients; rank 0 saves and reports.

Time: ``max_minutes``, ``elapsed_s`` and the characters per second count training only;
evaluations and checkpoints run outside the clock (``_untimed``).
"""
from __future__ import annotations

import dataclasses
import math
import os
import time
from typing import Iterable

import torch
from torch import nn

from rnncore import data as D
from rnncore.checkpoint import (CheckpointManager, TrainerState, capture_rng_state,
                                load_checkpoint)
from rnncore.functional import fused
from rnncore.kinds import resolve_head
from rnncore.model import CharRNN, ModelConfig
from rnncore.trainer.config import (TrainConfig, TrainConfigError, lr_factor, resolve_device,
                                    streams_poems)
from rnncore.trainer.evaluate import LN2, evaluate_model, metrics_from_sums
from rnncore.trainer.feed import WindowFeed
from rnncore.trainer.guard import Snapshot, params_finite
from rnncore.trainer.optimizer import make_optimizer
from rnncore.trainer.records import CallbackSpec, EvalRecord, StepRecord, TrainResult
from rnncore.trainer.resume import restore, saved_state
from rnncore.trainer.run import run_trainer
from rnncore.trainer.start_state import estimate_start_state
from rnncore.truncation import window_loss


class _WindowModule(nn.Module):
    """One update's forward as a module, so DistributedDataParallel sees exactly one
    forward per backward even when the window runs step by step."""

    def __init__(self, model: CharRNN) -> None:
        super().__init__()
        self.model = model

    def forward(self, inputs, targets, state, loss_len, carry_at, keep_factors):
        out = window_loss(self.model, inputs, targets, state, loss_len=loss_len,
                          carry_at=carry_at, keep_factors=keep_factors)
        return out.loss_sum, out.count, out.carry


def _state_field(name: str) -> property:
    # read-only: the counters change only through ``state``, which resume replaces whole
    return property(lambda self: getattr(self.state, name), doc=f"``state.{name}``")


class Trainer:
    """Train a ``CharRNN`` on a corpus.

    ``Trainer(model_config, train_config, data_config)`` loads and splits the corpus
    (``data.prepare_data``); pass ``data=PreparedData`` or ``corpus=Corpus`` to reuse one.
    ``model_config.vocab_size`` is replaced by the corpus vocabulary's size and a head of
    "auto" by the head it picks for that size (``heads.resolve_head``). ``run()``
    trains until ``max_steps`` / ``max_minutes`` / early stopping / ``stop_event`` and
    returns a ``TrainResult``; it may be called again to continue (e.g. with a larger
    ``train_config.max_steps``).

    ``state`` (a ``checkpoint.TrainerState``, its fields readable as attributes) holds the
    data config and the counters; ``state.elapsed_s`` is the training time of the whole
    run, resumed parts included. ``Trainer.resume(path)`` continues a saved run exactly:
    ``state``, the weights, optimizer, feed and RNG states all come back (same number of
    processes).
    """

    data_config = _state_field("data_config")
    epoch = _state_field("epoch")
    lr_scale = _state_field("lr_scale")
    best_val_loss = _state_field("best_val_loss")
    bad_evals = _state_field("bad_evals")
    tokens_seen = _state_field("tokens_seen")

    def __init__(self, model_config: ModelConfig, train_config: TrainConfig,
                 data_config: D.DataConfig | None = None, *, data: D.PreparedData | None = None,
                 corpus: D.Corpus | None = None, dist_ctx=None) -> None:
        from rnncore.distributed import DistContext, shard

        self.cfg = train_config
        self.dist = dist_ctx or DistContext()
        self.state = TrainerState(
            data_config=data_config or D.DataConfig(), epoch=0, lr_scale=1.0,
            best_val_loss=None, bad_evals=0, tokens_seen=0, elapsed_s=0.0, nonfinite_steps=0,
            world_size=self.dist.world_size)
        self.data = data if data is not None else D.prepare_data(self.state.data_config, corpus)
        self.vocab = self.data.vocab
        head = resolve_head(model_config.head, len(self.vocab))  # "auto" saved as chosen
        if (model_config.vocab_size, model_config.head) != (len(self.vocab), head):
            model_config = dataclasses.replace(model_config, vocab_size=len(self.vocab),
                                               head=head)
        self.model_config = model_config
        self.train_poems = shard(self.data.train, self.dist)
        if not self.train_poems:
            raise TrainConfigError("the corpus has no training poems")
        val = self.data.val[: self.cfg.eval_max_poems] if self.cfg.eval_max_poems else self.data.val
        if self.dist.enabled and len(val) < self.dist.world_size:
            self.val_poems = list(val) if self.dist.is_main else []  # too few to share
        else:
            self.val_poems = shard(val, self.dist)
        if self.cfg.patience and not val:
            raise TrainConfigError("early stopping (patience) needs validation poems "
                                   "(val_fraction > 0)")
        self.has_val = bool(val)

        self.device = resolve_device(self.cfg.device)
        if self.device.type == "cuda" and self.dist.enabled:
            self.device = torch.device("cuda", self.dist.local_rank)
        torch.manual_seed(self.cfg.seed)
        self.model = CharRNN(model_config).to(self.device)
        fused.prepare(self.model)  # a first-use compile (~45 s) is setup, not training time
        self.optimizer = make_optimizer(self.model.parameters(), self.cfg.optimizer,
                                        lr=self.cfg.lr, momentum=self.cfg.momentum,
                                        weight_decay=self.cfg.weight_decay)
        module = _WindowModule(self.model)
        if self.dist.enabled:
            from torch.nn.parallel import DistributedDataParallel as DDP

            ids = [self.device.index] if self.device.type == "cuda" else None
            module = DDP(module, device_ids=ids)  # broadcasts rank 0's initial weights
        self._module = module
        self.feed = WindowFeed(self.train_poems, self.cfg, self.dist.rank)
        self.feed.start_epoch(0)
        self.step = 0
        self._consecutive_nonfinite = 0
        self.manager = None
        self.last_checkpoint: str | None = None
        self._last_checkpoint_step = -1
        self._last_eval: EvalRecord | None = None
        self._take_snapshot()
        self._start_clock()

    @property
    def elapsed_before(self) -> float:
        """Training time before this ``run`` call (earlier calls, the resumed run)."""
        return self.state.elapsed_s - self._run_elapsed

    def _start_clock(self) -> None:
        """A ``run`` call starts: its training time counts from now."""
        self._clock = self._saved_at = time.perf_counter()
        self._run_elapsed = 0.0

    def _tick(self) -> None:
        """Add the wall-clock time since the last tick to ``state.elapsed_s`` and to this
        run's training time."""
        now = time.perf_counter()
        self.state.elapsed_s += now - self._clock
        self._run_elapsed += now - self._clock
        self._clock = now

    def _untimed(self, fn):
        """``fn()`` outside the training time: evaluation and checkpoints are not training,
        so they neither count towards ``max_minutes`` nor lower the characters per second."""
        self._tick()
        try:
            return fn()
        finally:
            self._clock = time.perf_counter()

    def training_seconds(self) -> float:
        """This ``run`` call's training time so far (evaluation and checkpoints left out)."""
        return self._run_elapsed + (time.perf_counter() - self._clock)

    def data_position(self) -> dict:
        return self.feed.position(self.state.epoch)

    def _take_snapshot(self) -> None:
        self._snapshot = Snapshot(self.model, self.optimizer, self.step)

    # ----------------------------------------------------------------- one step

    def current_lr(self) -> float:
        return self.cfg.lr * self.state.lr_scale * lr_factor(self.cfg, self.step)

    def train_step(self) -> StepRecord:
        """One update on the next batch/window (starting a new epoch when needed)."""
        t0 = time.perf_counter()
        cfg = self.cfg
        if self._any_rank(self.feed.exhausted)[0]:
            self.state.epoch += 1
            self.feed.start_epoch(self.state.epoch)
        inputs, targets, start, loss_len, carry_at, xi = self.feed.next_window()
        lr = self.current_lr()
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        self.model.train()
        self.optimizer.zero_grad(set_to_none=True)
        loss_sum, count, carry = self._module(
            inputs.to(self.device), targets.to(self.device), start, loss_len, carry_at, xi)
        (loss_sum / max(count, 1)).backward()
        grads = [p.grad for p in self.model.parameters() if p.grad is not None]
        norm_t = torch.nn.utils.get_total_norm(grads, norm_type=2.0)
        total_loss, total_count = self.dist.all_reduce([float(loss_sum.detach()), count])
        grad_norm = float(norm_t)
        loss = total_loss / max(total_count, 1)
        finite = math.isfinite(loss) and math.isfinite(grad_norm)
        clipped = finite and cfg.clip_norm > 0 and grad_norm > cfg.clip_norm
        event = ""
        if finite:
            if clipped:
                torch.nn.utils.clip_grads_with_norm_(self.model.parameters(), cfg.clip_norm, norm_t)
            self.optimizer.step()
            if params_finite(self.model):
                self._consecutive_nonfinite = 0
                self.feed.advance(carry, inputs, targets, carry_at)
            else:  # finite gradient, but the update overflowed the weights
                finite = False
                event = "weights became non-finite after the update"
        else:
            event = f"non-finite {'loss' if not math.isfinite(loss) else 'gradient norm'}"
        if not finite:
            event = self._recover(event)
        self.step += 1
        self.state.tokens_seen += int(total_count)
        if finite and self.step - self._snapshot.step >= cfg.snapshot_every:
            self._take_snapshot()
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        dt = time.perf_counter() - t0
        self._tick()
        return StepRecord(step=self.step, epoch=self.state.epoch, loss=loss, bpc=loss / LN2,
                          grad_norm=grad_norm, clipped=bool(clipped), lr=lr,
                          tokens=int(total_count), tokens_per_s=total_count / max(dt, 1e-9),
                          elapsed_s=self.state.elapsed_s, skipped=not finite, event=event)

    def _recover(self, cause: str) -> str:
        """Skip the update; restore the snapshot if the weights are hit; lower the LR."""
        self.optimizer.zero_grad(set_to_none=True)
        restored = not params_finite(self.model)
        if restored:
            self._snapshot.restore(self.model, self.optimizer)
        self.feed.reset_carry()
        self.state.lr_scale *= self.cfg.nonfinite_lr_factor
        self.state.nonfinite_steps += 1
        self._consecutive_nonfinite += 1
        what = (f"restored the snapshot of step {self._snapshot.step}" if restored
                else "weights untouched")
        return (f"{cause}: update skipped, {what}, carried state reset, "
                f"LR scale -> {self.state.lr_scale:g}")

    def _any_rank(self, *flags: bool) -> list[bool]:
        """Each flag, true where it is true on any rank (all ranks then act alike)."""
        return [bool(v) for v in self.dist.all_reduce([float(f) for f in flags], op="max")]

    # ----------------------------------------------------------------- evaluation

    def evaluate(self) -> EvalRecord:
        """Validation loss/bpc/perplexity over the val poems (all ranks' shards), from the
        poem start state estimated first (``start_state``: a stream-trained model never
        starts a poem from zeros; "full" trains every poem from zeros, so it keeps them)."""
        if streams_poems(self.cfg.strategy):
            self.model.set_start_state(estimate_start_state(self.model, self.data.train))
        loss_sum, count = 0.0, 0
        if self.val_poems:
            m = evaluate_model(self.model, self.val_poems, self.cfg.eval_batch_size, self.device)
            loss_sum, count = m["loss_sum"], m["characters"]
        loss_sum, count = self.dist.all_reduce([loss_sum, count])
        m = metrics_from_sums(loss_sum, int(count))
        state = self.state
        is_best = math.isfinite(m["loss"]) and (state.best_val_loss is None
                                                 or m["loss"] < state.best_val_loss)
        if is_best:
            state.best_val_loss = m["loss"]
            state.bad_evals = 0
        else:
            state.bad_evals += 1
        record = EvalRecord(step=self.step, val_loss=m["loss"], val_bpc=m["bpc"],
                            val_perplexity=m["perplexity"], best_val_loss=state.best_val_loss,
                            is_best=is_best, characters=int(count), elapsed_s=state.elapsed_s)
        self._last_eval = record
        return record

    # ----------------------------------------------------------------- checkpoints

    def _trainer_tensors(self) -> dict:
        """Tensor state that goes into optimizer.pt next to the optimizer's."""
        return {"optimizer": self.optimizer.state_dict(), **self.feed.tensors(),
                "cuda_rng": (torch.cuda.get_rng_state(self.device)
                             if self.device.type == "cuda" else torch.zeros(0, dtype=torch.uint8))}

    def save_checkpoint(self) -> str | None:
        """Save the current state under ``out_dir`` (rank 0 only); returns the path."""
        if not self.cfg.out_dir:
            return None
        path = None
        if self.dist.is_main:
            if self.manager is None:
                self.manager = CheckpointManager(self.cfg.out_dir, keep_last=self.cfg.keep_last)
            metrics: dict = {"train_tokens": self.state.tokens_seen}
            if self._last_eval is not None and self._last_eval.step == self.step:
                metrics.update(val_loss=self._last_eval.val_loss, val_bpc=self._last_eval.val_bpc,
                               val_perplexity=self._last_eval.val_perplexity)
            path = str(self.manager.save(
                self.model, self.vocab, self.model_config, step=self.step, metrics=metrics,
                optimizer=self._trainer_tensors(), train_config=self.cfg,
                data_position=self.data_position(), rng_state=capture_rng_state(),
                trainer_state=self.state))
            self.last_checkpoint = path
        self.dist.barrier()
        self._last_checkpoint_step = self.step
        self._saved_at = time.perf_counter()
        self._take_snapshot()
        return path

    @classmethod
    def resume(cls, path: str | os.PathLike, overrides: dict | None = None, *,
               data: D.PreparedData | None = None, corpus: D.Corpus | None = None,
               dist_ctx=None) -> "Trainer":
        """Rebuild the trainer saved at ``path`` (a checkpoint or a run directory: its
        latest checkpoint) and restore everything, so ``run()`` continues exactly.

        ``overrides`` may change only budget/bookkeeping fields (``RESUME_OVERRIDABLE``);
        the model, data and optimisation settings come from the checkpoint.
        """
        ckpt = load_checkpoint(path, map_location="cpu")
        saved = saved_state(ckpt, overrides)
        cfg = TrainConfig.from_dict({**ckpt.train_config, **(overrides or {})})
        trainer = cls(ckpt.model_config, cfg, saved.data_config, data=data, corpus=corpus,
                      dist_ctx=dist_ctx)
        restore(trainer, ckpt, saved)
        trainer.last_checkpoint = str(ckpt.path)
        trainer._last_checkpoint_step = trainer.step
        trainer._take_snapshot()
        return trainer

    def _checkpoint_due(self) -> bool:
        """``checkpoint_every`` steps or ``checkpoint_minutes`` since the last save."""
        cfg = self.cfg
        if not cfg.out_dir:
            return False
        if cfg.checkpoint_every and self.step % cfg.checkpoint_every == 0:
            return True
        return bool(cfg.checkpoint_minutes) and self._any_rank(
            time.perf_counter() - self._saved_at >= cfg.checkpoint_minutes * 60.0)[0]

    def run(self, callbacks: Iterable[CallbackSpec] | CallbackSpec = (),
            stop_event=None) -> TrainResult:
        """Train until a stop condition; callbacks get ``on_step(StepRecord)``,
        ``on_eval(EvalRecord)`` and ``on_checkpoint(path)`` (rank 0 only for the last).
        With ``out_dir``, the run directory is locked (``RunLock``) while it runs
        (the loop itself: ``trainer/run.py``)."""
        return run_trainer(self, callbacks, stop_event)
