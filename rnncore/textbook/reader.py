"""Sequence to one, read in both directions: one class per poem from a bidirectional reader,
against a reader that reads forward only and a bag of characters.

A poem's characters x_1..x_T (marks included; no <bos>/<eos>) -> one class of C:

    e_t  = E[x_t]                                      (B, T, E)
    h→_t = cell(e_t, h→_{t-1}),   h→_0 = 0            rnncore GRU/LSTM, bidirectional=True
    h←_t = cell'(e_t, h←_{t+1}),  h←_{T+1} = 0        (own weights, the ``_reverse`` ones)
    z    = [h→_T ; h←_1]                               (B, 2H): h_n of a packed batch, so each
                                                       row stops at its own T
    p(c | x) = softmax(W z + b)_c                      (B, C)

``forward`` keeps z = h→_T (B, H): the same layer with ``bidirectional=False`` (half the
recurrent weights). ``bag`` ignores order: p(c | x) = softmax(W f + b) with
f = (1/T) sum_t onehot(x_t) (V,), the character frequencies (multinomial logistic
regression, ``nn.EmbeddingBag(mode="mean")``). All three minimise the mean cross-entropy
with Adam (the bag with a ``BAG_LR_FACTOR`` times larger step) and are scored by held-out
accuracy after every epoch.

Tasks (``TASKS``):

* ``"rhyme"`` (the bundled 七律, always present): the poem's 平水韻 rhyme group (the one
  group its even lines share: ``poetry.check_rhyme``; poems with none or several are
  dropped, so are groups with under ``min_group`` poems) from its FIRST COUPLET ONLY, with
  line 2's last character (a rhyme character by definition) replaced by "□". Line 1's last
  character is kept: it rhymes when the poem's first line rhymes (``controls`` says how
  often), which the reader has to find out from its tone and position.
* ``"dynasty"`` (the chinese-poetry tarball: ``quantangshi`` and ``quansongshi``): Tang or
  Song from the whole text. Only the four regulated forms (五絕 七絕 五律 七律); texts in both
  collections are dropped from both; then each form gets the same number of Tang and Song
  poems (at most ``max_per_form`` each), so length and form say nothing about the class.

The held-out part is ``val_fraction`` of the examples (``split_poems``, by ``seed``); the
vocabulary is built on the training part only. The shipped results
(``assets/results/reader_<task>.json``, each with its command; docs/textbook/readers.md):
``python -m rnncore.textbook.reader --task rhyme --out ...`` (2 minutes on one core) and
``... --task dynasty --max-per-form 2000 --epochs 4 --out ...`` (the tarball; 30 minutes).
"""
from __future__ import annotations

import argparse
import math
import random
import sys
import time
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence

from rnncore.configs import DictConfig, check_positive_ints
from rnncore.data import Vocab
from rnncore.textbook.results import progress, read_result, result_path, run_and_write

TASKS = ("rhyme", "dynasty")
READERS = ("bag", "forward", "bidirectional")
MASK = "□"  # the lacuna mark: never inside a validated poem, so it only marks the hidden char
BAG_LR_FACTOR = 10
RESULT_FILES = {"rhyme": "reader_rhyme.json", "dynasty": "reader_dynasty.json"}


class ReaderError(ValueError):
    """A bad request for the sequence-to-one readers (one-line message)."""


@dataclass
class ReaderConfig(DictConfig):
    """What to learn and how. ``max_poems``: the first N bundled poems (rhyme task, quick
    runs); ``max_per_form``: Tang and Song poems per form each (dynasty task)."""

    config_error = ReaderError

    task: str = "rhyme"
    cell: str = "gru"
    embedding_dim: int = 64
    hidden_size: int = 128
    epochs: int = 8
    batch_size: int = 64
    lr: float = 3e-3
    val_fraction: float = 0.15
    min_group: int = 100
    max_poems: int | None = None
    max_per_form: int | None = None
    seed: int = 0

    def __post_init__(self) -> None:
        if self.task not in TASKS:
            raise ReaderError(f"task must be one of {', '.join(TASKS)}, got {self.task!r}")
        if self.cell not in ("gru", "lstm"):
            raise ReaderError(f"cell must be gru or lstm, got {self.cell!r}")
        check_positive_ints(self, ("embedding_dim", "hidden_size", "epochs", "batch_size",
                                   "min_group", "max_poems", "max_per_form"),
                            optional=("max_poems", "max_per_form"))
        if not 0.0 < float(self.val_fraction) < 1.0:
            raise ReaderError(f"val_fraction must be in (0, 1), got {self.val_fraction}")
        if not float(self.lr) > 0:
            raise ReaderError(f"lr must be positive, got {self.lr}")


