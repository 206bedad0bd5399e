"""Encoder-decoder on couplets: how much of the 下句 does the 上句 tell, through a fixed c
and through attention?

A couplet is lines (2k+1, 2k+2) of a poem (a 七律 has four); the 上句 x (S characters) is
the source, the 下句 y (W = S characters, its mark left out: it is always "。") the target.
Each variant of ``rnncore.textbook.seq2seq`` is trained on the training poems' couplets
(the poem split of ``prepare_data``: a held-out poem's couplets are all held out) and scored
on the held-out couplets, in bits per character of the 下句::

    bits(y | x) = -(1 / W) Σ_t log2 p(y_t | y_<t, x)

    unconditional   the decoder alone, p(y_t | y_<t)       (the same decoder and head)
    fixed_small     x summarised in c of ``small_context`` numbers
    fixed           x summarised in c of ``hidden_size`` numbers
    attention       c of ``hidden_size`` plus a_t = Σ_j α_tj h_j over every encoder state

Shapes: source and target (N, W) long per line length; per-position bits (N, W). Recompute
the shipped result and model (about 20 minutes on one core):
``python -m rnncore.textbook.couplets --epochs 6 --out rnncore/assets/results/couplets.json
--save-model rnncore/assets/couplets/attention.safetensors``
"""
from __future__ import annotations

import argparse
import math
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from rnncore.configs import DictConfig
from rnncore.textbook.results import JSONResult, read_result, result_path, run_and_write
from rnncore.textbook.seq2seq import Seq2Seq, Seq2SeqConfig, save_seq2seq

VARIANTS = ("unconditional", "fixed_small", "fixed", "attention")
LABELS = {"unconditional": "unconditional (no 上句)", "fixed_small": "fixed c, small",
          "fixed": "fixed c", "attention": "attention"}
RESULT_FILE = "couplets.json"
COMMAND = ("python -m rnncore.textbook.couplets --epochs 6 --out "
           "rnncore/assets/results/couplets.json "
           "--save-model rnncore/assets/couplets/attention.safetensors")
LN2 = math.log(2.0)


class CoupletError(ValueError):
    """A bad couplet request (one-line message)."""


