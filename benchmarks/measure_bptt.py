"""Full vs truncated vs randomized BPTT: step time, peak memory, gradient fidelity.

A *training step over a sequence* is: tokens (B, T) and targets (B, T) from the bundled corpus,
read by a ``CharRNN`` (one layer) from the zero state, with the update windows of
``rnncore.truncation`` (its ``windows``, ``window_loss`` and ``draw_keep_factors``):

* ``full``: one window [0, T), loss over all T positions, one update;
* ``truncated`` TBPTT(k1, k2): updates every k1 new tokens; the window of an update ending at
  e is the last ``W = min(e, n + k2 - k1)`` tokens (n = new tokens, k1 or the remainder),
  started from the *detached* state at e - W, loss on the last n positions;
* ``randomized``: the truncated windows with the gradient on each recurrent edge multiplied
  by xi in {0, 1/p} (``keep_prob`` = p), unbiased for the window's gradient.

With an optimizer each window is one update (what training does: the time per token then
includes the optimizer); without one the windows' gradients of ``loss_sum / (B T)`` are
accumulated, which for ``full`` is exactly the gradient of the mean loss over the sequence,
so the truncated estimate can be compared with it (``gradient_fidelity``).
"""
from __future__ import annotations

import time
from dataclasses import dataclass

import torch
from torch import Tensor

from benchmarks.measure import median, memory_profile, peak_memory, time_interleaved
from rnncore.trainer import make_optimizer
from rnncore.truncation import Window, draw_keep_factors, window_loss, windows

FLOAT_BYTES = 4


@dataclass(frozen=True)
class Strategy:
    """``kind`` in full | truncated | randomized; k1 = ``update_interval`` <= k2 =
    ``truncation_len`` (ignored for full); ``keep_prob`` = p of randomized truncation."""

    kind: str
    truncation_len: int = 0
    update_interval: int = 0
    keep_prob: float = 0.9

    def __post_init__(self) -> None:
        if self.kind not in ("full", "truncated", "randomized"):
            raise ValueError(f"unknown strategy {self.kind!r}")
        if self.kind != "full" and not 0 < self.update_interval <= self.truncation_len:
            raise ValueError(f"need 0 < k1 <= k2, got k1={self.update_interval}, "
                             f"k2={self.truncation_len}")

    @classmethod
    def full(cls) -> "Strategy":
        return cls("full")

    @classmethod
    def truncated(cls, k2: int, k1: int | None = None) -> "Strategy":
        return cls("truncated", k2, k1 or k2)

    @classmethod
    def randomized(cls, k2: int, keep_prob: float = 0.9, k1: int | None = None) -> "Strategy":
        return cls("randomized", k2, k1 or k2, keep_prob)

    @property
    def label(self) -> str:
        if self.kind == "full":
            return "full"
        k = (f"k={self.truncation_len}" if self.update_interval == self.truncation_len
             else f"k1={self.update_interval} k2={self.truncation_len}")
        return f"tbptt {k}" if self.kind == "truncated" else f"randomized {k} p={self.keep_prob}"

    def plan(self, seq_len: int) -> list[Window]:
        """The update windows over [0, seq_len), by ``rnncore.truncation``'s rule."""
        if self.kind == "full":
            return [Window(0, seq_len, seq_len, seq_len)]
        return windows(seq_len, self.truncation_len, self.update_interval)

    def windows(self, seq_len: int) -> list[tuple[int, int, int]]:
        """(start, end, loss_len) of each window over [0, seq_len)."""
        return [(w.start, w.end, w.loss_len) for w in self.plan(seq_len)]


def sequence_step(model, inputs: Tensor, targets: Tensor, strategy: Strategy,
                  optimizer: torch.optim.Optimizer | None = None, clip_norm: float = 0.0,
                  generator: torch.Generator | None = None) -> float:
    """One pass over the sequence with ``strategy``; returns the mean loss (nats/char).

    With ``optimizer``: one update per window on ``loss_sum / count``. Without: gradients of
    ``loss_sum / (B T)`` accumulate in ``.grad`` (call ``model.zero_grad()`` first)."""
    B, T = inputs.shape
    state, total = None, 0.0
    gen = generator or torch.Generator().manual_seed(0)
    for w in strategy.plan(T):
        keep = None
        if strategy.kind == "randomized":
            keep = draw_keep_factors(w.end - w.start, B, strategy.keep_prob, gen)
        out = window_loss(model, inputs[:, w.start:w.end], targets[:, w.start:w.end], state,
                          loss_len=w.loss_len, carry_at=w.carry_at, keep_factors=keep)
        if optimizer is not None:
            optimizer.zero_grad(set_to_none=True)
            (out.loss_sum / out.count).backward()
            if clip_norm > 0:
                torch.nn.utils.clip_grad_norm_(model.parameters(), clip_norm)
            optimizer.step()
        else:
            (out.loss_sum / (B * T)).backward()
        total += float(out.loss_sum.detach())
        state = out.carry
    return total / (B * T)


