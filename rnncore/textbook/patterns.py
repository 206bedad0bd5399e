"""Design patterns 1 and 2 of the chapter, trained on the poems for the same CPU time.

Char LM indexing: a poem is c_0 = <bos>, c_1 .. c_n; the input at step t is x_t = c_t and
the target y_t = c_(t+1), so **the true previous output is the current input:
y_(t-1) = x_t**.

Pattern 1 (hidden-to-hidden recurrence, an output every step) is ``CharRNN(cell="rnn")``:
    h_t = tanh(W_ih e(x_t) + W_hh h_(t-1) + b),   o_t = V h_t + c
trained by BPTT through the chain h_0 -> h_1 -> ... (rnncore's hand-derived engine).

Pattern 2 (recurrence only from the output at t-1 into the hidden units at t) is
``OutputRecurrentLM``:
    h_t = tanh(U e(x_t) + sum_(j=1..k) W_j y_(t-j) + b),   o_t = V h_t + c
with k = ``order`` (the textbook's figure: k = 1) and W_j (H, V) applied to a V-vector:
  * teacher forcing (training and scoring, ``feedback="teacher"``): y_(t-j) is the one-hot
    TRUE character c_(t-j+1), so W_j y is a row lookup and nothing depends on an earlier
    hidden state: all T steps are one batched product, no BPTT through a hidden chain.
    Since y_(t-1) = x_t, the model reads exactly the last k true characters
    x_(t-k+1) .. x_t (k = 1: a bigram model): a fixed window, which is the textbook's
    "less expressive", measured below rather than assumed;
  * free running (``feedback="own"``): y_(t-j) is the network's own output softmax(o_(t-j))
    (V-vector), so W_j y = softmax(o_(t-j)) W_j^T; steps are sequential again.
    (Scoring held-out text, the true characters are known, so teacher forcing is also the
    fair test mode; ``own`` shows what the teacher-forced weights do when fed their own
    predictions.) Before the poem (t - j < 0) y is the zero vector.

Measured for each model on the held-out poems: bits per character after the same CPU-time
budget (``fit``), CPU seconds per step, and **usable history**: the loss of every target
y_t when the model may read only the start token and the last c characters
x_0, x_(t-c+1) .. x_t (from the zero state, as a poem starts; targets with t <= c keep
their whole history), for c = 1, 2, 4, ...; the usable history is the smallest c from
which on the loss stays within ``tolerance`` bits of the loss with the whole poem.
Shapes: tokens (B, T), embeddings (B, T, E), h (B, T, H), logits (B, T, V).
Recompute the shipped result: ``python -m rnncore.textbook.patterns --out
rnncore/assets/results/patterns.json`` (defaults; ~3 CPU minutes on one thread).
"""
from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from rnncore.configs import DictConfig
from rnncore.data import IGNORE_INDEX, Vocab, collate_poems
from rnncore.textbook.fit import LN2, FitError, check_budget, fit, parameter_count
from rnncore.configs import check_positive_ints
from rnncore.textbook.results import JSONResult, read_result, result_path, run_cli

COMMAND = "python -m rnncore.textbook.patterns --out rnncore/assets/results/patterns.json"
RESULT_NAME = "patterns.json"
FEEDBACKS = ("teacher", "own")


class PatternsError(FitError):
    """A bad request for the design-pattern comparison (one-line message)."""