@dataclass
class CoupletsConfig(DictConfig):
    """The measurement: data (``corpus``, the first ``max_train`` / ``max_val`` couplets,
    None = all), sizes, training (``epochs`` over the training couplets, Adam at ``lr``
    decayed on a cosine to a tenth) and which ``variants`` to train."""

    config_error = CoupletError

    corpus: str = "tang"
    epochs: float = 6.0
    batch_size: int = 64
    lr: float = 3e-3
    embedding_dim: int = 128
    hidden_size: int = 192
    small_context: int = 16
    variants: list = field(default_factory=lambda: list(VARIANTS))
    max_train: int | None = None
    max_val: int | None = None
    seed: int = 0
    examples: int = 5

    def __post_init__(self) -> None:
        if not isinstance(self.variants, (list, tuple)) or not self.variants \
                or any(v not in VARIANTS for v in self.variants):
            raise CoupletError(f"variants must be some of {', '.join(VARIANTS)}, "
                               f"got {self.variants!r}")
        self.variants = [v for v in VARIANTS if v in self.variants]   # the table's order
        if not float(self.epochs) > 0:
            raise CoupletError(f"epochs must be positive, got {self.epochs}")
        for name in ("batch_size", "embedding_dim", "hidden_size", "small_context"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise CoupletError(f"{name} must be a positive integer, got {value!r}")
        for name in ("max_train", "max_val"):
            value = getattr(self, name)
            if value is not None and (not isinstance(value, int) or value < 2):
                raise CoupletError(f"{name} must be at least 2, got {value!r}")
        if self.hidden_size % 2:
            raise CoupletError("hidden_size must be even (a bidirectional encoder)")

    def model_config(self, variant: str, vocab_size: int) -> Seq2SeqConfig:
        context = {"unconditional": 0, "fixed_small": self.small_context}.get(
            variant, self.hidden_size)
        return Seq2SeqConfig(vocab_size=vocab_size, embedding_dim=self.embedding_dim,
                             hidden_size=self.hidden_size, context_size=context,
                             attention=variant == "attention")


def poem_couplets(text: str) -> list[tuple[str, str]]:
    """A poem's couplets: (line 2k+1, line 2k+2) bodies (marks dropped) of equal length 5
    or 7, ideographs only."""
    from rnncore.poetry import is_ideograph, line_bodies, split_poem

    bodies = line_bodies(split_poem(text))
    return [(a, b) for a, b in zip(bodies[::2], bodies[1::2])
            if len(a) == len(b) in (5, 7) and all(map(is_ideograph, a + b))]


@dataclass
class CoupletData:
    """``train`` / ``val``: line length W -> (source (N, W), target (N, W)) long."""

    itos: list
    train: dict
    val: dict
    val_pairs: list

    @property
    def bos_id(self) -> int:
        from rnncore.data import Vocab

        return Vocab.bos_id

    def count(self, part: str) -> int:
        return sum(len(s) for s, _ in getattr(self, part).values())


def _tensors(pairs, vocab) -> dict:
    by_len: dict = {}
    for a, b in pairs:
        by_len.setdefault(len(a), []).append((vocab.encode(a), vocab.encode(b)))
    return {w: (torch.tensor([s for s, _ in rows]), torch.tensor([t for _, t in rows]))
            for w, rows in sorted(by_len.items())}


def couplet_data(cfg: CoupletsConfig) -> CoupletData:
    """The couplets of ``prepare_data(DataConfig(corpus=cfg.corpus))``'s poem split."""
    from rnncore.data import DataConfig, prepare_data

    data = prepare_data(DataConfig(corpus=cfg.corpus))
    parts = {}
    for part, poems, cap in (("train", data.train_poems, cfg.max_train),
                             ("val", data.val_poems, cfg.max_val)):
        parts[part] = [c for p in poems for c in poem_couplets(p.text)][:cap]
        if len(parts[part]) < 2:
            raise CoupletError(f"fewer than 2 {part} couplets in the corpus")
    return CoupletData(list(data.vocab.itos), _tensors(parts["train"], data.vocab),
                       _tensors(parts["val"], data.vocab), parts["val"])


def shifted(tgt: torch.Tensor, bos_id: int) -> torch.Tensor:
    """Decoder inputs for targets (N, W): ``<bos>`` then y_1 .. y_(W-1)."""
    return torch.cat([tgt.new_full((tgt.shape[0], 1), bos_id), tgt[:, :-1]], 1)


def train_variant(model: Seq2Seq, data: CoupletData, cfg: CoupletsConfig, seed: int) -> dict:
    """Adam on Σ -ln p / targets per batch, batches of one line length in a seeded order;
    returns {"steps", "seconds", "final_loss"}."""
    gen = torch.Generator().manual_seed(seed)
    batches = []
    for src, tgt in data.train.values():
        for chunk in torch.randperm(len(src), generator=gen).split(cfg.batch_size):
            batches.append((src, tgt, chunk))
    steps = max(1, int(round(cfg.epochs * len(batches))))
    opt = torch.optim.Adam(model.parameters(), lr=cfg.lr)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda k: 0.1 + 0.45 * (1 + math.cos(math.pi * min(k / steps, 1.0))))
    model.train()
    start, ema = time.perf_counter(), None
    order = torch.randperm(len(batches), generator=gen).tolist()
    for k in range(steps):
        if k and k % len(batches) == 0:
            order = torch.randperm(len(batches), generator=gen).tolist()
        src, tgt, rows = batches[order[k % len(batches)]]
        s, t = src[rows], tgt[rows]
        loss = model.loss_sum(s, shifted(t, data.bos_id), t) / t.numel()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        sched.step()
        value = loss.item()
        ema = value if ema is None else 0.98 * ema + 0.02 * value
    model.eval()
    return {"steps": steps, "seconds": time.perf_counter() - start, "final_loss": ema}


@torch.no_grad()
def couplet_bits(model: Seq2Seq, src: torch.Tensor, tgt: torch.Tensor, bos_id: int,
                 batch: int = 256) -> torch.Tensor:
    """-log2 p(y_t | y_<t, x) for every held-out target: (N, W) float64."""
    model.eval()
    out = []
    for s, t in zip(src.split(batch), tgt.split(batch)):
        logp = model(s, shifted(t, bos_id))
        out.append(-logp.gather(-1, t[..., None])[..., 0].double() / LN2)
    return torch.cat(out)


