"""One truncated training step at the real training size, and where its time goes.

The model is the quality record's (``scripts/quality_record.py``): ``CharRNN`` LSTM with
``num_layers`` x ``hidden_size`` (2 x 256), embedding E = 128, the Tang vocabulary V = 4,953,
dropout 0.1, Adam, clip 1.0, batch B = 32, truncated window T = 64 (k1 = k2 = 64, so the
window is one update). The *whole step* is what ``rnncore.trainer.Trainer.train_step``
computes for the truncated strategy, minus data loading, the LR schedule, snapshots and the
step record (the batch is ready on the device)::

    zero_grad;  L = window_loss(x, y, h0).loss_sum / count;  L.backward();
    n = ||g||_2 (get_total_norm);  g <- g * c / n if n > c;  Adam step;  isfinite(theta)

with ``h0`` a carried (detached) state. Throughput is ``B T / t_step`` characters per second
(``count = B T``: no ignored targets in the stream layout).

Its parts, each timed on its own, interleaved with the whole step in one process:

* ``recurrent``: ``e = embedding(x)``; ``o, _ = rnn(e, h0)``; ``o.backward(G)`` with a fixed
  upstream gradient ``G = dL/do`` (T, B, H) -- forward + backward of the embedding and the
  recurrent layer (weights and embedding gradients);
* ``head``: ``L = CE(head(dropout(o*)), y) / count`` forward + backward on a fixed recurrent
  output ``o*`` (T, B, H) that requires grad -- the Linear H -> V and the softmax
  cross-entropy (``rnncore.losses.cross_entropy_sum``), with
  the gradients of the head's weights and of ``o*``;
* ``update``: the gradient norm, the conditional clip, Adam's step and the finiteness check
  (the trainer's update phase) on the gradients the two parts above just wrote.

``remainder = t_step - (t_recurrent + t_head + t_update)`` (medians) is reported as it comes
out: autograd's glue between the parts, ``zero_grad``, the loss and count read-back, Python
overhead -- and timing noise, so it can be negative. ``StepCase.check`` proves the parts
are the same computation: from the same weights, optimizer state and dropout masks, the
gradients and updated weights the parts produce equal the whole step's.
"""
from __future__ import annotations

import copy
from dataclasses import dataclass

import torch
from torch import Tensor

from benchmarks.measure import median, time_interleaved
from rnncore.trainer import make_optimizer

PARTS = ("recurrent", "head", "update")
LAYER_NAMES = {"bptt": "rnncore.LSTM (bptt)", "autograd": "rnncore.LSTM (autograd)",
               "native": "torch.nn.LSTM"}


@dataclass(frozen=True)
class StepBatch:
    """``inputs``/``targets`` (B, T) long of the timed window, ``prev_inputs`` (B, T) the
    window before it (read once to make the carried start state), ``vocab_size`` V."""

    inputs: Tensor
    targets: Tensor
    prev_inputs: Tensor
    vocab_size: int
    source: str


def step_batch(source: str, batch: int, window: int, vocab_size: int, seed: int = 0
               ) -> StepBatch:
    """Two consecutive windows of the trainer's stream layout.

    ``"corpus"``: the Tang corpus through ``rnncore.data`` (``prepare_data``, the epoch-0
    ``poem_stream``, ``StreamBatcher`` with chunk length ``window``), V = the corpus
    vocabulary (``vocab_size`` is ignored). ``"random"``: ids uniform in [4, V) (the four
    special ids excluded), V = ``vocab_size``; the step's cost does not depend on the ids."""
    from rnncore import data as D

    if source == "corpus":
        prepared = D.prepare_data(D.DataConfig(corpus="tang"))
        batcher = D.StreamBatcher(D.poem_stream(prepared.train, seed=seed, epoch=0), batch,
                                  chunk_len=window)
        prev, _ = batcher.next_chunk()
        x, y = batcher.next_chunk()
        if x.shape[1] != window:
            raise ValueError(f"the corpus is too short for batch {batch} x 2 windows of {window}")
        return StepBatch(x, y, prev, len(prepared.vocab), source)
    if source != "random":
        raise ValueError(f"unknown step data {source!r} (choose corpus or random)")
    if vocab_size <= D.Vocab.eos_id + 1:
        raise ValueError(f"vocab_size must exceed the 4 special tokens, got {vocab_size}")
    gen = torch.Generator().manual_seed(seed)
    stream = torch.randint(D.Vocab.eos_id + 1, vocab_size, (batch, 2 * window + 1),
                           generator=gen)
    return StepBatch(stream[:, window:2 * window].contiguous(),
                     stream[:, window + 1:].contiguous(), stream[:, :window].contiguous(),
                     vocab_size, source)