class OutputRecurrentLM(nn.Module):
    """Pattern 2: ``embedding`` e (V, E), ``U`` Linear(E, H) (holds b), ``W`` k tables
    (V, H) (row v = W_j applied to the one-hot of v), ``head`` Linear(H, V)."""

    def __init__(self, vocab_size: int, embedding_dim: int, hidden_size: int,
                 order: int = 1) -> None:
        super().__init__()
        if isinstance(order, bool) or not isinstance(order, int) or order < 1:
            raise PatternsError(f"order must be a positive integer, got {order!r}")
        self.order = order
        self.embedding = nn.Embedding(vocab_size, embedding_dim, padding_idx=Vocab.pad_id)
        self.U = nn.Linear(embedding_dim, hidden_size)
        self.W = nn.ModuleList(nn.Embedding(vocab_size, hidden_size) for _ in range(order))
        self.head = nn.Linear(hidden_size, vocab_size)

    def hidden(self, tokens: Tensor) -> Tensor:
        """Teacher forcing: tokens (B, T) -> h (B, T, H), every step at once."""
        a = self.U(self.embedding(tokens))
        T = tokens.shape[1]
        for j, table in enumerate(self.W, start=1):
            # y_(t-j) = x_(t-j+1) for t >= j (inputs 1 .. T-j moved to steps j .. T-1),
            # the zero vector before the poem's first output
            if j < T:
                a = a + F.pad(table(tokens[:, 1:T - j + 1]), (0, 0, j, 0))
        return torch.tanh(a)

    def forward(self, tokens: Tensor, state=None, feedback: str = "teacher"
                ) -> tuple[Tensor, None]:
        """tokens (B, T) -> (logits (B, T, V), None); ``feedback`` "teacher" (the true
        previous characters) or "own" (softmax of its own previous outputs)."""
        if feedback == "teacher":
            return self.head(self.hidden(tokens)), None
        if feedback != "own":
            raise PatternsError(f"feedback must be one of {', '.join(FEEDBACKS)}")
        ux, outs = self.U(self.embedding(tokens)), []
        for t in range(tokens.shape[1]):
            a = ux[:, t]
            for j, table in enumerate(self.W, start=1):
                if t - j >= 0:
                    a = a + torch.softmax(outs[t - j], -1) @ table.weight
            outs.append(self.head(torch.tanh(a)))
        return torch.stack(outs, 1), None


def hidden_states(model: nn.Module, tokens: Tensor) -> Tensor:
    """tokens (B, T) -> the head's input (B, T, H) from the zero state, for a ``CharRNN``
    or an ``OutputRecurrentLM`` (teacher forcing)."""
    if isinstance(model, OutputRecurrentLM):
        return model.hidden(tokens)
    return model.rnn(model.embedding(tokens))[0]


def _bits(logits: Tensor, targets: Tensor) -> Tensor:
    """-log2 softmax(logits)[target]: logits (..., V), targets (...) -> (...), 0 at
    ``IGNORE_INDEX``."""
    return F.cross_entropy(logits.transpose(1, -1) if logits.dim() == 3 else logits,
                           targets, ignore_index=IGNORE_INDEX, reduction="none") / LN2


@torch.no_grad()
def context_bits(model: nn.Module, poems: list[list[int]], contexts, chunk: int = 2048
                 ) -> tuple[dict[int, float], float]:
    """Mean bits per character of the held-out ``poems`` when step t reads only the poem's
    start token x_0 and the last c inputs x_(t-c+1) .. x_t (from the zero state, as every
    poem starts), for each c in ``contexts``; and with the whole poem. Targets with t <= c
    have nothing older to drop and keep the whole-poem loss. Returns ({c: bits}, full)."""
    model.eval()
    batch = collate_poems(poems)
    x, y = batch.inputs, batch.targets
    valid = y != IGNORE_INDEX
    full = _bits(model.head(hidden_states(model, x)), y)          # (P, n)
    out = {}
    for c in contexts:
        bits = full.clone()
        if c + 1 < x.shape[1]:
            # window s = x_s .. x_(s+c-1) predicts y_(s+c-1); behind the poem's start token
            # x_0 it is a full history for s <= 1, so only s >= 2 drops characters
            win = x.unfold(1, c, 1)[:, 2:]                          # (P, n - c - 1, c)
            tgt, keep = y[:, c + 1:], valid[:, c + 1:]
            start = x[:, :1, None].expand(-1, win.shape[1], 1)
            rows, rtgt = torch.cat([start, win], 2)[keep], tgt[keep]   # (N, c + 1)
            got = torch.cat([_bits(model.head(hidden_states(model, rows[i:i + chunk])[:, -1]),
                                   rtgt[i:i + chunk]) for i in range(0, len(rows), chunk)])
            part = torch.zeros_like(tgt, dtype=bits.dtype)
            part[keep] = got
            bits[:, c + 1:] = part
        out[int(c)] = float(bits[valid].mean())
    return out, float(full[valid].mean())


@torch.no_grad()
def own_feedback_bpc(model: OutputRecurrentLM, poems: list[list[int]]) -> float:
    """Held-out bits per character of pattern 2 fed its own softmax outputs."""
    model.eval()
    batch = collate_poems(poems)
    bits = _bits(model(batch.inputs, feedback="own")[0], batch.targets)
    return float(bits[batch.targets != IGNORE_INDEX].mean())