@dataclass
class CoupletsResult(JSONResult):
    """Held-out bits per character of the 下句 for each variant (``bpc``), the standard
    error of each variant's saving over the unconditional decoder (paired by couplet,
    ``sem_saving``), per-position bits (``positions`` 1..W, ``per_position``), sizes,
    training time and ``examples`` (上句, real 下句, the attention model's 下句)."""

    config: dict
    train_couplets: int
    val_couplets: int
    bpc: dict
    sem_saving: dict
    line_length: int
    per_position: dict
    parameters: dict
    training: dict
    examples: list = field(default_factory=list)
    command: str = COMMAND
    extra: dict = field(default_factory=dict)

    def saving(self, variant: str) -> float:
        """Bits per character the 上句 saves through ``variant`` (unconditional minus it)."""
        return self.bpc["unconditional"] - self.bpc[variant]

    def label(self, variant: str) -> str:
        c = self.config
        size = {"fixed_small": c["small_context"], "fixed": c["hidden_size"],
                "attention": c["hidden_size"]}.get(variant)
        return LABELS[variant] + (f" (C = {size})" if size else "")

    def describe(self) -> str:
        """What the numbers say (computed, not fixed text)."""
        b = self.bpc
        text = f"On {self.val_couplets:,} held-out couplets the 下句 costs "
        text += ", ".join(f"{b[v]:.2f} bits per character {self.label(v)}" for v in b) + ". "
        if "unconditional" not in b:
            return text
        for v in ("fixed", "attention", "fixed_small"):
            if v in b:
                s, e = self.saving(v), self.sem_saving.get(v, 0.0)
                text += (f"Reading the 上句 through {self.label(v)} saves {s:+.2f} ± {e:.2f} "
                         f"bits per character ({s / b['unconditional']:.0%}). ")
        if "fixed" in b and "attention" in b:
            gain = b["fixed"] - b["attention"]
            # the two savings share the unconditional scores: the standard error of their
            # difference is at most the sum of theirs
            err = self.sem_saving.get("fixed", 0.0) + self.sem_saving.get("attention", 0.0)
            pp = np.asarray(self.per_position["fixed"]) - np.asarray(
                self.per_position["attention"])
            text += (f"Attention {'beats' if gain > 0 else 'does not beat'} the fixed c of "
                     f"the same size: {gain:+.2f} bits per character (standard error at "
                     f"most {err:.2f}; largest at character {int(pp.argmax()) + 1}, "
                     f"{pp.max():+.2f}): ")
            if gain > 2 * err:
                text += ("a context recomputed for each output character from every encoder "
                         "state carries more than one summary vector, as the chapter says.")
            elif gain > 0:
                text += ("the direction the chapter predicts, but within two standard "
                         "errors on lines this short.")
            else:
                text += "on lines this short one summary vector carries as much."
        if "fixed" in b and "fixed_small" in b:
            gap = b["fixed_small"] - b["fixed"]
            text += (f" The small c costs {gap:+.2f} bits per character against the large "
                     "one: " + ("the bottleneck bites even on a 7-character input."
                                if gap > 0.02 else "a few numbers already hold what the "
                                "decoder uses of a 7-character input, so the caveat about "
                                "a small c does not show at this length."))
        fit = {v: t["final_loss"] / LN2 for v, t in self.training.items()
               if isinstance(t.get("final_loss"), (int, float)) and v in b}
        if "unconditional" in fit:
            worst = max(fit, key=lambda v: b[v] - fit[v])
            gap = b[worst] - fit[worst]
            if gap > 0.25:
                text = (text.rstrip() + f" The models overfit: training loss ends {gap:.2f} "
                        f"bits per character below the held-out score for {self.label(worst)} "
                        f"(unconditional: {b['unconditional'] - fit['unconditional']:.2f}), "
                        "so the savings are what these sizes generalise, not all the 上句 "
                        "holds.")
            else:
                text = (text.rstrip() + " Training loss ends within 0.25 bits per character "
                        "of the held-out scores: the models are not yet overfit, and longer "
                        "training would lower every score.")
        return text


