"""Deciding the length of a free-length poem: an end symbol, a stop unit, or a length
predicted at the start, compared by the length distribution of their samples.

One character model (``StopLM``: a ``CharRNN`` plus two small heads) reads
y_0 = <bos>, y_1..y_n (characters and marks), y_{n+1} = <eos>; h_t (B, T, H) is its state
after reading y_t:

    softmax    p(y_{t+1} | y_<=t) = softmax(W h_t)        (B, T, V), <eos> among the V
    stop unit  s_t = sigmoid(w . h_t + b)                 (B, T): p(the poem ends after y_t)
    length     q = softmax(U h_0 + c)                     (B, K): p(n lines = 2k + 2), read
                                                          from the state after <bos>
    loss = mean_t -log p(y_{t+1} | y_<=t)
         + mean_t BCE(s_t, [y_{t+1} = <eos>])             t = 0..n, one 1 per poem
         + mean_poems -log q[lines / 2 - 1]

Three decoders end a sample (characters drawn at temperature 1 throughout):

    eos     draw from the softmax, <eos> included; the poem ends when <eos> is drawn
    stop    after each token draw stop ~ Bernoulli(s_t); if not stopping, draw from the
            softmax without <eos> (renormalised: p(c | not <eos>), what a softmax trained
            without <eos> targets estimates), so the softmax never ends a poem
    length  draw the line count L ~ q first, then characters without <eos> until L lines
            (end marks) are written

A sample that reaches ``max_tokens`` is cut there (``unfinished``). Each decoder's line
counts are compared with the held-out poems': total variation TV = 1/2 sum_L |p(L) - r(L)|
and Wasserstein-1 W1 = sum_L |P(L) - R(L)| (lines; P, R the CDFs), plus mean and median.

Poems: the full corpus's free-length ones (``corpus="quantangshi"``: Poem.form ==
OTHER_FORM, at most ``max_lines`` lines), or a synthetic corpus of varied line counts built
from the bundled poems' couplets (``corpus="synthetic"``, for tests). The shipped result
(the tarball; 18 minutes on one busy core; its command is stored in it; numbers in
docs/textbook/stopping.md): ``python -m rnncore.textbook.stopping --epochs 1
--hidden-size 96 --embedding-dim 48 --min-freq 3 --samples 150 --out ...``
"""
from __future__ import annotations

import argparse
import random
import sys
import time
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from rnncore.configs import DictConfig, check_positive_ints
from rnncore.data import IGNORE_INDEX, Vocab, collate_poems
from rnncore.model import CharRNN, ModelConfig
from rnncore.textbook.results import progress, read_result, result_path, run_and_write

DECODERS = ("eos", "stop", "length")
CORPORA = ("quantangshi", "synthetic")
RESULT_FILE = "stopping.json"


class StoppingError(ValueError):
    """A bad request for the length experiment (one-line message)."""


@dataclass
class StoppingConfig(DictConfig):
    """``max_poems``: the first N free-length poems (quick runs); ``samples``: poems each
    decoder writes; ``max_lines``: longer poems are left out (the length head's classes);
    ``min_freq``: rarer training characters become <unk> (a smaller softmax; never
    sampled)."""

    config_error = StoppingError

    corpus: str = "quantangshi"
    cell: str = "lstm"
    embedding_dim: int = 64
    hidden_size: int = 128
    epochs: int = 3
    batch_size: int = 32
    lr: float = 3e-3
    max_lines: int = 24
    max_poems: int | None = None
    min_freq: int = 1
    samples: int = 400
    val_fraction: float = 0.1
    seed: int = 0

    def __post_init__(self) -> None:
        if self.corpus not in CORPORA:
            raise StoppingError(f"corpus must be one of {', '.join(CORPORA)}, got "
                                f"{self.corpus!r}")
        if self.cell not in ("lstm", "gru", "rnn"):
            raise StoppingError(f"cell must be lstm, gru or rnn, got {self.cell!r}")
        check_positive_ints(self, ("embedding_dim", "hidden_size", "epochs", "batch_size",
                                   "max_lines", "max_poems", "samples", "min_freq"),
                            optional=("max_poems",))
        if self.max_lines < 2 or self.max_lines % 2:
            raise StoppingError(f"max_lines must be an even number >= 2, got {self.max_lines}")
        if not 0.0 < float(self.val_fraction) < 1.0:
            raise StoppingError(f"val_fraction must be in (0, 1), got {self.val_fraction}")


# --------------------------------------------------------------------------- poems

