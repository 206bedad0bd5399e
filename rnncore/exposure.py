"""Teacher forcing against free running: exposure bias, measured on held-out poems.

A held-out poem is y_0 = <bos>, y_1..y_n (characters, marks, <eos>). At each position
t = 1..n the loss of the TRUE next token y_t, in bits, under three histories of length t:

    teacher  -log2 p(y_t | y_0, y_1 .. y_{t-1})     the true history (how the model trained)
    free     -log2 p(y_t | y_0, ŷ_1 .. ŷ_{t-1})     the model's own samples, drawn as it
             runs: ŷ_s ~ p(. | y_0, ŷ_<s), temperature 1, restricted to characters and
             marks (the tokens a true history holds at these positions)
    other    -log2 p(y_t | y_0, z_1 .. z_{t-1})     another held-out poem's true history
             (poem k reads poem k+1's): a real but unrelated history

free - teacher is what training never shows the model. Part of it is only that the history
is not this poem's (even a perfect model cannot predict y_t from another poem's start);
``other`` measures that part with a history from the data itself, so free - other is the
exposure bias proper: the cost of reading histories of the model's own making.

Shapes: poems P, samples S; tokens (P, n + 1); losses (P, n) for teacher/other and
(P * S, n) for free, averaged per position over poems (and samples) where t <= the
poem's length. Recompute the shipped result (all validation poems; a few minutes on one
core):  ``python -m rnncore.exposure --samples 8 --out rnncore/assets/results/exposure_bias.json``
"""
from __future__ import annotations

import argparse
import math
import sys
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from rnncore.configs import DictConfig
from rnncore.textbook.results import JSONResult, read_result, run_and_write
from rnncore.textbook.results import result_path as shipped_result

HISTORIES = ("teacher", "free", "other")
RESULT_FILE = "exposure_bias.json"
COMMAND = ("python -m rnncore.exposure --samples 8 "
           "--out rnncore/assets/results/exposure_bias.json")
LN2 = math.log(2.0)


class ExposureError(ValueError):
    """A bad request for the exposure-bias measurement (one-line message)."""


@dataclass
class ExposureConfig(DictConfig):
    """``max_poems``: the first N validation poems (None = all); ``samples``: free-running
    draws per poem; ``checkpoint``: None = the bundled model."""

    config_error = ExposureError

    max_poems: int | None = None
    samples: int = 4
    seed: int = 0
    checkpoint: str | None = None

    def __post_init__(self) -> None:
        for name, value in (("max_poems", self.max_poems), ("samples", self.samples)):
            if value is None and name == "max_poems":
                continue
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ExposureError(f"{name} must be a positive integer, got {value!r}")
        if self.max_poems is not None and self.max_poems < 2:
            raise ExposureError("max_poems must be at least 2 (each poem reads another's "
                                "history)")


@dataclass
class ExposureResult(JSONResult):
    """Per position t = 1..n: mean bits of each history (``teacher``, ``free``, ``other``),
    their standard errors (``sem_*``) and the number of scored tokens ``count``."""

    config: dict
    poems: int
    positions: list[int]
    teacher: list[float]
    free: list[float]
    other: list[float]
    sem_teacher: list[float]
    sem_free: list[float]
    sem_other: list[float]
    count: list[int]
    command: str = COMMAND
    extra: dict = field(default_factory=dict)

    def mean(self, history: str) -> float:
        """Bits per token over all scored positions (weighted by count)."""
        v, c = np.asarray(getattr(self, history)), np.asarray(self.count, float)
        return float((v * c).sum() / c.sum())

    def window(self, history: str, first: bool, width: int = 8) -> float:
        """Mean of the first (or last) ``width`` positions' curve (a line of 七言: 7 + mark)."""
        v = np.asarray(getattr(self, history))
        return float(v[:width].mean() if first else v[-width:].mean())

    def gap_slope(self) -> float:
        """Least-squares slope of free - teacher against position (bits per position)."""
        gap = np.asarray(self.free) - np.asarray(self.teacher)
        return float(np.polyfit(self.positions, gap, 1)[0])

    def describe(self) -> str:
        """What the numbers say (computed, not fixed text)."""
        t, f, o = (self.mean(h) for h in HISTORIES)
        g0 = self.window("free", True) - self.window("teacher", True)
        g1 = self.window("free", False) - self.window("teacher", False)
        b0 = self.window("free", True) - self.window("other", True)
        b1 = self.window("free", False) - self.window("other", False)
        grows = g1 > g0
        text = (f"On {self.poems} held-out poems the model needs {t:.2f} bits per token given "
                f"the true history, {f:.2f} given its own samples and {o:.2f} given another "
                f"poem's true history. The gap free − teacher is {g0:.2f} bits over the first "
                f"8 positions and {g1:.2f} over the last 8 (slope {self.gap_slope():+.4f} "
                f"bits per position): ")
        text += ("it grows along the poem, as exposure bias predicts. " if grows else
                 "it does not grow along the poem, unlike the textbook's compounding errors. ")
        text += (f"Against a real but unrelated history the model's own history costs "
                 f"{b0:+.2f} bits over the first 8 positions and {b1:+.2f} over the last 8: ")
        if b1 > 0 and g1 > 0:
            text += (f"that part, exposure bias proper (its own samples are worse histories "
                     f"than real text), is {b1 / g1:.0%} of the final gap; the other "
                     f"{1 - b1 / g1:.0%} is the history not being this poem's, which a real "
                     f"history costs too.")
        else:
            text += ("its own samples are no worse histories for the true text than another "
                     "real poem, so the gap is the history not being this poem's, not "
                     "compounding errors.")
        return text


