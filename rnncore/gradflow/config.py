"""What a gradient-flow probe is asked for: ``GradFlowConfig``, its checks and constants.

``rho`` is the spectral radius max |eig(W_g)| every (H, H) gate block W_g of W_hh is
rescaled to; it must lie in [0.5, 1.5].
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

from rnncore.configs import DictConfig
from rnncore.kinds import CELLS

INITS = ("default", "orthogonal")
SOURCES = ("poem", "random")
LOSSES = ("last", "sum")
JACOBIAN_METHODS = ("auto", "exact", "power")
RHO_VALUES = (0.5, 0.75, 1.0, 1.25, 1.5)     # the rho sweep's default grid
TRUNCATION_PROBS = (0.25, 0.5, 0.75)         # randomized truncation's default keep probs
VANISH_RATIO = 1e-3          # "vanished": below 1e-3 of the lag-1 norm
EXACT_MAX_HIDDEN = 1024      # method="auto" builds full Jacobians up to this hidden size
SLOPE_FLAT = 0.01            # |slope| of ln-norm per step below this counts as "flat"
MAX_DRAWS = 1024             # randomized-truncation draws per probability
# each draw is one gradient of all recurrent parameters, held at once in float64:
# draws x parameters is capped at 2^27 values (1 GB)
MAX_DRAW_VALUES = 2**27


class GradFlowError(ValueError):
    """A probe asked for something the model or config cannot give (one-line message)."""


def check_choice(what: str, value, choices: Sequence[str]) -> None:
    if value not in choices:
        raise GradFlowError(f"unknown {what} {value!r} (choose from {', '.join(choices)})")


def check_rho(rho) -> float:
    if isinstance(rho, bool) or not isinstance(rho, (int, float)) or not math.isfinite(rho):
        raise GradFlowError(f"rho must be a number in [0.5, 1.5], got {rho!r}")
    if not 0.5 <= float(rho) <= 1.5:
        raise GradFlowError(f"rho must be in [0.5, 1.5], got {rho}")
    return float(rho)


@dataclass
class GradFlowConfig(DictConfig):
    """What to probe. With ``checkpoint`` the model (cell, sizes) comes from it and
    ``cell``/``hidden_size``/``num_layers``/``embedding_dim``/``init`` are ignored;
    ``rho`` still rescales its recurrent weights if given.

    ``init``: ``"default"`` (torch's U(-1/sqrt(H), 1/sqrt(H))) or ``"orthogonal"`` (each
    W_hh gate block orthogonal). ``rho``: rescale every W_hh gate block to this spectral
    radius. ``seq_source``: ``"poem"`` (bundled Tang poems from ``poem_index`` on, BOS-
    prefixed, continuing into the next poems if ``seq_len`` needs more) or ``"random"``
    (uniform non-special tokens). ``layer`` picks the layer for per-layer probes (-1 = top).
    """

    config_error = GradFlowError

    cell: str = "lstm"
    hidden_size: int = 64
    num_layers: int = 1
    embedding_dim: int = 32
    init: str = "default"
    rho: float | None = None
    seq_source: str = "poem"
    seq_len: int = 64
    poem_index: int = 0
    vocab_size: int = 64
    seed: int = 0
    checkpoint: str | None = None
    layer: int = -1
    jacobian_method: str = "auto"
    power_iters: int = 30
    truncation_draws: int = 32
    truncation_probs: tuple[float, ...] = TRUNCATION_PROBS
    rho_values: tuple[float, ...] = RHO_VALUES

    def __post_init__(self) -> None:
        check_choice("cell", self.cell, CELLS)
        check_choice("init", self.init, INITS)
        check_choice("seq_source", self.seq_source, SOURCES)
        check_choice("jacobian_method", self.jacobian_method, JACOBIAN_METHODS)
        for name, low in (("hidden_size", 1), ("num_layers", 1), ("embedding_dim", 1),
                          ("seq_len", 2), ("vocab_size", 5), ("power_iters", 1),
                          ("truncation_draws", 2), ("poem_index", 0)):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                raise GradFlowError(f"{name} must be an integer >= {low}, got {value!r}")
        if self.seq_len > 4096:
            raise GradFlowError(f"seq_len must be at most 4096, got {self.seq_len}")
        if self.truncation_draws > MAX_DRAWS:
            raise GradFlowError(f"truncation_draws must be at most {MAX_DRAWS}, got "
                                f"{self.truncation_draws}")
        for rho in ([self.rho] if self.rho is not None else []) + list(self.rho_values):
            check_rho(rho)
        self.truncation_probs = tuple(float(p) for p in self.truncation_probs)
        if any(not 0.0 < p <= 1.0 for p in self.truncation_probs):
            raise GradFlowError("truncation_probs must lie in (0, 1]")
        self.rho_values = tuple(float(r) for r in self.rho_values)
        if self.checkpoint is not None:
            self.checkpoint = str(self.checkpoint)