class StepCase:
    """One model (``head``: ``ModelConfig.head``), its Adam, one window, and the timed
    functions ``fns`` (``step`` and the ``PARTS``). Call the parts in the order recurrent,
    head, update: ``update`` consumes the gradients the other two leave
    (``measure_step_breakdown`` interleaves them so)."""

    def __init__(self, engine: str, data: StepBatch, *, embedding_dim: int, hidden_size: int,
                 num_layers: int, dropout: float, clip: float, lr: float, device: str,
                 seed: int = 0, head: str = "full") -> None:
        from rnncore.model import CharRNN, ModelConfig

        torch.manual_seed(seed)
        cfg = ModelConfig(cell="lstm", vocab_size=data.vocab_size, embedding_dim=embedding_dim,
                          hidden_size=hidden_size, num_layers=num_layers, dropout=dropout,
                          engine=engine, head=head)
        self.engine = engine
        self.device = device
        self.clip = clip
        self.model = CharRNN(cfg).to(device).train()
        self.params = list(self.model.parameters())
        self.recurrent_params = [*self.model.embedding.parameters(),
                                 *self.model.rnn.parameters()]
        self.head_params = list(self.model.head.parameters())
        self.optimizer = make_optimizer(self.params, "adam", lr=lr)
        self.inputs = data.inputs.to(device)
        self.targets = data.targets.to(device)
        with torch.no_grad():  # the state carried in from the window before
            _, state = self.model(data.prev_inputs.to(device))
        self.state = tuple(s.detach() for s in state)
        self.chars = self.inputs.numel()
        self.out_fixed, self.grad_fixed = self.reference_output()

    # --- the pieces -----------------------------------------------------------------------

    def _loss_sum(self, out: Tensor) -> tuple[Tensor, int]:
        """Sum of -log p(y | dropout(out)) (the model's head) over the time-major output
        ``out`` (T, B, H) and the count of real targets, as ``rnncore.truncation.window_loss``
        forms them."""
        from rnncore.data import IGNORE_INDEX

        return (self.model.head_loss_sum(out, self.targets.t()),
                int((self.targets != IGNORE_INDEX).sum()))

    def _layer_output(self) -> Tensor:
        """Embedding + recurrent layer from the carried state, as ``window_loss`` runs
        them: the output (T, B, H) time-major."""
        out, _ = self.model.rnn(self.model.embed_time_major(self.inputs), self.state)
        return out.transpose(0, 1)

    def reference_output(self) -> tuple[Tensor, Tensor]:
        """The recurrent output o (T, B, H) at the current weights, as a leaf that requires
        grad, and dL/do of the step's loss: the fixed inputs of ``head`` and ``recurrent``.
        Draws the dropout masks in the whole step's order (layer, then head)."""
        # with autograd on, as in the step: torch.nn.LSTM's no-grad forward takes another
        # (inference) kernel whose output differs in the last bits
        out = self._layer_output().detach().requires_grad_(True)
        loss_sum, count = self._loss_sum(out)
        grad, = torch.autograd.grad(loss_sum / max(count, 1), out)
        return out, grad.detach()

    def step(self) -> float:
        """The whole truncated training step (see the module docstring); returns the loss
        sum (nats), which the trainer reads back for its record."""
        from rnncore.truncation import window_loss

        self.optimizer.zero_grad(set_to_none=True)
        out = window_loss(self.model, self.inputs, self.targets, self.state)
        (out.loss_sum / max(out.count, 1)).backward()
        loss = float(out.loss_sum.detach())
        self.update()
        return loss

    def recurrent(self) -> None:
        """Embedding + recurrent layer forward and backward with the fixed dL/do."""
        for p in self.recurrent_params:
            p.grad = None
        self._layer_output().backward(self.grad_fixed)

    def head(self) -> Tensor:
        """Dropout + Linear H -> V + cross-entropy forward and backward on the fixed o*;
        returns the loss sum (detached, not read back)."""
        for p in self.head_params:
            p.grad = None
        self.out_fixed.grad = None
        loss_sum, count = self._loss_sum(self.out_fixed)
        (loss_sum / max(count, 1)).backward()
        return loss_sum.detach()

    def update(self) -> None:
        """Gradient norm, clip when it exceeds ``clip``, Adam step, finiteness check: the
        update phase of ``Trainer.train_step``."""
        grads = [p.grad for p in self.params if p.grad is not None]
        norm = torch.nn.utils.get_total_norm(grads, norm_type=2.0)
        if self.clip > 0 and float(norm) > self.clip:
            torch.nn.utils.clip_grads_with_norm_(self.params, self.clip, norm)
        self.optimizer.step()
        bool(torch.stack([torch.isfinite(p).all() for p in self.params]).all())

    @property
    def fns(self) -> dict:
        return {"step": self.step, "recurrent": self.recurrent, "head": self.head,
                "update": self.update}

    # --- the parts are the whole ------------------------------------------------------------

    def check(self, seed: int = 1234) -> dict:
        """Run the whole step, then (from the same weights, Adam state and RNG seed, hence
        the same dropout masks) ``reference_output`` + recurrent + head + update, and compare:

        ``grad_relative_error = ||g_parts - g_step|| / ||g_step||`` over all parameters
        (after clipping), ``param_max_abs_diff`` = max |theta_parts - theta_step| after the
        update, ``loss_abs_diff`` of the two losses. Leaves the case as it found it."""
        model_state = copy.deepcopy(self.model.state_dict())
        opt_state = copy.deepcopy(self.optimizer.state_dict())
        fixed = self.out_fixed, self.grad_fixed
        try:
            torch.manual_seed(seed)
            loss_step = self.step()
            g_step = torch.cat([p.grad.reshape(-1) for p in self.params]).double()
            w_step = torch.cat([p.detach().reshape(-1) for p in self.params]).clone()

            self.model.load_state_dict(model_state)
            self.optimizer.load_state_dict(opt_state)
            self.optimizer.zero_grad(set_to_none=True)
            torch.manual_seed(seed)
            self.out_fixed, self.grad_fixed = self.reference_output()
            torch.manual_seed(seed)
            self.recurrent()  # draws the layer's dropout masks, so head() draws the head's
            loss_parts = float(self.head())
            self.update()
            g_parts = torch.cat([p.grad.reshape(-1) for p in self.params]).double()
            w_parts = torch.cat([p.detach().reshape(-1) for p in self.params])
            return {"grad_relative_error": float((g_parts - g_step).norm()
                                                 / g_step.norm().clamp_min(1e-300)),
                    "param_max_abs_diff": float((w_parts - w_step).abs().max()),
                    "loss_abs_diff": abs(loss_parts - loss_step)}
        finally:
            self.model.load_state_dict(model_state)
            self.optimizer.load_state_dict(opt_state)
            self.optimizer.zero_grad(set_to_none=True)
            self.out_fixed, self.grad_fixed = fixed