# --------------------------------------------------------------------------- examples

@dataclass
class Examples:
    """``texts[i]`` (what the reader sees) has class ``classes[labels[i]]``."""

    texts: list[str]
    labels: list[int]
    classes: list[str]
    controls: dict = field(default_factory=dict)


def rhyme_examples(cfg: ReaderConfig) -> Examples:
    """The bundled 七律's first couplets (line 2's rhyme character masked) -> rhyme group."""
    from rnncore.data import load_corpus
    from rnncore.poetry import check_rhyme, rhyme_table

    table, rows = rhyme_table(), []
    for poem in load_corpus("tang").poems[: cfg.max_poems]:
        check = check_rhyme(poem.lines, table)
        if check.valid and len(check.groups) == 1:
            line1, line2 = poem.lines[0], poem.lines[1]
            rows.append((line1 + line2[:-2] + MASK + line2[-1], check.groups[0],
                         check.first_line_rhymes))
    counts = Counter(group for _, group, _ in rows)
    classes = sorted((g for g, n in counts.items() if n >= cfg.min_group),
                     key=lambda g: (-counts[g], g))
    if len(classes) < 2:
        raise ReaderError(f"fewer than 2 rhyme groups have {cfg.min_group} poems: lower "
                          f"min_group or use more poems")
    index = {g: k for k, g in enumerate(classes)}
    kept = [r for r in rows if r[1] in index]
    return Examples([t for t, _, _ in kept], [index[g] for _, g, _ in kept], classes, {
        "poems_with_one_rhyme_group": len(rows), "groups_dropped": len(counts) - len(classes),
        "first_line_rhymes": sum(r[2] for r in kept) / len(kept),
        "sees": "line 1 + line 2 with its last character masked"})


def dynasty_examples(cfg: ReaderConfig) -> Examples:
    """Tang and Song regulated poems, exact duplicates across the two dropped, the same
    number of each per form."""
    from rnncore.data import load_corpus
    from rnncore.poetry import FORMS

    corpora = {d: load_corpus(name).poems for d, name in (("Tang", "quantangshi"),
                                                         ("Song", "quansongshi"))}
    shared = {p.text for p in corpora["Tang"]} & {p.text for p in corpora["Song"]}
    rng = random.Random(cfg.seed)
    texts, labels, per_form = [], [], {}
    for form in FORMS:
        pools = [[p.text for p in corpora[d] if p.form == form and p.text not in shared]
                 for d in ("Tang", "Song")]
        n = min(len(pools[0]), len(pools[1]), cfg.max_per_form or len(pools[0]))
        per_form[form] = n
        for label, pool in enumerate(pools):
            picked = sorted(rng.sample(range(len(pool)), n))
            texts += [pool[i] for i in picked]
            labels += [label] * n
    return Examples(texts, labels, ["Tang", "Song"], {
        "shared_texts_removed": len(shared), "per_form_each": per_form,
        "sees": "the whole poem; forms 五絕 七絕 五律 七律 only, balanced per form"})


def encode(texts: list[str], vocab: Vocab) -> tuple[torch.Tensor, torch.Tensor]:
    """texts -> tokens (N, T_max) long padded with ``pad_id``, lengths (N,) long."""
    lengths = torch.tensor([len(t) for t in texts])
    tokens = torch.full((len(texts), int(lengths.max())), Vocab.pad_id, dtype=torch.long)
    for i, text in enumerate(texts):
        tokens[i, : len(text)] = torch.tensor(vocab.encode(text))
    return tokens, lengths


# --------------------------------------------------------------------------- readers

