"""Training a ``CharRNN``: full, truncated and randomized BPTT, clipping, schedules, callbacks.

Strategies (``TrainConfig.strategy``)
-------------------------------------
Notation: ``k1 = update_interval`` (new tokens per update), ``k2 = truncation_len``
(tokens backpropagated through), ``L_t`` the cross-entropy at position t, ``h_t`` the full
recurrent state (all layers; ``(h, c)`` for LSTM) after reading token t.

``full``
    Whole poems, padded (``data.poem_batches``): every batch starts from the zero state and
    the loss ``sum_t L_t / #real targets`` is backpropagated through the whole poem. Padding
    targets are ``IGNORE_INDEX`` and count nowhere.

``truncated`` -- TBPTT(k1, k2)
    The training poems, shuffled per epoch, are concatenated into one stream and cut into
    ``batch_size`` parallel rows (``data.StreamBatcher``); each update reads the next k1
    columns. The update's *window* is the last ``W = min(k2, tokens seen this epoch)``
    tokens of each row; its forward starts from the state at the window start, **detached**
    (``s = h_{e-W}``, e = end of the window), and the loss is on the last k1 positions only::

        loss = sum_{t = e-k1+1}^{e} L_t / (B * k1),      dL/dh_{e-W} := 0

    so every loss term is backpropagated through at least ``k2 - k1 + 1`` and at most k2
    steps. For ``k1 == k2`` (the default) windows do not overlap: this is the classic
    "carry the state, detach at the chunk boundary" TBPTT. For ``k1 < k2`` the last
    ``k2 - k1`` tokens of a window are re-read at the start of the next one: the forward of
    a window runs in two pieces, and the (detached) state after the first ``W - (k2 - k1)``
    tokens is kept as the next window's start state, together with those ``k2 - k1`` tokens.
    The re-read prefix is forwarded again with the updated parameters; only its start state
    comes from the previous parameters. At an epoch boundary the stream is rebuilt, the
    carried state reset to zero and the prefix buffer emptied. Across poem boundaries
    *inside* the stream the state is carried on (the model learns to reset at ``<bos>``).

``randomized`` -- randomized truncation (d2l 9.7.1.3, after Tallec & Ollivier 2017)
    Same stream and windows as ``truncated``, but on every recurrent edge ``h_{t-1} -> h_t``
    inside the window and for every row b independently, the backward pass multiplies the
    gradient flowing from ``h_t`` into ``h_{t-1}`` by ::

        xi_{t,b} = 1/p with probability p,   0 with probability 1 - p,   p = randomized_keep_prob

    (forward values untouched; ``_ScaleGrad`` on the state passed between steps, so the
    direct path ``h_{t-1} -> output_{t-1} -> L_{t-1}`` is never scaled); the recurrent layer
    then runs one step at a time (slower than ``truncated``). Why the estimate is unbiased: the window's exact gradient
    (what ``truncated`` computes) is a sum of terms, one per (loss position t, parameter use
    at step s <= t), each the product of the edge Jacobians ``J_{s+1} ... J_t`` between them.
    With the xi's, term (t, s) is multiplied by ``xi_{s+1} ... xi_t``; the xi's are
    independent with ``E[xi] = p * (1/p) = 1``, so the expected factor is 1 and the
    expectation of the randomized gradient equals the TBPTT(k1, k2) gradient term by term
    (for the parameters and data of that update). The distance back to the first cut is
    geometric with mean ``p / (1 - p)`` edges: most terms see a short truncation, the rare
    long ones are up-weighted by ``p^-(t-s)``, which is the variance this method trades for
    the missing bias (d2l notes it does not beat regular truncation in practice). With
    ``k2`` at least the stream length per epoch this is d2l's estimator of the full
    gradient. ``tests/test_trainer.py`` checks the mean over many draws against the exact
    gradient in float64, within standard errors.

Everything else
---------------
* global-norm clipping (``clip_norm``, 0 = off); every ``StepRecord`` carries the pre-clip
  norm and whether it clipped;
* Adam or SGD(+momentum); LR = ``lr * lr_scale * schedule(step)`` with warm-up and
  ``cosine``/``step``/``none``; ``lr_scale`` starts at 1 and halves after each
  non-finite step;
* a non-finite loss or gradient norm never reaches the weights: the update is skipped, the
  weights/optimizer are restored from the in-memory snapshot (last checkpoint or
  ``snapshot_every`` steps) if they themselves became non-finite, the carried state resets,
  the LR scale is multiplied by ``nonfinite_lr_factor`` and the event is reported on the
  ``StepRecord``; ``max_nonfinite`` in a row stops the run (``stop_reason="diverged"``);
* validation: whole val poems from the zero state, ``loss`` = nats per predicted symbol
  (every real target, ``<eos>`` included, padding excluded), ``bpc = loss / ln 2``,
  ``perplexity = exp(loss)``; early stopping after ``patience`` evaluations without a new
  best; wall-clock budget ``max_minutes`` (per ``run`` call); ``stop_event`` (a
  ``threading.Event``) is polled before every step;
* checkpoints through ``checkpoint.CheckpointManager``; a resumed run reproduces the
  uninterrupted run exactly (RNG states, data position, carried state and prefix buffer,
  optimizer, LR scale, early-stopping counters are saved);
* data parallel (``rnncore.distributed``): one process per rank, each on its own shard,
  gradients averaged by ``DistributedDataParallel`` (which wraps one whole window's
  forward, so the step-by-step randomized forward is still one DDP forward per backward);
  rank 0 saves and reports; a run resumes only with the same number of processes;
* throughput: ``StepRecord.tokens_per_s`` counts *predicted* characters (k1 per row for the
  stream strategies; the re-read prefix of k1 < k2 is work but not new characters) over the
  whole step (``benchmarks/measure_step.py`` splits a step into its parts).
"""
from __future__ import annotations

