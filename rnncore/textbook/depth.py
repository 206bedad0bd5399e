"""Depth in three places (Pascanu et al. 2014, "How to construct deep recurrent neural
networks"), at equal parameter count, trained on the poems for equal steps.

Every model: embedding e_t = E[x_t] (E), a tanh recurrence of width H, a softmax head over
V characters. ``place`` adds one tanh layer of width H (an MLP step) in one spot:

    shallow     h_t = tanh(W e_t + U h_(t-1) + b),                     o_t = V h_t + c
    input       z_t = tanh(A e_t + a),  h_t = tanh(W z_t + U h_(t-1) + b)          (deep input)
    transition  g_t = tanh(W e_t + U h_(t-1) + b),  h_t = tanh(U' g_t + b')  (deep transition:
                the MLP sits inside the recurrence, so h_(t-1) -> h_t crosses two layers)
    output      h_t as shallow,  o_t = V tanh(C h_t + c') + c                    (deep output)

``shallow`` with ``hidden_size`` H_0 is the reference; every other place gets the H whose
parameter count is closest to it (``size_for``: the extra H^2 + H buys a slightly narrower
H, since the embedding V E and the softmax (H + 1) V hold most parameters). Counts are in
closed form (``parameter_count_for``; a test checks them against the built modules). All
four run the same autograd time loop (``rnncore.cells.rnn_cell`` per step), so their CPU
time per step compares the architectures, not two engines.

Shapes: tokens (B, T) -> e (B, T, E) -> W e for all steps at once (B, T, H) -> h (B, T, H)
-> logits (B, T, V). Recompute the shipped result: ``python -m rnncore.textbook.depth
--out rnncore/assets/results/depth.json`` (defaults; ~3 CPU minutes on one thread).
"""
from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass, field

import torch
from torch import Tensor, nn

from rnncore.cells import rnn_cell
from rnncore.configs import DictConfig
from rnncore.data import Vocab
from rnncore.textbook.fit import FitError, check_budget, fit, parameter_count
from rnncore.configs import check_positive_ints
from rnncore.textbook.results import JSONResult, read_result, result_path, run_cli

PLACES = ("shallow", "input", "transition", "output")
COMMAND = "python -m rnncore.textbook.depth --out rnncore/assets/results/depth.json"
RESULT_NAME = "depth.json"
# one seed per model: a gain below this many bits is not called a gain
MARGIN = 0.02


class DepthError(FitError):
    """A bad request for the depth comparison (one-line message)."""


def check_place(place: str) -> str:
    if place not in PLACES:
        raise DepthError(f"place must be one of {', '.join(PLACES)}, got {place!r}")
    return place