class RecurrentReader(nn.Module):
    """Embedding (V, E) -> rnncore GRU/LSTM (one or two directions) -> Linear(dirs*H, C)."""

    def __init__(self, vocab_size: int, num_classes: int, cfg: ReaderConfig,
                 bidirectional: bool) -> None:
        super().__init__()
        from rnncore.layers import GRU, LSTM

        self.embedding = nn.Embedding(vocab_size, cfg.embedding_dim, padding_idx=Vocab.pad_id)
        self.rnn = {"gru": GRU, "lstm": LSTM}[cfg.cell](
            cfg.embedding_dim, cfg.hidden_size, batch_first=True, bidirectional=bidirectional)
        self.out = nn.Linear(cfg.hidden_size * (2 if bidirectional else 1), num_classes)

    def pooled(self, tokens: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """tokens (B, T), lengths (B,) -> z (B, dirs*H) = [h→_T ; h←_1] per row."""
        packed = pack_padded_sequence(self.embedding(tokens), lengths.cpu(), batch_first=True,
                                      enforce_sorted=False)
        _, state = self.rnn(packed)
        h_n = state[0] if isinstance(state, tuple) else state  # (dirs, B, H)
        return torch.cat(list(h_n), dim=-1)

    def forward(self, tokens: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        return self.out(self.pooled(tokens, lengths))


class BagReader(nn.Module):
    """logits = W f + b, f the character frequencies (padding excluded)."""

    def __init__(self, vocab_size: int, num_classes: int) -> None:
        super().__init__()
        self.bag = nn.EmbeddingBag(vocab_size, num_classes, mode="mean",
                                   padding_idx=Vocab.pad_id)
        self.bias = nn.Parameter(torch.zeros(num_classes))

    def forward(self, tokens: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        return self.bag(tokens) + self.bias


def make_reader(kind: str, vocab_size: int, num_classes: int, cfg: ReaderConfig) -> nn.Module:
    if kind == "bag":
        return BagReader(vocab_size, num_classes)
    return RecurrentReader(vocab_size, num_classes, cfg, bidirectional=kind == "bidirectional")


@torch.no_grad()
def predict(model: nn.Module, tokens: torch.Tensor, lengths: torch.Tensor,
            batch_size: int = 512) -> torch.Tensor:
    model.eval()
    return torch.cat([model(tokens[i : i + batch_size], lengths[i : i + batch_size]).argmax(-1)
                      for i in range(0, len(tokens), batch_size)])


def train_reader(model: nn.Module, train: tuple, test: tuple, cfg: ReaderConfig,
                 seed: int, progress=None) -> tuple[list[float], torch.Tensor]:
    """Adam on the mean cross-entropy; -> (held-out accuracy after each epoch, the final
    held-out predictions). ``train``/``test``: (tokens, lengths, labels)."""
    gen = torch.Generator().manual_seed(seed)
    # a linear model on frequencies takes larger steps than a recurrent one (at cfg.lr the
    # bag is still far from its optimum after the epochs the readers need)
    lr = cfg.lr * (BAG_LR_FACTOR if isinstance(model, BagReader) else 1)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    tokens, lengths, labels = train
    curve = []
    for _ in range(cfg.epochs):
        model.train()
        order = torch.randperm(len(labels), generator=gen)
        for i in range(0, len(order), cfg.batch_size):
            idx = order[i : i + cfg.batch_size]
            width = int(lengths[idx].max())
            loss = F.cross_entropy(model(tokens[idx, :width], lengths[idx]), labels[idx])
            opt.zero_grad()
            loss.backward()
            nn.utils.clip_grad_norm_(model.parameters(), 5.0)
            opt.step()
        pred = predict(model, *test[:2])
        curve.append(float((pred == test[2]).double().mean()))
        if progress:
            progress(f"{type(model).__name__} epoch {len(curve)}: held-out {curve[-1]:.3f}")
    return curve, pred


# --------------------------------------------------------------------------- result

@dataclass
class ReaderResult:
    """``accuracy[reader]``: held-out accuracy after each epoch; ``discordant[a][b]``: held-
    out examples reader a gets right and b wrong (final epoch); ``majority``: always the
    most frequent training class."""

    config: dict
    task: str
    classes: list[str]
    n_train: int
    n_test: int
    majority: float
    accuracy: dict[str, list[float]]
    discordant: dict[str, dict[str, int]]
    parameters: dict[str, int]
    seconds: dict[str, float]
    controls: dict
    command: str = ""
    extra: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> "ReaderResult":
        return cls(**data)

    def final(self, reader: str) -> float:
        return self.accuracy[reader][-1]

    def mcnemar(self, a: str, b: str) -> float:
        """(n_ab - n_ba) / sqrt(n_ab + n_ba): > 2 says a beats b beyond noise."""
        ab, ba = self.discordant[a][b], self.discordant[b][a]
        return (ab - ba) / math.sqrt(ab + ba) if ab + ba else 0.0

    def describe(self) -> str:
        """What the numbers say (computed, not fixed text)."""
        acc = {r: self.final(r) for r in READERS}
        what = ("the rhyme group of a 七律 from its first couplet (line 2's rhyme character "
                "masked)" if self.task == "rhyme" else "Tang or Song from the text "
                "(regulated forms, balanced per form)")
        text = (f"Predicting {what} on {self.n_test} held-out poems ({len(self.classes)} "
                f"classes, majority {self.majority:.1%}): bag of characters "
                f"{acc['bag']:.1%}, forward reader {acc['forward']:.1%}, bidirectional "
                f"{acc['bidirectional']:.1%}. ")
        z = self.mcnemar("bidirectional", "forward")
        diff = acc["bidirectional"] - acc["forward"]
        if z > 2:
            text += (f"Reading both ways gains {diff:+.1%} (McNemar z = {z:.1f}): the "
                     "backward pass helps, as the textbook says. ")
        elif z < -2:
            text += (f"Reading both ways loses {diff:+.1%} (McNemar z = {z:.1f}), against the "
                     "textbook's claim. ")
        else:
            text += (f"The bidirectional reader's {diff:+.1%} is within noise (McNemar "
                     f"z = {z:.1f}): here the second direction does not help, unlike the "
                     "textbook's claim. ")
        best = max(("forward", "bidirectional"), key=acc.get)
        zb = self.mcnemar(best, "bag")
        if zb > 2:
            text += (f"Order matters: the {best} reader beats the bag of characters by "
                     f"{acc[best] - acc['bag']:+.1%} (z = {zb:.1f}).")
        elif zb < -2:
            text += (f"The bag of characters beats even the {best} reader by "
                     f"{acc['bag'] - acc[best]:+.1%} (z = {-zb:.1f}): what decides the class "
                     "is which characters occur, not their order.")
        else:
            text += (f"Order adds nothing measurable: the bag of characters is as good as "
                     f"the {best} reader ({acc[best] - acc['bag']:+.1%}, z = {zb:.1f}).")
        if self.task == "rhyme":
            text += (f" Line 1 rhymes in {self.controls['first_line_rhymes']:.0%} of these "
                     f"poems: about what a reader that only looked up its last character "
                     f"in the rhyme table would score.")
        return text


def measure_readers(cfg: ReaderConfig | None = None, progress=None) -> ReaderResult:
    """Build the task's examples, train the three readers, score them held out.
    ``progress``: None or a callable taking one line of text per epoch."""
    from rnncore.data import split_poems

    cfg = cfg or ReaderConfig()
    torch.manual_seed(cfg.seed)
    ex = rhyme_examples(cfg) if cfg.task == "rhyme" else dynasty_examples(cfg)
    train_idx, test_idx = split_poems(list(range(len(ex.texts))), cfg.val_fraction, cfg.seed)
    vocab = Vocab.build(ex.texts[i] for i in train_idx)
    labels = torch.tensor(ex.labels)
    parts = []
    for idx in (train_idx, test_idx):
        parts.append((*encode([ex.texts[i] for i in idx], vocab), labels[idx]))
    counts = Counter(ex.labels[i] for i in train_idx)
    majority = float((parts[1][2] == counts.most_common(1)[0][0]).double().mean())
    acc, preds, params, secs = {}, {}, {}, {}
    for k, kind in enumerate(READERS):
        torch.manual_seed(cfg.seed + k)
        model = make_reader(kind, len(vocab), len(ex.classes), cfg)
        start = time.perf_counter()
        acc[kind], preds[kind] = train_reader(model, parts[0], parts[1], cfg, cfg.seed + k,
                                                  progress)
        secs[kind] = time.perf_counter() - start
        params[kind] = sum(p.numel() for p in model.parameters())
    right = {r: preds[r] == parts[1][2] for r in READERS}
    discordant = {a: {b: int((right[a] & ~right[b]).sum()) for b in READERS if b != a}
                  for a in READERS}
    return ReaderResult(cfg.to_dict(), cfg.task, ex.classes, len(train_idx), len(test_idx),
                        majority, acc, discordant, params, secs, ex.controls,
                        extra={"torch": torch.__version__, "vocab": len(vocab)})


def load_reader_result(task: str = "rhyme",
                       path: str | Path | None = None) -> ReaderResult:
    """The shipped result of ``task`` (or one at ``path``); ``ReaderError`` if unreadable."""
    if task not in TASKS:
        raise ReaderError(f"task must be one of {', '.join(TASKS)}, got {task!r}")
    return read_result(ReaderResult, path or result_path(RESULT_FILES[task]), ReaderError,
                       "reader")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m rnncore.textbook.reader",
                                description=__doc__.split("\n\n")[0])
    p.add_argument("--task", choices=TASKS, default="rhyme")
    p.add_argument("--epochs", type=int, default=8)
    p.add_argument("--hidden-size", type=int, default=128)
    p.add_argument("--max-poems", type=int, default=None)
    p.add_argument("--max-per-form", type=int, default=None)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default=None, help="write the JSON here (default: stdout)")
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    cfg = dict(task=args.task, epochs=args.epochs, hidden_size=args.hidden_size,
               max_poems=args.max_poems, max_per_form=args.max_per_form, seed=args.seed)
    return run_and_write(lambda: measure_readers(ReaderConfig(**cfg), progress), args.out,
                         "python -m rnncore.textbook.reader " + " ".join(
                             argv if argv is not None else sys.argv[1:]))

if __name__ == "__main__":
    sys.exit(main())