import copy
import dataclasses
import math
import os
import time
from dataclasses import dataclass, field
from typing import Any, Iterable

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from rnncore import data as D
from rnncore.checkpoint import (CheckpointError, CheckpointManager, StepLog, TrainerState,
                               capture_rng_state, load_checkpoint, restore_rng_state)
from rnncore.configs import DictConfig
from rnncore.model import CharRNN, ModelConfig, State
from rnncore.truncation import (WindowOutput, carry_point, draw_keep_factors,  # noqa: F401
                                scale_state_grad, window_loss)

STRATEGIES = ("full", "truncated", "randomized")
OPTIMIZERS = ("adam", "sgd")
LR_SCHEDULES = ("none", "cosine", "step")
DEVICES = ("auto", "cpu", "cuda")
LN2 = math.log(2.0)


class TrainConfigError(ValueError):
    """An invalid training setting (one-line message)."""


# --------------------------------------------------------------------------- config

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
    max_minutes: float | None = None
    eval_every: int = 200               # 0 = only at the end
    eval_batch_size: int = 64
    eval_max_poems: int | None = None
    patience: int = 0                   # evaluations without a new best; 0 = off
    seed: int = 0
    device: str = "auto"
    checkpoint_every: int = 0           # 0 = only at the end (when out_dir is set)
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
            if not isinstance(value, (int, float)) or not math.isfinite(value) or value <= 0:
                raise bad(f"{name} must be a positive number, got {value!r}")
        if not isinstance(self.momentum, (int, float)) or not 0.0 <= self.momentum < 1.0:
            raise bad(f"momentum must be in [0, 1), got {self.momentum!r}")
        if not isinstance(self.min_lr_ratio, (int, float)) or not 0.0 <= self.min_lr_ratio <= 1.0:
            raise bad(f"min_lr_ratio must be in [0, 1], got {self.min_lr_ratio!r}")
        if not isinstance(self.weight_decay, (int, float)) or self.weight_decay < 0:
            raise bad(f"weight_decay must be >= 0, got {self.weight_decay!r}")
        if not isinstance(self.clip_norm, (int, float)) or not self.clip_norm >= 0 \
                or not math.isfinite(self.clip_norm):
            raise bad(f"clip_norm must be a finite number >= 0 (0 = off), got {self.clip_norm!r}")
        if not 0.0 < float(self.nonfinite_lr_factor) <= 1.0:
            raise bad(f"nonfinite_lr_factor must be in (0, 1], got {self.nonfinite_lr_factor}")
        if self.max_minutes is not None and (
                not isinstance(self.max_minutes, (int, float)) or not self.max_minutes > 0):
            raise bad(f"max_minutes must be a positive number, got {self.max_minutes!r}")
        if self.max_steps is None and self.max_minutes is None and self.patience == 0:
            raise bad("set max_steps, max_minutes or patience: otherwise training never stops")
        if self.patience and not self.eval_every:
            raise bad("early stopping (patience) needs eval_every > 0")
        if self.lr_schedule == "cosine" and self.max_steps is None:
            raise bad("lr_schedule 'cosine' needs max_steps (the length of the decay)")
        if self.out_dir is not None:
            self.out_dir = str(self.out_dir)



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