def measure_step_breakdown(engines: tuple[str, ...], data: StepBatch, *, embedding_dim: int,
                           hidden_size: int, num_layers: int, dropout: float, clip: float,
                           lr: float, device: str, warmup: int, repeats: int, seed: int = 0
                           ) -> list[dict]:
    """Median seconds of the whole step and of each part, for every engine, all functions
    run round-robin (engine by engine: step, recurrent, head, update) so that load changes
    hit them alike. Rows (one per engine and ``part`` in step, recurrent, head, update,
    remainder): ``median_s``, ``share`` = median_s / the step's median_s, ``chars_per_s``
    (the step's: B T / median_s), the check's errors on every row of the engine."""
    cases = {e: StepCase(e, data, embedding_dim=embedding_dim, hidden_size=hidden_size,
                         num_layers=num_layers, dropout=dropout, clip=clip, lr=lr,
                         device=device, seed=seed) for e in engines}
    checks = {e: c.check() for e, c in cases.items()}
    fns = {f"{e}|{name}": fn for e, c in cases.items() for name, fn in c.fns.items()}
    times = time_interleaved(fns, device, warmup, repeats)
    B, T = data.inputs.shape
    rows = []
    for e in engines:
        common = {"engine": e, "layer": LAYER_NAMES.get(e, e), "batch": B, "window": T,
                  "vocab_size": data.vocab_size, "embedding_dim": embedding_dim,
                  "hidden_size": hidden_size, "num_layers": num_layers, "dropout": dropout,
                  "clip": clip, "data": data.source, "device": device, **checks[e]}
        t_step = median(times[f"{e}|step"])
        chars_per_s = B * T / t_step
        rows.append({**common, "part": "step", "median_s": t_step,
                     "min_s": min(times[f"{e}|step"]), "times_s": times[f"{e}|step"],
                     "share": 1.0, "chars_per_s": chars_per_s})
        explained = 0.0
        for part in PARTS:
            ts = times[f"{e}|{part}"]
            t = median(ts)
            explained += t
            rows.append({**common, "part": part, "median_s": t, "min_s": min(ts),
                         "times_s": ts, "share": t / t_step, "chars_per_s": chars_per_s})
        # per round, to show its spread; the row's value is from the medians so that the
        # shares add up to 1
        per_round = [times[f"{e}|step"][i] - sum(times[f"{e}|{p}"][i] for p in PARTS)
                     for i in range(repeats)]
        rows.append({**common, "part": "remainder", "median_s": t_step - explained,
                     "min_s": min(per_round), "times_s": per_round,
                     "share": (t_step - explained) / t_step, "chars_per_s": chars_per_s})
    return rows