@dataclass
class PatternsConfig(DictConfig):
    """Both patterns get ``embedding_dim`` E and ``hidden_size`` H; pattern 2 is trained for
    each window ``orders`` k; every model gets ``seconds`` of CPU time (one thread).
    ``val_poems``: the first N held-out poems (None = all 362); ``contexts``: the c of the
    usable-history measurement; ``tolerance``: bits above the whole-poem loss that still
    count as using the history."""

    config_error = PatternsError

    embedding_dim: int = 32
    hidden_size: int = 64
    orders: tuple[int, ...] = (1, 4)
    seconds: float = 180.0
    batch_size: int = 32
    lr: float = 3e-3
    seed: int = 0
    val_poems: int | None = None
    contexts: tuple[int, ...] = (1, 2, 3, 4, 6, 8, 12, 16, 24, 32, 48)
    tolerance: float = 0.02

    def __post_init__(self) -> None:
        check_positive_ints(self, ("embedding_dim", "hidden_size", "batch_size", "val_poems"),
                            optional=("val_poems",))
        try:
            check_budget(None, self.seconds)
        except FitError as exc:
            raise PatternsError(str(exc)) from None
        self.orders, self.contexts = tuple(self.orders), tuple(sorted(set(self.contexts)))
        for name in ("orders", "contexts"):
            vals = getattr(self, name)
            if not vals or any(isinstance(v, bool) or not isinstance(v, int) or v < 1
                               for v in vals):
                raise PatternsError(f"{name} must be positive integers, got {vals!r}")


@dataclass
class PatternsResult(JSONResult):
    """``models``: one dict per model: name, pattern (1 or 2), order (k, pattern 2),
    parameters, fit (``FitRecord.to_dict``), context {c: bits}, full_bits, usable (the
    usable history in characters, None if no c reached it), own_bpc (pattern 2 fed its
    own outputs)."""

    config: dict
    models: list
    poems: int
    command: str = COMMAND
    extra: dict = field(default_factory=dict)

    @classmethod
    def from_dict(cls, data: dict) -> "PatternsResult":
        r = super().from_dict(data)
        for m in r.models:               # JSON turned the context keys into strings
            m["context"] = {int(c): b for c, b in m["context"].items()}
        return r

    def model(self, name: str) -> dict:
        return next(m for m in self.models if m["name"] == name)

    def describe(self) -> str:
        """What the numbers say (computed from them)."""
        rnn = self.model("pattern 1")
        p2 = [m for m in self.models if m["pattern"] == 2]
        f1 = rnn["fit"]
        text = (f"With {f1['cpu_seconds']:.0f} CPU seconds each (one thread) and "
                f"{self.poems} held-out poems: pattern 1, the tanh RNN, took "
                f"{f1['steps']} steps ({1000 * f1['sec_per_step']:.0f} ms each) and reaches "
                f"{f1['val_bpc']:.2f} bits per character; it uses {_usable(rnn)} of "
                f"history (from there on the loss is within {self.config['tolerance']} bits "
                f"of the whole poem's {rnn['full_bits']:.2f}; reading one character it needs "
                f"{rnn['context'][min(rnn['context'])]:.2f}). ")
        for m in p2:
            f = m["fit"]
            ratio = f1["sec_per_step"] / f["sec_per_step"]
            text += (f"Pattern 2 with k = {m['order']} fed-back true character"
                     f"{'s' if m['order'] > 1 else ''} took {f['steps']} steps "
                     f"({1000 * f['sec_per_step']:.0f} ms each, {ratio:.1f}× "
                     f"{'faster' if ratio >= 1 else 'slower'} per step) and reaches "
                     f"{f['val_bpc']:.2f} bits; its usable history is {_usable(m)} "
                     f"(measured; the design can read at most {m['order']}). ")
        best = min(p2, key=lambda m: m["fit"]["val_bpc"])
        faster = all(m["fit"]["sec_per_step"] < f1["sec_per_step"] for m in p2)
        if best["fit"]["val_bpc"] > f1["val_bpc"]:
            worse = best["fit"]["val_bpc"] - f1["val_bpc"]
            text += (f"So {'pattern 2 is cheaper per step, but ' if faster else ''}at equal "
                     f"time pattern 2 ends {worse:.2f} bits worse "
                     f"than pattern 1: the fixed window of true characters is the less "
                     f"expressive model, as the textbook says. ")
        else:
            text += (f"At equal time pattern 2 ends {f1['val_bpc'] - best['fit']['val_bpc']:.2f}"
                     f" bits better than pattern 1: contrary to the textbook's ranking, the "
                     f"RNN's longer history did not pay for its slower steps in this budget. ")
        first = [(m, m["fit"]["curve"][0]) for m in self.models]
        lead = min(first, key=lambda mc: mc[1][2])[0]
        text += (f"Early in training (the first evaluation, after "
                 f"{first[0][1][1]:.0f} s) {lead['name']} is ahead. ")
        own = [m for m in p2 if m.get("own_bpc") is not None]
        if own:
            text += ("Fed its own softmax instead of the true previous character, pattern 2 "
                     "scores " + ", ".join(f"{m['own_bpc']:.2f} (k = {m['order']})"
                                          for m in own) + " bits per character.")
        return text