def make_optimizer(params, name: str = "adam", lr: float = 1e-3, momentum: float = 0.0,
                   weight_decay: float = 0.0) -> torch.optim.Optimizer:
    """Adam or SGD(+momentum) over ``params``, with torch's fused kernel where every
    parameter is a float tensor on CPU or CUDA: one kernel for all parameters instead of
    a dozen ``_foreach`` passes, which matters for truncated BPTT, whose update runs
    once per window (one thread, 2026-11-23: 0.51 against 1.39 ms a step for the BPTT
    benchmark's one-layer RNN, 1.18 against 3.64 ms for its LSTM). Same algorithm; only
    the rounding order differs."""
    params = list(params)
    fused = bool(params) and all(p.device.type in ("cpu", "cuda") and p.is_floating_point()
                                 for p in params)
    if name == "adam":
        return torch.optim.Adam(params, lr=lr, weight_decay=weight_decay, fused=fused or None)
    if name == "sgd":
        return torch.optim.SGD(params, lr=lr, momentum=momentum, weight_decay=weight_decay,
                               fused=fused or None)
    raise TrainConfigError(f"unknown optimizer {name!r} (choose from {', '.join(OPTIMIZERS)})")


# --------------------------------------------------------------------------- records

@dataclass
class StepRecord:
    """One update (or skipped update). ``tokens`` = predicted characters in this step, all
    ranks; ``tokens_per_s`` over the whole step (data, forward, backward, optimizer)."""

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
        }


# --------------------------------------------------------------------------- one window

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


# --------------------------------------------------------------------------- evaluation

@torch.no_grad()
def evaluate_model(model: CharRNN, encoded_poems: list[list[int]], batch_size: int = 64,
                   device: torch.device | str | None = None) -> dict:
    """Validation metrics over whole poems, each from the zero state.

    Returns ``loss_sum`` (nats), ``characters`` (predicted symbols, ``<eos>`` included, pad
    excluded), ``loss = loss_sum / characters``, ``bpc = loss / ln 2``,
    ``perplexity = exp(loss)``. The model's train/eval mode is restored afterwards.
    """
    if not encoded_poems:
        raise ValueError("no validation poems to evaluate on")
    was_training = model.training
    model.eval()
    device = device or next(model.parameters()).device
    total, count = 0.0, 0
    try:
        for batch in D.poem_batches(encoded_poems, batch_size, shuffle=False):
            logits, _ = model(batch.inputs.to(device))
            loss = F.cross_entropy(logits.reshape(-1, logits.size(-1)).float(),
                                   batch.targets.to(device).reshape(-1),
                                   ignore_index=D.IGNORE_INDEX, reduction="sum")
            total += float(loss)
            count += int(batch.mask.sum())
    finally:
        model.train(was_training)
    return metrics_from_sums(total, count)