# --- data and model ------------------------------------------------------------------------

_STREAM_CACHE: dict = {}


def corpus_stream(max_poems: int = 4000) -> Tensor:
    """The bundled corpus as one token stream (poems in corpus order), vocab by frequency."""
    if max_poems not in _STREAM_CACHE:
        from rnncore import data as D

        prepared = D.prepare_data(D.DataConfig(corpus="tang", max_poems=max_poems))
        stream = D.poem_stream(prepared.train, shuffle=False)
        _STREAM_CACHE[max_poems] = torch.tensor(stream, dtype=torch.long)
    return _STREAM_CACHE[max_poems]


def corpus_batch(batch: int, seq_len: int, vocab_size: int, offset: int = 0
                 ) -> tuple[Tensor, Tensor]:
    """(inputs, targets), each (B, T), consecutive characters of the corpus stream; ids
    beyond ``vocab_size`` (the rarer characters: ids are sorted by frequency) become
    ``<unk>`` so the output head stays small and the layer dominates the measurement."""
    from rnncore.data import Vocab

    stream = corpus_stream()
    need = batch * (seq_len + 1)
    reps = -(-(offset + need) // stream.numel())
    stream = stream.repeat(reps)[offset:offset + need].reshape(batch, seq_len + 1)
    stream = torch.where(stream < vocab_size, stream, torch.full_like(stream, Vocab.unk_id))
    return stream[:, :-1].contiguous(), stream[:, 1:].contiguous()


def make_model(cell: str, vocab_size: int, embedding_dim: int, hidden_size: int,
               device: str, engine: str = "bptt", seed: int = 0):
    from rnncore.model import CharRNN, ModelConfig

    torch.manual_seed(seed)
    cfg = ModelConfig(cell=cell, vocab_size=vocab_size, embedding_dim=embedding_dim,
                      hidden_size=hidden_size, num_layers=1, engine=engine)
    return CharRNN(cfg).to(device)


# --- analytic memory -----------------------------------------------------------------------

def layer_floats_per_step(cell: str, hidden_size: int) -> int:
    """Floats per batch row and time step that BPTT through the layer must keep:
    LSTM i, f, g, o, c, h (6H); GRU r, z, n, h and W_hn h + b_hn (5H); RNN h (H)."""
    return {"lstm": 6, "gru": 5, "rnn": 1}[cell] * hidden_size


def analytic_activation_bytes(cell: str, batch: int, seq_len: int, embedding_dim: int,
                              hidden_size: int, vocab_size: int) -> dict:
    """Activation memory full BPTT of the layer + head model must keep from the forward for
    the backward, per the minimal bookkeeping (float32):

        per step and row:  E (embedded input, for dW_ih)  +  layer (see
        ``layer_floats_per_step``)  +  V (the log-softmax the loss keeps)

    (the logits themselves are freed once the loss is formed; ``rnncore.losses`` turns the
    saved log-softmax into the logits' gradient in place). The measured *peak* also holds
    the backward's working set: dL/dout (B, T, H) from the head, the gate gradients (one
    block, at most ``functional.backward.GRAD_BLOCK_BYTES``) and dx (B, T, E), so it exceeds this by
    a bounded factor."""
    per_row = embedding_dim + layer_floats_per_step(cell, hidden_size) + vocab_size
    per_step = batch * per_row * FLOAT_BYTES
    return {"per_step_bytes": per_step, "total_bytes": per_step * seq_len,
            "layer_per_step_bytes": batch * layer_floats_per_step(cell, hidden_size) * FLOAT_BYTES}


# --- measurements --------------------------------------------------------------------------

def default_strategies(truncations, uneven: tuple[int, int], randomized_k: int = 64
                       ) -> list[Strategy]:
    out = [Strategy.full()] + [Strategy.truncated(k) for k in truncations]
    out.append(Strategy.truncated(uneven[1], uneven[0]))
    out.append(Strategy.randomized(randomized_k))
    return out


def training_step(cell: str, strategy: Strategy, x: Tensor, y: Tensor, *,
                  embedding_dim: int, hidden_size: int, vocab_size: int, device: str):
    """A fresh model (seed 0) and its optimizer, as the trainer builds it; returns
    (model, step) where ``step()`` runs ``sequence_step`` over (x, y) with ``strategy``
    (an update per window)."""
    model = make_model(cell, vocab_size, embedding_dim, hidden_size, device)
    opt = make_optimizer(model.parameters(), "adam", lr=1e-3)
    gen = torch.Generator().manual_seed(0)
    return model, lambda: sequence_step(model, x, y, strategy, optimizer=opt, generator=gen)


def measure_steps(cell: str, strategies: list[Strategy], seq_len: int, *, batch: int,
                  embedding_dim: int, hidden_size: int, vocab_size: int, device: str,
                  repeats: int, warmup: int = 1, memory_labels=None) -> list[dict]:
    """Time and peak memory of one training step (windows of the strategy, Adam update per
    window) over T = ``seq_len`` characters, for each of ``strategies`` on the same batch.

    Each strategy gets its own model (same initial weights) and optimizer; after
    ``warmup`` steps each (which also creates Adam's state, so it is not counted as a
    peak), the strategies' steps run round-robin ``repeats`` times
    (``measure.time_interleaved``), so load changes on a shared machine hit them alike and
    their ratios hold; the median is reported. Peak memory is then measured, outside the
    timing (the profiler slows the step), for the strategies whose label is in
    ``memory_labels`` (all when None)."""
    x, y = (t.to(device) for t in corpus_batch(batch, seq_len, vocab_size))
    cases = {}
    for s in strategies:
        model, step = training_step(cell, s, x, y, embedding_dim=embedding_dim,
                                    hidden_size=hidden_size, vocab_size=vocab_size,
                                    device=device)
        cases[s.label] = (s, model, step)
    times = time_interleaved({label: c[2] for label, c in cases.items()}, device,
                             warmup=warmup, repeats=repeats)
    rows = []
    for label, (strategy, model, step) in cases.items():
        t = median(times[label])
        row = {
            "cell": cell, "strategy": label, "kind": strategy.kind,
            "truncation_len": strategy.truncation_len or seq_len,
            "update_interval": strategy.update_interval or seq_len,
            "seq_len": seq_len, "batch": batch, "hidden_size": hidden_size,
            "embedding_dim": embedding_dim, "vocab_size": vocab_size, "device": device,
            "median_s": t, "times_s": times[label],
            "us_per_token": t / (batch * seq_len) * 1e6,
            "windows": len(strategy.windows(seq_len)),
        }
        if memory_labels is None or label in memory_labels:
            model.zero_grad(set_to_none=True)
            row["peak_bytes"] = peak_memory(step, device)
            analytic = analytic_activation_bytes(cell, batch, seq_len, embedding_dim,
                                                 hidden_size, vocab_size)
            row["analytic_bytes"] = analytic["total_bytes"]
            row["analytic_per_step_bytes"] = analytic["per_step_bytes"]
            if strategy.kind == "full":
                row["retained_bytes"] = forward_retained_bytes(model, x, y, device)
        rows.append(row)
    return rows


def measure_step(cell: str, strategy: Strategy, seq_len: int, *, repeats: int,
                 memory: bool = True, **kw) -> dict:
    """``measure_steps`` for one strategy (``memory``: measure its peak too)."""
    return measure_steps(cell, [strategy], seq_len, repeats=repeats,
                         memory_labels=None if memory else (), **kw)[0]


def forward_retained_bytes(model, x: Tensor, y: Tensor, device: str) -> int:
    """Memory the full-BPTT forward (and loss) of the whole sequence leaves allocated for
    the backward: the measured counterpart of ``analytic_activation_bytes``."""
    model.zero_grad(set_to_none=True)
    return memory_profile(lambda: window_loss(model, x, y, None), device)["retained_bytes"]


def flat_grad(model) -> Tensor:
    return torch.cat([p.grad.reshape(-1) if p.grad is not None else torch.zeros(p.numel(),
                      device=p.device) for p in model.parameters()])


def gradient_of(model, x: Tensor, y: Tensor, strategy: Strategy, seed: int = 0) -> Tensor:
    """The accumulated gradient of ``loss_sum / (B T)`` over the sequence under ``strategy``."""
    model.zero_grad(set_to_none=True)
    sequence_step(model, x, y, strategy, generator=torch.Generator().manual_seed(seed))
    g = flat_grad(model).detach().clone()
    model.zero_grad(set_to_none=True)
    return g


def compare_gradients(approx: Tensor, exact: Tensor) -> dict:
    """cosine = <a, e> / (|a| |e|);  relative error = |a - e| / |e|."""
    a, e = approx.double(), exact.double()
    cos = float(a @ e / (a.norm() * e.norm()).clamp_min(1e-300))
    rel = float((a - e).norm() / e.norm().clamp_min(1e-300))
    return {"cosine": cos, "relative_error": rel}


def gradient_fidelity(model, cell: str, strategies: list[Strategy], x: Tensor, y: Tensor,
                      trained: bool) -> list[dict]:
    """Each strategy's gradient vs the full-BPTT gradient on the same batch (no updates)."""
    was_training = model.training
    model.train()
    exact = gradient_of(model, x, y, Strategy.full())
    rows = []
    for s in strategies:
        if s.kind == "full":
            continue
        cmp = compare_gradients(gradient_of(model, x, y, s), exact)
        rows.append({"cell": cell, "strategy": s.label, "kind": s.kind,
                     "truncation_len": s.truncation_len, "update_interval": s.update_interval,
                     "seq_len": x.shape[1], "batch": x.shape[0], "trained": trained, **cmp})
    model.train(was_training)
    return rows


def convergence_run(cell: str, strategy: Strategy, *, seconds: float, eval_every_seconds: float,
                    batch: int, seq_len: int, embedding_dim: int, hidden_size: int,
                    device: str, data=None, eval_max_poems: int = 200, seed: int = 0):
    """Train with ``rnncore.trainer.Trainer`` for ``seconds`` of *training* wall-clock and
    record validation bits per character every ``eval_every_seconds`` (evaluation time is
    not counted, so strategies are compared at equal training budget).

    ``full`` trains on whole poems (the trainer's full-BPTT layout, ``seq_len`` unused);
    truncated/randomized read the poem stream with the strategy's k1, k2 and p.
    Returns (rows, trainer): one row per evaluation, and the trainer (its ``.model`` is
    the trained model, reused for gradient fidelity)."""
    from rnncore import data as D
    from rnncore.model import ModelConfig
    from rnncore.trainer import Trainer, TrainConfig

    kw = {}
    if strategy.kind != "full":
        kw = dict(truncation_len=strategy.truncation_len, update_interval=strategy.update_interval,
                  randomized_keep_prob=strategy.keep_prob)
    tcfg = TrainConfig(strategy=strategy.kind, batch_size=batch, max_steps=None,
                       max_minutes=max(seconds / 60.0, 1e-3), eval_every=0,
                       eval_max_poems=eval_max_poems, device=device, seed=seed, **kw)
    mcfg = ModelConfig(cell=cell, vocab_size=8, embedding_dim=embedding_dim,
                       hidden_size=hidden_size, num_layers=1)
    trainer = Trainer(mcfg, tcfg, D.DataConfig(corpus="tang"), data=data)
    rows = []

    def record(train_s: float, tokens: int) -> None:
        ev = trainer.evaluate()
        rows.append({"cell": cell, "strategy": strategy.label, "kind": strategy.kind,
                     "truncation_len": strategy.truncation_len,
                     "seconds": train_s, "step": trainer.step, "tokens": tokens,
                     "val_bpc": ev.val_bpc, "val_loss": ev.val_loss})

    train_s, tokens, next_eval = 0.0, 0, eval_every_seconds
    record(0.0, 0)
    while train_s < seconds:
        t0 = time.perf_counter()
        rec = trainer.train_step()  # synchronizes CUDA before returning
        train_s += time.perf_counter() - t0
        tokens += rec.tokens
        if train_s >= next_eval:
            record(train_s, tokens)
            next_eval += eval_every_seconds
    if rows[-1]["step"] != trainer.step:
        record(train_s, tokens)
    return rows, trainer