class DeepRNNLM(nn.Module):
    """``embedding`` (V, E); ``deep_in`` Linear(E, H) (input); ``W`` Linear(in, H) holds b;
    ``U`` (H, H) and ``b_hh``; ``deep_mid`` Linear(H, H) (transition); ``deep_out``
    Linear(H, H) (output); ``head`` Linear(H, V)."""

    def __init__(self, vocab_size: int, embedding_dim: int, hidden_size: int,
                 place: str = "shallow") -> None:
        super().__init__()
        self.place, H = check_place(place), hidden_size
        self.embedding = nn.Embedding(vocab_size, embedding_dim, padding_idx=Vocab.pad_id)
        self.deep_in = nn.Linear(embedding_dim, H) if place == "input" else None
        self.W = nn.Linear(H if place == "input" else embedding_dim, H)
        bound = H ** -0.5                       # torch.nn.RNN's init for the recurrence
        self.U = nn.Parameter(torch.empty(H, H).uniform_(-bound, bound))
        self.b_hh = nn.Parameter(torch.empty(H).uniform_(-bound, bound))
        self.deep_mid = nn.Linear(H, H) if place == "transition" else None
        self.deep_out = nn.Linear(H, H) if place == "output" else None
        self.head = nn.Linear(H, vocab_size)

    def hidden(self, tokens: Tensor, h: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """tokens (B, T) -> (the head's input (B, T, H), last h (B, H))."""
        e = self.embedding(tokens)
        if self.deep_in is not None:
            e = torch.tanh(self.deep_in(e))
        xp = self.W(e)                                  # the input part of every step at once
        if h is None:
            h = xp.new_zeros(xp.shape[0], self.U.shape[0])
        outs = []
        for t in range(xp.shape[1]):
            h = rnn_cell(xp[:, t], h, self.U, self.b_hh)[0]
            if self.deep_mid is not None:
                h = torch.tanh(self.deep_mid(h))
            outs.append(h)
        out = torch.stack(outs, 1)
        if self.deep_out is not None:
            out = torch.tanh(self.deep_out(out))
        return out, h

    def forward(self, tokens: Tensor, state: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """tokens (B, T) -> (logits (B, T, V), h_T (B, H))."""
        out, h = self.hidden(tokens, state)
        return self.head(out), h


def parameter_count_for(place: str, vocab_size: int, embedding_dim: int,
                        hidden_size: int) -> int:
    """The parameter count of ``DeepRNNLM(V, E, H, place)`` without building it."""
    V, E, H = vocab_size, embedding_dim, hidden_size
    count = V * E + (H + 1) * V + H * H + H                 # embedding, head, U and b_hh
    count += (H if check_place(place) == "input" else E) * H + H       # W and b
    return count + (E * H + H if place == "input" else H * H + H if place != "shallow" else 0)


def size_for(place: str, vocab_size: int, embedding_dim: int, target: int) -> int:
    """The hidden size H whose parameter count is closest to ``target``."""
    counts = {H: parameter_count_for(place, vocab_size, embedding_dim, H)
              for H in range(1, 4097)}
    return min(counts, key=lambda H: (abs(counts[H] - target), H))


@dataclass
class DepthConfig(DictConfig):
    """``hidden_size`` is the shallow reference's H (the others are sized to its parameter
    count); every model trains ``steps`` steps of ``batch_size`` whole poems.
    ``val_poems``: the first N held-out poems (None = all 362)."""

    config_error = DepthError

    places: tuple[str, ...] = PLACES
    embedding_dim: int = 32
    hidden_size: int = 64
    steps: int = 500
    batch_size: int = 32
    lr: float = 3e-3
    seed: int = 0
    val_poems: int | None = None

    def __post_init__(self) -> None:
        self.places = tuple(check_place(p) for p in self.places)
        if not self.places:
            raise DepthError("choose at least one place")
        check_positive_ints(self, ("embedding_dim", "hidden_size", "batch_size", "val_poems"),
                            optional=("val_poems",))
        try:
            check_budget(self.steps, None)
        except FitError as exc:
            raise DepthError(str(exc)) from None


@dataclass
class DepthResult(JSONResult):
    """``models``: one dict per place: place, hidden_size, parameters, core (parameters
    outside the embedding and the softmax), fit (``FitRecord.to_dict``)."""

    config: dict
    models: list
    reference_parameters: int
    poems: int
    command: str = COMMAND
    extra: dict = field(default_factory=dict)

    def describe(self) -> str:
        """What the numbers say (computed from them)."""
        ms = self.models
        spread = max(abs(m["parameters"] / self.reference_parameters - 1) for m in ms)
        f0 = ms[0]["fit"]
        text = (f"{len(ms)} models of {self.reference_parameters:,} parameters (within "
                f"{spread:.1%}), {f0['steps']} steps each, {self.poems} held-out poems: " +
                "; ".join(f"{m['place']} (H = {m['hidden_size']}) {m['fit']['val_bpc']:.3f} "
                          f"bits per character, {1000 * m['fit']['sec_per_step']:.0f} ms per "
                          f"step" for m in ms) + ". ")
        best = min(ms, key=lambda m: m["fit"]["val_bpc"])
        ref = next((m for m in ms if m["place"] == "shallow"), None)
        if ref is None:
            return text + f"Best: {best['place']}."
        deep = [m for m in ms if m is not ref]
        gain = {m["place"]: ref["fit"]["val_bpc"] - m["fit"]["val_bpc"] for m in deep}
        better = [p for p, g in gain.items() if g > MARGIN]
        if better:
            text += (f"Depth helped by more than {MARGIN} bits in {', '.join(better)} (best: "
                     f"{best['place']}, {gain[best['place']]:.3f} bits below the shallow "
                     f"RNN), as Pascanu et al. report at equal size")
            rest = [p for p in gain if p not in better]
            text += (f"; {', '.join(rest)} did not" if rest else "") + ". "
        elif deep:
            text += (f"No deep variant beat the shallow RNN by more than {MARGIN} bits at "
                     f"equal parameter count here, contrary to the claim that depth helps. ")
        slow = max(ms, key=lambda m: m["fit"]["sec_per_step"])
        narrow = min(ms, key=lambda m: m["hidden_size"])
        text += (f"The slowest step is {slow['place']}'s, "
                 f"{slow['fit']['sec_per_step'] / ref['fit']['sec_per_step']:.2f}× the "
                 f"shallow one. Matching the count cost the deep models little width "
                 f"(H = {narrow['hidden_size']} instead of {ref['hidden_size']}): the "
                 f"embedding and the softmax hold {1 - ref['core'] / ref['parameters']:.0%} "
                 f"of the parameters, so the recurrent core grows from {ref['core']:,} to "
                 f"{max(m['core'] for m in ms):,}.")
        return text


def measure_depth(cfg: DepthConfig | None = None, data=None) -> DepthResult:
    """Size every place to the shallow model's count, train each ``cfg.steps`` steps on the
    bundled poems, score the held-out poems."""
    from rnncore.data import DataConfig, prepare_data

    cfg = cfg or DepthConfig()
    data = data or prepare_data(DataConfig())
    val = data.val[:cfg.val_poems]
    V, E = len(data.vocab), cfg.embedding_dim
    target = parameter_count_for("shallow", V, E, cfg.hidden_size)
    models = []
    for place in cfg.places:
        H = cfg.hidden_size if place == "shallow" else size_for(place, V, E, target)
        torch.manual_seed(cfg.seed)
        model = DeepRNNLM(V, E, H, place)
        rec = fit(model, data.train, val, steps=cfg.steps, batch_size=cfg.batch_size,
                  lr=cfg.lr, seed=cfg.seed)
        n = parameter_count(model)
        models.append({"place": place, "hidden_size": H, "parameters": n,
                       "core": n - V * E - (H + 1) * V, "fit": rec.to_dict()})
    return DepthResult(config=cfg.to_dict(), models=models, reference_parameters=target,
                       poems=len(val), extra={"torch": torch.__version__, "vocab_size": V})


def load_depth(path=None) -> DepthResult:
    """The shipped result (or one at ``path``); ``DepthError`` if missing or malformed."""
    return read_result(DepthResult, path or result_path(RESULT_NAME), DepthError, "depth")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m rnncore.textbook.depth",
                                description="Depth in three places at equal parameters.")
    p.add_argument("--steps", type=int, default=DepthConfig.steps)
    p.add_argument("--hidden-size", type=int, default=DepthConfig.hidden_size)
    p.add_argument("--places", nargs="+", default=list(PLACES))
    return run_cli(p, lambda a: measure_depth(DepthConfig(
        places=tuple(a.places), steps=a.steps, hidden_size=a.hidden_size,
        val_poems=a.val_poems, seed=a.seed)), argv)


if __name__ == "__main__":
    sys.exit(main())