def metrics_from_sums(loss_sum: float, characters: int) -> dict:
    loss = loss_sum / max(characters, 1)
    return {"loss_sum": loss_sum, "characters": characters, "loss": loss, "bpc": loss / LN2,
            "perplexity": math.exp(min(loss, 700.0))}


# --------------------------------------------------------------------------- trainer

CallbackSpec = Any  # an object with on_step/on_eval/on_checkpoint methods, or a dict of them
RESUME_OVERRIDABLE = ("max_steps", "max_minutes", "device", "out_dir", "checkpoint_every",
                      "keep_last", "eval_every", "eval_max_poems", "patience")


class Trainer:
    """Train a ``CharRNN`` on a corpus.

    ``Trainer(model_config, train_config, data_config)`` loads and splits the corpus
    (``data.prepare_data``); pass ``data=PreparedData`` or ``corpus=Corpus`` to reuse one.
    ``model_config.vocab_size`` is replaced by the corpus vocabulary's size. ``run()``
    trains until ``max_steps`` / ``max_minutes`` / early stopping / ``stop_event`` and
    returns a ``TrainResult``; it may be called again to continue (e.g. with a larger
    ``train_config.max_steps``). ``Trainer.resume(path)`` continues a saved run exactly.
    """

    def __init__(self, model_config: ModelConfig, train_config: TrainConfig,
                 data_config: D.DataConfig | None = None, *, data: D.PreparedData | None = None,
                 corpus: D.Corpus | None = None, dist_ctx=None) -> None:
        from rnncore.distributed import DistContext, shard

        self.cfg = train_config
        self.dist = dist_ctx or DistContext()
        self.data_config = data_config or D.DataConfig()
        self.data = data if data is not None else D.prepare_data(self.data_config, corpus)
        self.vocab = self.data.vocab
        if model_config.vocab_size != len(self.vocab):
            model_config = dataclasses.replace(model_config, vocab_size=len(self.vocab))
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
        self.optimizer = make_optimizer(self.model.parameters(), self.cfg.optimizer,
                                        lr=self.cfg.lr, momentum=self.cfg.momentum,
                                        weight_decay=self.cfg.weight_decay)
        module = _WindowModule(self.model)
        if self.dist.enabled:
            from torch.nn.parallel import DistributedDataParallel as DDP

            ids = [self.device.index] if self.device.type == "cuda" else None
            module = DDP(module, device_ids=ids)  # broadcasts rank 0's initial weights
        self._module = module
        self._xi_gen = torch.Generator().manual_seed(self.cfg.seed * 1_000_003 + self.dist.rank + 1)

        # progress (everything here is saved in checkpoints)
        self.step = 0
        self.epoch = 0
        self.lr_scale = 1.0
        self.best_val_loss: float | None = None
        self.bad_evals = 0
        self.tokens_seen = 0
        self.elapsed_before = 0.0
        self.nonfinite_steps = 0
        self._consecutive_nonfinite = 0
        self._batch_index = 0       # "full": next batch of this epoch
        self._batcher: D.StreamBatcher | None = None
        self._carry: State | None = None
        self._buf_x = torch.zeros(self.cfg.batch_size, 0, dtype=torch.long)
        self._buf_y = torch.zeros(self.cfg.batch_size, 0, dtype=torch.long)
        self._start_epoch(0)
        self.manager = None
        self.last_checkpoint: str | None = None
        self._last_checkpoint_step = -1
        self._last_eval: EvalRecord | None = None
        self._snapshot: dict | None = None
        self._take_snapshot()
        self._run_start = time.perf_counter()
        self._run_elapsed = 0.0

    # ----------------------------------------------------------------- data position

    @property
    def stream_layout(self) -> bool:
        return self.cfg.strategy != "full"

    def _num_poem_batches(self) -> int:
        return D.num_poem_batches(len(self.train_poems), self.cfg.batch_size)

    def _start_epoch(self, epoch: int) -> None:
        self.epoch = epoch
        self._batch_index = 0
        self._reset_stream_state()
        if self.stream_layout:
            stream = D.poem_stream(self.train_poems, seed=self.cfg.seed, epoch=epoch)
            self._batcher = D.StreamBatcher(stream, self.cfg.batch_size,
                                            chunk_len=self.cfg.update_interval)

    def _reset_stream_state(self) -> None:
        self._carry = None
        self._buf_x = self._buf_x[:, :0]
        self._buf_y = self._buf_y[:, :0]

    def _epoch_exhausted(self) -> bool:
        if self.stream_layout:
            return self._batcher.exhausted
        return self._batch_index >= self._num_poem_batches()

    def data_position(self) -> dict:
        pos = {"layout": "stream" if self.stream_layout else "poems", "epoch": self.epoch}
        if self.stream_layout:
            pos.update(self._batcher.state_dict())
        else:
            pos["batch"] = self._batch_index
        return pos

    def _restore_position(self, pos: dict) -> None:
        want = "stream" if self.stream_layout else "poems"
        if not isinstance(pos, dict) or pos.get("layout") != want:
            raise TrainConfigError(f"checkpoint data position does not fit strategy "
                                   f"{self.cfg.strategy!r}")
        self._start_epoch(int(pos["epoch"]))
        if self.stream_layout:
            self._batcher.load_state_dict({k: pos[k] for k in
                                           ("offset", "batch_size", "row_len", "num_tokens")})
        else:
            self._batch_index = int(pos["batch"])

    def _next_window(self):
        """(inputs, targets, start state, loss_len, carry_at, keep factors) on the CPU."""
        cfg = self.cfg
        if not self.stream_layout:
            order = D.epoch_order(len(self.train_poems), cfg.seed, self.epoch)
            idx = order[self._batch_index * cfg.batch_size:(self._batch_index + 1) * cfg.batch_size]
            self._batch_index += 1
            batch = D.collate_poems([self.train_poems[i] for i in idx])
            return batch.inputs, batch.targets, None, None, None, None
        x_new, y_new = self._batcher.next_chunk(cfg.update_interval)
        inputs = torch.cat([self._buf_x, x_new], dim=1)
        targets = torch.cat([self._buf_y, y_new], dim=1)
        width = inputs.size(1)
        xi = None
        if cfg.strategy == "randomized":
            xi = draw_keep_factors(width, inputs.size(0), cfg.randomized_keep_prob, self._xi_gen)
        return (inputs, targets, self._carry, x_new.size(1),
                carry_point(width, cfg.truncation_len, cfg.update_interval), xi)

    # ----------------------------------------------------------------- snapshots

    def _take_snapshot(self) -> None:
        """In-memory copy of model + optimizer (the "last good state")."""
        self._snapshot = {
            "model": {k: v.detach().clone() for k, v in self.model.state_dict().items()},
            "optimizer": copy.deepcopy(self.optimizer.state_dict()),
            "step": self.step,
        }

    def _restore_snapshot(self) -> None:
        self.model.load_state_dict(self._snapshot["model"])
        self.optimizer.load_state_dict(copy.deepcopy(self._snapshot["optimizer"]))

    def _params_finite(self) -> bool:
        flags = [torch.isfinite(p).all() for p in self.model.parameters()]
        return bool(torch.stack(flags).all())

    # ----------------------------------------------------------------- one step

    def current_lr(self) -> float:
        return self.cfg.lr * self.lr_scale * lr_factor(self.cfg, self.step)

    def train_step(self) -> StepRecord:
        """One update on the next batch/window (starting a new epoch when needed)."""
        t0 = time.perf_counter()
        cfg = self.cfg
        if self._dist_any(self._epoch_exhausted()):
            self._start_epoch(self.epoch + 1)
        inputs, targets, state, loss_len, carry_at, xi = self._next_window()
        lr = self.current_lr()
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        self.model.train()
        self.optimizer.zero_grad(set_to_none=True)
        loss_sum, count, carry = self._module(
            inputs.to(self.device), targets.to(self.device), state, loss_len, carry_at, xi)
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
            if self._params_finite():
                self._consecutive_nonfinite = 0
                if self.stream_layout:
                    self._carry = carry
                    self._buf_x, self._buf_y = inputs[:, carry_at:], targets[:, carry_at:]
            else:  # finite gradient, but the update overflowed the weights
                finite = False
                event = "weights became non-finite after the update"
        else:
            event = f"non-finite {'loss' if not math.isfinite(loss) else 'gradient norm'}"
        if not finite:
            event = self._recover(event)
        self.step += 1
        self.tokens_seen += int(total_count)
        if finite and self.step - self._snapshot["step"] >= cfg.snapshot_every:
            self._take_snapshot()
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        dt = time.perf_counter() - t0
        self._run_elapsed = time.perf_counter() - self._run_start
        return StepRecord(step=self.step, epoch=self.epoch, loss=loss, bpc=loss / LN2,
                          grad_norm=grad_norm, clipped=bool(clipped), lr=lr,
                          tokens=int(total_count), tokens_per_s=total_count / max(dt, 1e-9),
                          elapsed_s=self.elapsed_before + self._run_elapsed,
                          skipped=not finite, event=event)

    def _recover(self, cause: str) -> str:
        """Skip the update; restore the snapshot if the weights are hit; lower the LR."""
        self.optimizer.zero_grad(set_to_none=True)
        restored = not self._params_finite()
        if restored:
            self._restore_snapshot()
        self._reset_stream_state()
        self.lr_scale *= self.cfg.nonfinite_lr_factor
        self.nonfinite_steps += 1
        self._consecutive_nonfinite += 1
        what = (f"restored the snapshot of step {self._snapshot['step']}" if restored
                else "weights untouched")
        return (f"{cause}: update skipped, {what}, carried state reset, "
                f"LR scale -> {self.lr_scale:g}")

    def _dist_any(self, flag: bool) -> bool:
        return bool(self.dist.all_reduce([1.0 if flag else 0.0], op="max")[0]) \
            if self.dist.enabled else flag

    # ----------------------------------------------------------------- evaluation

    def evaluate(self) -> EvalRecord:
        """Validation loss/bpc/perplexity over the val poems (all ranks' shards)."""
        loss_sum, count = 0.0, 0
        if self.val_poems:
            m = evaluate_model(self.model, self.val_poems, self.cfg.eval_batch_size, self.device)
            loss_sum, count = m["loss_sum"], m["characters"]
        loss_sum, count = self.dist.all_reduce([loss_sum, count])
        m = metrics_from_sums(loss_sum, int(count))
        is_best = math.isfinite(m["loss"]) and (self.best_val_loss is None
                                                 or m["loss"] < self.best_val_loss)
        if is_best:
            self.best_val_loss = m["loss"]
            self.bad_evals = 0
        else:
            self.bad_evals += 1
        record = EvalRecord(step=self.step, val_loss=m["loss"], val_bpc=m["bpc"],
                            val_perplexity=m["perplexity"], best_val_loss=self.best_val_loss,
                            is_best=is_best, characters=int(count),
                            elapsed_s=self.elapsed_before + self._run_elapsed)
        self._last_eval = record
        return record

    # ----------------------------------------------------------------- checkpoints

    def _trainer_tensors(self) -> dict:
        """Tensor state that goes into optimizer.pt next to the optimizer's."""
        carry = self._carry
        carry_list = [] if carry is None else list(carry if isinstance(carry, tuple) else (carry,))
        return {"optimizer": self.optimizer.state_dict(),
                "carry": [t.detach().cpu() for t in carry_list],
                "buffer_inputs": self._buf_x.clone(), "buffer_targets": self._buf_y.clone(),
                "xi_generator": self._xi_gen.get_state(),
                "cuda_rng": (torch.cuda.get_rng_state(self.device)
                             if self.device.type == "cuda" else torch.zeros(0, dtype=torch.uint8))}

    def _trainer_state(self) -> TrainerState:
        return TrainerState(data_config=self.data_config, epoch=self.epoch,
                            lr_scale=self.lr_scale, best_val_loss=self.best_val_loss,
                            bad_evals=self.bad_evals, tokens_seen=self.tokens_seen,
                            elapsed_s=self.elapsed_before + self._run_elapsed,
                            nonfinite_steps=self.nonfinite_steps,
                            world_size=self.dist.world_size)

    def save_checkpoint(self) -> str | None:
        """Save the current state under ``out_dir`` (rank 0 only); returns the path."""
        if not self.cfg.out_dir:
            return None
        path = None
        if self.dist.is_main:
            if self.manager is None:
                self.manager = CheckpointManager(self.cfg.out_dir, keep_last=self.cfg.keep_last)
            metrics: dict = {"train_tokens": self.tokens_seen}
            if self._last_eval is not None and self._last_eval.step == self.step:
                metrics.update(val_loss=self._last_eval.val_loss, val_bpc=self._last_eval.val_bpc,
                               val_perplexity=self._last_eval.val_perplexity)
            path = str(self.manager.save(
                self.model, self.vocab, self.model_config, step=self.step, metrics=metrics,
                optimizer=self._trainer_tensors(), train_config=self.cfg,
                data_position=self.data_position(), rng_state=capture_rng_state(),
                trainer_state=self._trainer_state()))
            self.last_checkpoint = path
        self.dist.barrier()
        self._last_checkpoint_step = self.step
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
        saved = ckpt.trainer_state
        if saved is None or not isinstance(ckpt.optimizer_state, dict) \
                or ckpt.train_config is None:
            raise CheckpointError(f"{ckpt.path} has no trainer state (not saved by a Trainer)")
        bad = sorted(set(overrides or {}) - set(RESUME_OVERRIDABLE))
        if bad:
            raise TrainConfigError(f"cannot change {', '.join(bad)} when resuming "
                                   f"(allowed: {', '.join(RESUME_OVERRIDABLE)})")
        cfg = TrainConfig.from_dict({**ckpt.train_config, **(overrides or {})})
        trainer = cls(ckpt.model_config, cfg, saved.data_config, data=data, corpus=corpus,
                      dist_ctx=dist_ctx)
        if trainer.vocab != ckpt.vocab:
            raise CheckpointError(f"the corpus no longer gives the vocabulary {ckpt.path} was "
                                  f"trained with")
        if saved.world_size != trainer.dist.world_size:
            raise CheckpointError(f"{ckpt.path} was trained with {saved.world_size} "
                                  f"process(es), now {trainer.dist.world_size}")
        state = ckpt.optimizer_state
        trainer.model.load_state_dict(ckpt.model.state_dict())
        trainer.optimizer.load_state_dict(state["optimizer"])
        trainer.step = ckpt.step
        trainer._restore_position(ckpt.data_position)  # also the epoch
        carry = [t.to(trainer.device) for t in state["carry"]]
        trainer._carry = None if not carry else (tuple(carry) if len(carry) == 2 else carry[0])
        trainer._buf_x, trainer._buf_y = state["buffer_inputs"], state["buffer_targets"]
        trainer._xi_gen.set_state(state["xi_generator"])
        trainer.lr_scale = saved.lr_scale
        trainer.best_val_loss = saved.best_val_loss
        trainer.bad_evals = saved.bad_evals
        trainer.tokens_seen = saved.tokens_seen
        trainer.elapsed_before = saved.elapsed_s
        trainer.nonfinite_steps = saved.nonfinite_steps
        trainer.last_checkpoint = str(ckpt.path)
        trainer._last_checkpoint_step = trainer.step
        restore_rng_state(ckpt.rng_state or {})
        if trainer.device.type == "cuda" and state["cuda_rng"].numel():
            torch.cuda.set_rng_state(state["cuda_rng"], trainer.device)
        trainer._take_snapshot()
        return trainer

    # ----------------------------------------------------------------- the loop

    def _stop_reason(self, stop_event) -> str | None:
        cfg = self.cfg
        flags = [
            cfg.max_steps is not None and self.step >= cfg.max_steps,
            stop_event is not None and stop_event.is_set(),
            cfg.max_minutes is not None
            and time.perf_counter() - self._run_start >= cfg.max_minutes * 60.0,
        ]
        if self.dist.enabled:
            flags = [bool(v) for v in self.dist.all_reduce([float(f) for f in flags], op="max")]
        for flag, reason in zip(flags, ("max_steps", "stopped", "time_budget")):
            if flag:
                return reason
        return None

    def run(self, callbacks: Iterable[CallbackSpec] | CallbackSpec = (),
            stop_event=None) -> TrainResult:
        """Train until a stop condition; callbacks get ``on_step(StepRecord)``,
        ``on_eval(EvalRecord)`` and ``on_checkpoint(path)`` (rank 0 only for the last)."""
        if callbacks is None:
            callbacks = []
        elif isinstance(callbacks, dict) or not isinstance(callbacks, (list, tuple)):
            callbacks = [callbacks]  # one object (e.g. a jobs.Job) or one dict

        def emit(name: str, arg) -> None:
            for cb in callbacks:
                fn = cb.get(name) if isinstance(cb, dict) else getattr(cb, name, None)
                if fn is not None:
                    fn(arg)

        cfg = self.cfg
        step_log = StepLog(cfg.out_dir, self.step) if cfg.out_dir and self.dist.is_main else None
        if step_log is not None:
            callbacks = [*callbacks, {"on_step": step_log.write}]
        self._run_start = time.perf_counter()
        self._run_elapsed = 0.0
        history: list[StepRecord] = []
        evals: list[EvalRecord] = []
        reason = None
        while reason is None:
            reason = self._stop_reason(stop_event)
            if reason is not None:
                break
            record = self.train_step()
            history.append(record)
            emit("on_step", record)
            if self._consecutive_nonfinite >= cfg.max_nonfinite:
                reason = "diverged"
                break
            if self.has_val and cfg.eval_every and self.step % cfg.eval_every == 0:
                ev = self.evaluate()
                evals.append(ev)
                emit("on_eval", ev)
                if cfg.patience and self.bad_evals >= cfg.patience:
                    reason = "early_stopping"
            if cfg.out_dir and cfg.checkpoint_every and self.step % cfg.checkpoint_every == 0:
                path = self.save_checkpoint()
                if path:
                    emit("on_checkpoint", path)
        if self.has_val and (self._last_eval is None or self._last_eval.step != self.step):
            ev = self.evaluate()
            evals.append(ev)
            emit("on_eval", ev)
        if cfg.out_dir and self._last_checkpoint_step != self.step:
            path = self.save_checkpoint()
            if path:
                emit("on_checkpoint", path)
        self._run_elapsed = time.perf_counter() - self._run_start
        from rnncore.distributed import max_replica_difference

        replica_diff = max_replica_difference(self.model, self.dist)
        tokens = sum(r.tokens for r in history)
        good = [r for r in history if not r.skipped]
        train_loss = (sum(r.loss * r.tokens for r in good[-50:]) /
                      max(1, sum(r.tokens for r in good[-50:]))) if good else None
        return TrainResult(
            steps=self.step, stop_reason=reason, elapsed_s=self._run_elapsed,
            tokens_per_s=tokens / max(self._run_elapsed, 1e-9), train_loss=train_loss,
            final_eval=self._last_eval, best_val_loss=self.best_val_loss,
            checkpoint=self.last_checkpoint, nonfinite_steps=self.nonfinite_steps,
            world_size=self.dist.world_size, replica_max_diff=replica_diff,
            history=history, evals=evals)