def synthetic_poems(n: int = 600, seed: int = 0) -> list:
    """``n`` poems of 2..16 lines (even counts, skewed to short), each made of couplets of
    the bundled 七律 drawn at random: real characters, varied lengths."""
    from rnncore.data import Poem, load_corpus

    couplets = [p.lines[i : i + 2] for p in load_corpus("tang").poems[:400]
                for i in range(0, 8, 2)]
    rng = random.Random(seed)
    counts, weights = [2, 4, 6, 8, 10, 12, 14, 16], [3, 6, 4, 5, 2, 3, 1, 1]
    return [Poem("", "", [line for _ in range(lines // 2) for line in rng.choice(couplets)])
            for lines in rng.choices(counts, weights, k=n)]


def free_length_poems(cfg: StoppingConfig) -> list:
    """The poems of ``cfg.corpus`` of free length, at most ``max_lines`` lines."""
    if cfg.corpus == "synthetic":
        poems = synthetic_poems(cfg.max_poems or 600, cfg.seed)
    else:
        from rnncore.data import OTHER_FORM, load_corpus

        poems = [p for p in load_corpus(cfg.corpus).poems if p.form == OTHER_FORM]
    poems = [p for p in poems if len(p.lines) <= cfg.max_lines][: cfg.max_poems]
    if len(poems) < 10:
        raise StoppingError(f"only {len(poems)} free-length poems: need at least 10")
    return poems


def line_count(text: str) -> int:
    """Lines of a sample: its end marks (a cut-off tail without one is not a line)."""
    from rnncore.poetry import END_MARKS

    return sum(c in END_MARKS for c in text)


# --------------------------------------------------------------------------- model

class StopLM(nn.Module):
    """``lm`` (CharRNN) plus ``stop`` Linear(H, 1) and ``length`` Linear(H, K)."""

    def __init__(self, vocab_size: int, cfg: StoppingConfig) -> None:
        super().__init__()
        self.lm = CharRNN(ModelConfig(cell=cfg.cell, vocab_size=vocab_size,
                                      embedding_dim=cfg.embedding_dim,
                                      hidden_size=cfg.hidden_size, num_layers=1))
        self.stop = nn.Linear(cfg.hidden_size, 1)
        self.length = nn.Linear(cfg.hidden_size, cfg.max_lines // 2)

    def forward(self, tokens: torch.Tensor, state=None):
        """tokens (B, T) -> logits (B, T, V), stop logits (B, T), length logits (B, K) (from
        position 0), state."""
        out, state = self.lm.rnn(self.lm.embedding(tokens), state)
        return (self.lm.head(out), self.stop(out)[..., 0], self.length(out[:, 0]), state)


def stopping_loss(logits: torch.Tensor, stop_logits: torch.Tensor,
                  length_logits: torch.Tensor, targets: torch.Tensor,
                  lines: torch.Tensor, eos_id: int) -> dict[str, torch.Tensor]:
    """The three terms of the module docstring's loss. targets (B, T) with IGNORE_INDEX at
    padding, lines (B,) the poems' line counts."""
    real = targets != IGNORE_INDEX
    char = F.cross_entropy(logits.flatten(0, 1), targets.flatten(), ignore_index=IGNORE_INDEX)
    stop = F.binary_cross_entropy_with_logits(stop_logits[real],
                                              (targets[real] == eos_id).to(stop_logits.dtype))
    length = F.cross_entropy(length_logits, lines // 2 - 1)
    return {"char": char, "stop": stop, "length": length}


def _batches(seqs: list[list[int]], batch_size: int, rng: random.Random) -> list[list[int]]:
    """Indices in batches of similar length (less padding), the batches in random order."""
    order = sorted(range(len(seqs)), key=lambda i: (len(seqs[i]), rng.random()))
    batches = [order[i : i + batch_size] for i in range(0, len(order), batch_size)]
    rng.shuffle(batches)
    return batches


def train_stop_lm(model: StopLM, seqs: list[list[int]], lines: list[int],
                  cfg: StoppingConfig, eos_id: int, progress=None) -> list[dict[str, float]]:
    """Adam over ``cfg.epochs`` epochs of whole-poem batches; -> mean loss terms per epoch."""
    rng = random.Random(cfg.seed)
    opt = torch.optim.Adam(model.parameters(), lr=cfg.lr)
    history = []
    for _ in range(cfg.epochs):
        model.train()
        sums: Counter = Counter()
        batches = _batches(seqs, cfg.batch_size, rng)
        for b, idx in enumerate(batches):
            if progress and b % 50 == 0:
                progress(f"epoch {len(history) + 1}: batch {b} of {len(batches)}")
            batch = collate_poems([seqs[i] for i in idx])
            logits, stop, length, _ = model(batch.inputs)
            terms = stopping_loss(logits, stop, length, batch.targets,
                                  torch.tensor([lines[i] for i in idx]), eos_id)
            opt.zero_grad()
            sum(terms.values()).backward()
            nn.utils.clip_grad_norm_(model.parameters(), 5.0)
            opt.step()
            sums.update({k: v.item() for k, v in terms.items()})
        history.append({k: v / len(batches) for k, v in sums.items()})
        if progress:
            progress(f"epoch {len(history)}: " + ", ".join(f"{k} {v:.3f}" for k, v in
                                                          history[-1].items()))
    return history


@torch.no_grad()
def sample_lengths(model: StopLM, vocab: Vocab, decoder: str, n: int, max_tokens: int,
                   generator: torch.Generator) -> tuple[list[str], int]:
    """Write ``n`` poems with ``decoder``; -> (their texts, how many reached
    ``max_tokens`` unfinished)."""
    from rnncore.poetry import END_MARKS

    if decoder not in DECODERS:
        raise StoppingError(f"decoder must be one of {', '.join(DECODERS)}, got {decoder!r}")
    model.eval()
    allowed = torch.tensor([len(s) == 1 for s in vocab.itos])  # characters and marks
    allowed[vocab.unk_id] = False
    with_eos = allowed.clone()
    with_eos[vocab.eos_id] = True
    is_mark = torch.tensor([len(s) == 1 and s in END_MARKS for s in vocab.itos])
    tok = torch.full((n,), vocab.bos_id, dtype=torch.long)
    done = torch.zeros(n, dtype=torch.bool)
    written = torch.zeros(n, dtype=torch.long)  # lines (end marks) written so far
    target, rows, state = None, [], None
    for t in range(max_tokens):
        logits, stop, length, state = model(tok[:, None], state)
        if t == 0 and decoder == "length":  # L = 2(k + 1), k ~ q
            k = torch.multinomial(F.softmax(length, -1), 1, generator=generator)[:, 0]
            target = 2 * (k + 1)
        mask = with_eos if decoder == "eos" else allowed
        probs = F.softmax(logits[:, 0].float().masked_fill(~mask, float("-inf")), -1)
        tok = torch.multinomial(probs, 1, generator=generator)[:, 0]
        if decoder == "eos":
            ends = tok == vocab.eos_id
        elif decoder == "stop":  # the unit decides on the state after the last token
            ends = torch.rand(n, generator=generator) < torch.sigmoid(stop[:, 0].float())
        else:
            ends = written >= target
        done |= ends
        tok = torch.where(done, torch.full_like(tok, vocab.pad_id), tok)
        written += is_mark[tok]
        rows.append(tok)
        if bool(done.all()):
            break
    texts = [vocab.decode(row) for row in torch.stack(rows, 1).tolist()]
    return texts, int((~done).sum())


# --------------------------------------------------------------------------- distances

def histogram(values: list[int], support: list[int]) -> np.ndarray:
    counts = Counter(values)
    return np.array([counts[v] for v in support], float) / max(len(values), 1)


def total_variation(p: np.ndarray, q: np.ndarray) -> float:
    """TV = 1/2 sum |p - q| of two distributions on the same support."""
    return float(0.5 * np.abs(p - q).sum())


def wasserstein_1(a: list[int], b: list[int]) -> float:
    """W1 between two samples of integers: sum over the support of |CDF_a - CDF_b|."""
    support = np.arange(min(min(a), min(b)), max(max(a), max(b)) + 1)
    ca = np.searchsorted(np.sort(a), support, side="right") / len(a)
    cb = np.searchsorted(np.sort(b), support, side="right") / len(b)
    return float(np.abs(ca - cb).sum())


# --------------------------------------------------------------------------- result

@dataclass
class StoppingResult:
    """``lines[name]`` / ``chars[name]``: line and character counts of the held-out poems
    (name "held-out") and of each decoder's samples; ``unfinished[decoder]``: samples cut
    at ``max_tokens``; ``history``: mean training loss terms per epoch."""

    config: dict
    n_train: int
    n_test: int
    max_tokens: int
    lines: dict[str, list[int]]
    chars: dict[str, list[int]]
    unfinished: dict[str, int]
    history: list[dict[str, float]]
    seconds: float
    command: str = ""
    extra: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> "StoppingResult":
        return cls(**data)

    @property
    def support(self) -> list[int]:
        return list(range(2, self.config["max_lines"] + 1, 2))

    def distance(self, decoder: str) -> dict[str, float]:
        """TV and W1 of the decoder's line counts against the held-out poems' (TV over
        the support 2..max_lines plus one bin for everything else, odd counts included)."""
        real, fake = self.lines["held-out"], self.lines[decoder]
        bins = self.support + [-1]
        fold = [v if v in self.support else -1 for v in fake]
        p, q = histogram(fold, bins), histogram(real, bins)
        return {"tv": total_variation(p, q), "w1": wasserstein_1(fake, real),
                "mean": float(np.mean(fake)), "median": float(np.median(fake)),
                "chars_mean": float(np.mean(self.chars[decoder])),
                "chars_w1": wasserstein_1(self.chars[decoder], self.chars["held-out"])}

    def describe(self) -> str:
        """What the numbers say (computed, not fixed text)."""
        real = self.lines["held-out"]
        d = {k: self.distance(k) for k in DECODERS}
        names = {"eos": "the <eos> symbol", "stop": "the stop unit",
                 "length": "the predicted length"}
        text = (f"{self.n_test} held-out poems have {np.mean(real):.1f} lines on average "
                f"(median {np.median(real):.0f}). ")
        text += "; ".join(f"ending with {names[k]}: mean {d[k]['mean']:.1f}, median "
                          f"{d[k]['median']:.0f}, TV {d[k]['tv']:.2f}, W1 {d[k]['w1']:.2f} "
                          f"lines" for k in DECODERS) + ". "
        best = min(DECODERS, key=lambda k: d[k]["w1"])
        worst = max(DECODERS, key=lambda k: d[k]["w1"])
        text += (f"{names[best].capitalize()} matches the real length distribution best "
                 f"(W1 {d[best]['w1']:.2f} lines against {d[worst]['w1']:.2f} for "
                 f"{names[worst]}). ")
        short = [names[k] for k in DECODERS if d[k]["mean"] < np.mean(real) - 0.5]
        long_ = [names[k] for k in DECODERS if d[k]["mean"] > np.mean(real) + 0.5]
        if short or long_:
            text += ("Biased: " + ", ".join([f"{n} too short" for n in short]
                                            + [f"{n} too long" for n in long_]) + ". ")
        cut = sum(self.unfinished.values())
        if cut:
            text += f"{cut} samples ran to the {self.max_tokens}-token cap unfinished."
        return text.strip()


def measure_stopping(cfg: StoppingConfig | None = None, progress=None) -> StoppingResult:
    """Train one StopLM on the free-length poems, sample with each decoder, count lines.
    ``progress``: None or a callable taking one line of text per epoch."""
    from rnncore.data import split_poems

    cfg = cfg or StoppingConfig()
    torch.manual_seed(cfg.seed)
    start = time.perf_counter()
    train, test = split_poems(free_length_poems(cfg), cfg.val_fraction, cfg.seed)
    vocab = Vocab.build((p.text for p in train), min_freq=cfg.min_freq)
    seqs = [vocab.encode_poem(p.text) for p in train]
    model = StopLM(len(vocab), cfg)
    history = train_stop_lm(model, seqs, [len(p.lines) for p in train], cfg, vocab.eos_id,
                            progress)
    max_tokens = int(1.5 * max(len(s) for s in seqs))
    gen = torch.Generator().manual_seed(cfg.seed)
    lines = {"held-out": [len(p.lines) for p in test]}
    chars = {"held-out": [len(p.text) for p in test]}
    unfinished, examples = {}, {}
    for decoder in DECODERS:
        texts, unfinished[decoder] = sample_lengths(model, vocab, decoder, cfg.samples,
                                                    max_tokens, gen)
        lines[decoder] = [line_count(t) for t in texts]
        chars[decoder] = [len(t) for t in texts]
        examples[decoder] = texts[:3]
    return StoppingResult(cfg.to_dict(), len(train), len(test), max_tokens, lines, chars,
                          unfinished, history, time.perf_counter() - start,
                          extra={"torch": torch.__version__, "vocab": len(vocab),
                                 "examples": examples})


def load_stopping_result(path: str | Path | None = None) -> StoppingResult:
    """The shipped result (or one at ``path``); ``StoppingError`` if unreadable."""
    return read_result(StoppingResult, path or result_path(RESULT_FILE), StoppingError,
                       "stopping")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m rnncore.textbook.stopping",
                                description=__doc__.split("\n\n")[0])
    p.add_argument("--corpus", choices=CORPORA, default="quantangshi")
    p.add_argument("--epochs", type=int, default=3)
    p.add_argument("--hidden-size", type=int, default=128)
    p.add_argument("--max-poems", type=int, default=None)
    p.add_argument("--samples", type=int, default=400)
    p.add_argument("--min-freq", type=int, default=1)
    p.add_argument("--embedding-dim", type=int, default=64)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default=None, help="write the JSON here (default: stdout)")
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    cfg = dict(corpus=args.corpus, epochs=args.epochs, hidden_size=args.hidden_size,
               embedding_dim=args.embedding_dim, max_poems=args.max_poems,
               samples=args.samples, min_freq=args.min_freq, seed=args.seed)
    return run_and_write(lambda: measure_stopping(StoppingConfig(**cfg), progress), args.out,
                         "python -m rnncore.textbook.stopping " + " ".join(
                             argv if argv is not None else sys.argv[1:]))

if __name__ == "__main__":
    sys.exit(main())