def measure_couplets(cfg: CoupletsConfig | None = None, save_model: str | None = None,
                     log=None) -> CoupletsResult:
    """Train every variant on the training couplets, score the held-out ones; with
    ``save_model`` the attention model (else the last variant) is written there."""
    cfg = cfg or CoupletsConfig()
    data = couplet_data(cfg)
    V, bos = len(data.itos), data.bos_id
    bpc, sem, per_pos, params, training, bits, models = {}, {}, {}, {}, {}, {}, {}
    W = max(data.val, key=lambda w: len(data.val[w][0]))
    for k, variant in enumerate(cfg.variants):
        torch.manual_seed(cfg.seed + k)
        model = Seq2Seq(cfg.model_config(variant, V))
        training[variant] = train_variant(model, data, cfg, cfg.seed + k)
        rows = {w: couplet_bits(model, s, t, bos) for w, (s, t) in data.val.items()}
        bits[variant] = torch.cat([r.mean(1) for r in rows.values()])    # per couplet
        per_char = torch.cat([r.reshape(-1) for r in rows.values()])
        bpc[variant] = float(per_char.mean())
        per_pos[variant] = rows[W].mean(0).tolist()
        params[variant] = model.num_parameters()
        models[variant] = model
        if log:
            log(f"{variant}: {bpc[variant]:.3f} bits/char, {training[variant]['steps']} steps "
                f"in {training[variant]['seconds']:.0f} s")
    if "unconditional" in bits:
        for v in bits:
            d = bits["unconditional"] - bits[v]
            sem[v] = float(d.std() / math.sqrt(len(d))) if len(d) > 1 else 0.0
    shipped = models.get("attention") or models[cfg.variants[-1]]
    result = CoupletsResult(
        config=cfg.to_dict(), train_couplets=data.count("train"),
        val_couplets=data.count("val"), bpc=bpc, sem_saving=sem, line_length=W,
        per_position=per_pos, parameters=params, training=training,
        extra={"torch": torch.__version__, "threads": torch.get_num_threads()})
    if save_model:
        save_seq2seq(shipped, data.itos, save_model,
                     extra={"bpc": bpc.get("attention"), "command": COMMAND})
    try:
        result.examples = _examples(shipped, data, cfg)
    except (ImportError, ValueError) as exc:   # the measurement stands without them
        if log:
            log(f"no examples: {exc}")
    return result


def _examples(model, data: CoupletData, cfg: CoupletsConfig) -> list[dict]:
    """The model's 下句 for ``cfg.examples`` held-out 上句 of length 7, every 97th (closer
    when there are fewer), greedy with the rules, beside the real one."""
    from rnncore.data import Vocab
    from rnncore.textbook.duiju import MatchConfig, match_line

    vocab = Vocab(data.itos)
    out = []
    pairs = [p for p in data.val_pairs if len(p[0]) == 7]
    pairs = pairs[::min(97, max(1, len(pairs) // max(cfg.examples, 1)))][:cfg.examples]
    for up, down in pairs:
        m = match_line(up, MatchConfig(strategy="greedy"), model=model, vocab=vocab)[0]
        out.append({"first": up, "real": down, "model": m.line})
    return out


def load_couplets_result(path: str | Path | None = None) -> CoupletsResult:
    """The shipped result (or one at ``path``); ``CoupletError`` if missing or malformed."""
    return read_result(CoupletsResult, Path(path) if path is not None
                       else result_path(RESULT_FILE), CoupletError, "couplet")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m rnncore.textbook.couplets",
                                description=__doc__.split("\n\n")[0])
    p.add_argument("--match", default=None, metavar="上句",
                   help="write the 下句 for this 上句 with the shipped model and stop")
    p.add_argument("--num", type=int, default=3, help="with --match: how many 下句")
    p.add_argument("--epochs", type=float, default=6.0)
    p.add_argument("--hidden", type=int, default=192)
    p.add_argument("--small-context", type=int, default=16)
    p.add_argument("--variants", default=",".join(VARIANTS))
    p.add_argument("--max-train", type=int, default=None)
    p.add_argument("--max-val", type=int, default=None)
    p.add_argument("--corpus", default="tang")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--save-model", default=None, help="write the attention model here")
    p.add_argument("--out", default=None, help="write the JSON here (default: stdout)")
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    if args.match is not None:
        from rnncore.textbook.duiju import MatchConfig, match_line

        try:
            matches = match_line(args.match, MatchConfig(num=args.num, seed=args.seed))
        except ValueError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
        print("\n".join(m.describe() for m in matches))
        return 0

    def compute() -> CoupletsResult:
        cfg = CoupletsConfig(corpus=args.corpus, epochs=args.epochs, hidden_size=args.hidden,
                             small_context=args.small_context,
                             variants=args.variants.split(","), max_train=args.max_train,
                             max_val=args.max_val, seed=args.seed)
        return measure_couplets(cfg, args.save_model,
                                log=lambda s: print(s, file=sys.stderr, flush=True))

    return run_and_write(compute, args.out)


if __name__ == "__main__":
    sys.exit(main())