def _usable(m: dict) -> str:
    u = m["usable"]
    return f"more than {max(m['context'])} characters" if u is None else (
        f"{u} character{'s' if u > 1 else ''}")


def usable_history(context: dict[int, float], full: float, tolerance: float) -> int | None:
    """The smallest c from which on (c and every longer context measured) the loss stays
    within ``tolerance`` bits of the whole-poem loss; None if even the longest does not."""
    usable = None
    for c in sorted(context, reverse=True):
        if abs(context[c] - full) > tolerance:
            break
        usable = c
    return usable


def measure_patterns(cfg: PatternsConfig | None = None, data=None) -> PatternsResult:
    """Train pattern 1 and pattern 2 (each ``orders`` k) for ``cfg.seconds`` of CPU time
    each on the bundled poems; score the held-out poems."""
    from rnncore.data import DataConfig, prepare_data
    from rnncore.model import CharRNN, ModelConfig

    cfg = cfg or PatternsConfig()
    data = data or prepare_data(DataConfig())
    val = data.val[:cfg.val_poems]
    V, E, H = len(data.vocab), cfg.embedding_dim, cfg.hidden_size
    builders = [("pattern 1", 1, None, lambda: CharRNN(ModelConfig(
        cell="rnn", vocab_size=V, embedding_dim=E, hidden_size=H, num_layers=1)))]
    builders += [(f"pattern 2, k={k}", 2, k, lambda k=k: OutputRecurrentLM(V, E, H, k))
                 for k in cfg.orders]
    models = []
    for name, pattern, order, build in builders:
        torch.manual_seed(cfg.seed)
        model = build()
        rec = fit(model, data.train, val, seconds=cfg.seconds, batch_size=cfg.batch_size,
                  lr=cfg.lr, seed=cfg.seed)
        ctx, full = context_bits(model, val, cfg.contexts)
        models.append({
            "name": name, "pattern": pattern, "order": order,
            "parameters": parameter_count(model), "fit": rec.to_dict(), "context": ctx,
            "full_bits": full, "usable": usable_history(ctx, full, cfg.tolerance),
            "own_bpc": own_feedback_bpc(model, val) if pattern == 2 else None})
    return PatternsResult(config=cfg.to_dict(), models=models, poems=len(val),
                          extra={"torch": torch.__version__, "vocab_size": V})


def load_patterns(path=None) -> PatternsResult:
    """The shipped result (or one at ``path``); ``PatternsError`` if missing or malformed."""
    return read_result(PatternsResult, path or result_path(RESULT_NAME), PatternsError,
                       "design-pattern")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m rnncore.textbook.patterns",
                                description="Design patterns 1 and 2 at equal CPU time.")
    p.add_argument("--seconds", type=float, default=PatternsConfig.seconds,
                   help="CPU seconds of training per model")
    p.add_argument("--orders", type=int, nargs="+", default=list(PatternsConfig.orders))
    p.add_argument("--hidden-size", type=int, default=PatternsConfig.hidden_size)
    return run_cli(p, lambda a: measure_patterns(PatternsConfig(
        seconds=a.seconds, orders=tuple(a.orders), hidden_size=a.hidden_size,
        val_poems=a.val_poems, seed=a.seed)), argv)


if __name__ == "__main__":
    sys.exit(main())