def _load(checkpoint: str | None):
    if checkpoint is None:
        from rnncore.generate import load_default_model

        ckpt = load_default_model()
    else:
        from rnncore.checkpoint import load_checkpoint

        ckpt = load_checkpoint(checkpoint, load_optimizer=False)
    return ckpt.model, ckpt.vocab


def held_out_tokens(vocab, max_poems: int | None = None) -> torch.Tensor:
    """The validation poems of ``prepare_data(DataConfig())`` encoded with ``vocab`` (with
    their form's start token where ``vocab`` has them, as such a model was trained):
    (P, n + 1) long, padded with ``pad_id``."""
    from rnncore.data import DataConfig, prepare_data

    poems = prepare_data(DataConfig()).val_poems[:max_poems]
    seqs = [vocab.encode_poem(p.text, p.form) for p in poems]  # form start token if any
    out = torch.full((len(seqs), max(map(len, seqs))), vocab.pad_id, dtype=torch.long)
    for k, s in enumerate(seqs):
        out[k, :len(s)] = torch.tensor(s)
    return out


def _bits(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """-log2 softmax(logits)[target]: logits (..., V), targets (...) -> (...)."""
    return -F.log_softmax(logits.float(), -1).gather(-1, targets[..., None])[..., 0] / LN2


@torch.no_grad()
def score_histories(model, tokens: torch.Tensor, pad_id: int, sample_mask: torch.Tensor,
                    samples: int, generator: torch.Generator
                    ) -> tuple[dict[str, torch.Tensor], torch.Tensor, torch.Tensor]:
    """tokens (P, n + 1) -> ({history: bits (rows, n)}, valid (P, n) bool, the free
    histories (P * S, n) long: column t is the token fed at step t, column 0 the true
    start). ``sample_mask`` (V,) bool: the tokens free running may draw."""
    model.eval()
    inputs, targets = tokens[:, :-1], tokens[:, 1:]
    valid = targets != pad_id
    other_in = inputs.roll(-1, 0)
    valid_other = valid & other_in.ne(pad_id)
    start = model.poem_start_state(inputs.shape[0])    # every poem from the poem start state
    bits = {"teacher": _bits(model(inputs, start)[0], targets),
            "other": _bits(model(other_in, start)[0], targets)}
    rows = targets.repeat_interleave(samples, 0)                 # (P*S, n)
    fed = torch.empty_like(rows)
    tok, free = inputs[:, 0].repeat_interleave(samples), []
    state = model.poem_start_state(rows.shape[0])
    for t in range(rows.shape[1]):
        fed[:, t] = tok
        logits, state = model.step(tok, state)
        free.append(_bits(logits, rows[:, t]))
        probs = torch.softmax(logits.float(), -1) * sample_mask
        tok = torch.multinomial(probs, 1, generator=generator)[:, 0]
    bits["free"] = torch.stack(free, 1)
    return bits, {"teacher": valid, "other": valid_other,
                  "free": valid.repeat_interleave(samples, 0)}, fed


def measure_exposure(cfg: ExposureConfig | None = None, model=None, vocab=None
                     ) -> ExposureResult:
    """Score the validation poems under the three histories and average per position."""
    cfg = cfg or ExposureConfig()
    if model is None:
        model, vocab = _load(cfg.checkpoint)
    tokens = held_out_tokens(vocab, cfg.max_poems)
    if tokens.shape[0] < 2:
        raise ExposureError("need at least 2 held-out poems")
    # characters and marks only: free running never feeds <eos>, <pad> or a start token
    sample_mask = torch.tensor([len(s) == 1 for s in vocab.itos])
    gen = torch.Generator().manual_seed(cfg.seed)
    bits, valid, _ = score_histories(model, tokens, vocab.pad_id, sample_mask, cfg.samples,
                                     gen)
    curves: dict[str, list[float]] = {}
    for h in HISTORIES:
        b, m = bits[h].double(), valid[h].double()
        n = m.sum(0).clamp_min(1)
        mean = (b * m).sum(0) / n
        var = (((b - mean) ** 2) * m).sum(0) / (n - 1).clamp_min(1)
        curves[h] = mean.tolist()
        curves["sem_" + h] = (var / n).sqrt().tolist()
    return ExposureResult(config=cfg.to_dict(), poems=int(tokens.shape[0]),
                          positions=list(range(1, tokens.shape[1])),
                          count=valid["teacher"].sum(0).tolist(), **curves,
                          extra={"torch": torch.__version__})


def result_path() -> Path:
    """Where the shipped full-size result lives (``rnncore/assets/results/``)."""
    return shipped_result(RESULT_FILE)


def load_result(path: str | Path | None = None) -> ExposureResult:
    """The shipped result (or one at ``path``); ``ExposureError`` if missing or malformed."""
    return read_result(ExposureResult, path or result_path(), ExposureError, "exposure-bias")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m rnncore.exposure", description=__doc__
                                .split("\n\n")[0])
    p.add_argument("--max-poems", type=int, default=None, help="first N validation poems")
    p.add_argument("--samples", type=int, default=4, help="free-running draws per poem")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--checkpoint", default=None, help="default: the bundled model")
    p.add_argument("--out", default=None, help="write the JSON here (default: stdout)")
    args = p.parse_args(argv)
    return run_and_write(lambda: measure_exposure(ExposureConfig(
        args.max_poems, args.samples, args.seed, args.checkpoint)), args.out)


if __name__ == "__main__":
    sys.exit(main())
