"""Gradient-flow probes: how dL/dh_t and dh_T/dh_k behave in a real model.

Every number here is computed from a model (a trained ``CharRNN`` checkpoint or a fresh one)
on an input (a poem's characters or random tokens); nothing is read off a formula.

Notation (one layer, one sequence, time steps t = 0..T-1 consume x_t):

    vanilla RNN   a_t = W_hh h_{t-1} + W_ih x_t + b,   h_t = tanh(a_t),   o_t = V h_t + c
    BPTT          dL/dh_t = W_hh^T (dL/dh_{t+1} * f'(a_{t+1})) + V^T dL/do_t
    tied weights  dL/dW_hh = sum_t delta_t h_{t-1}^T,  delta_t = dL/d(W_hh h_{t-1} + b_hh)
    Jacobians     dh_{T-1}/dh_{T-1-L} = J_{T-1} ... J_{T-L},  J_t = ds_t/ds_{t-1}

``s_t`` is the cell's state: ``h_t`` (RNN, GRU) or ``(h_t, c_t)`` (LSTM, size 2H). The
lag-L Jacobian reported is the h->h block of the state product: how h_{T-1} moves when
h_{T-1-L} moves with c_{T-1-L} held fixed. All probes run on a float64 copy of the model
(tiny norms at long lags stay representable) in eval mode with batch size 1.

Lag L runs 1..T; lag T is the derivative with respect to the initial (zero) state.
"""
from __future__ import annotations

import copy
import dataclasses
import functools
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable, Sequence

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from torch import Tensor

from rnncore import cells
from rnncore.cells import cell_step  # noqa: F401 (re-exported)
from rnncore.configs import DictConfig
from rnncore.kinds import CELLS, GATE_NAMES, cell_kind, cell_of, layer_weights  # noqa: F401
from rnncore.truncation import draw_keep_factors, regular_boundary_scale

INITS = ("default", "orthogonal")
SOURCES = ("poem", "random")
LOSSES = ("last", "sum")
JACOBIAN_METHODS = ("auto", "exact", "power")
VANISH_RATIO = 1e-3          # "vanished": below 1e-3 of the lag-1 norm
EXACT_MAX_HIDDEN = 1024      # method="auto" builds full Jacobians up to this hidden size
SLOPE_FLAT = 0.01            # |slope| of ln-norm per step below this counts as "flat"


class GradFlowError(ValueError):
    """A probe asked for something the model or config cannot give (one-line message)."""


# --------------------------------------------------------------------------------------
# configuration and the prepared probe
# --------------------------------------------------------------------------------------
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
    truncation_probs: tuple[float, ...] = (0.25, 0.5, 0.75)
    rho_values: tuple[float, ...] = (0.5, 0.75, 1.0, 1.25, 1.5)

    def __post_init__(self) -> None:
        if self.cell not in CELLS:
            raise GradFlowError(f"unknown cell {self.cell!r} (choose from {', '.join(CELLS)})")
        if self.init not in INITS:
            raise GradFlowError(f"unknown init {self.init!r} (choose from {', '.join(INITS)})")
        if self.seq_source not in SOURCES:
            raise GradFlowError(
                f"unknown seq_source {self.seq_source!r} (choose from {', '.join(SOURCES)})")
        if self.jacobian_method not in JACOBIAN_METHODS:
            raise GradFlowError(f"unknown jacobian_method {self.jacobian_method!r} "
                                f"(choose from {', '.join(JACOBIAN_METHODS)})")
        for name, low in (("hidden_size", 1), ("num_layers", 1), ("embedding_dim", 1),
                          ("seq_len", 2), ("vocab_size", 5), ("power_iters", 1),
                          ("truncation_draws", 2), ("poem_index", 0)):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                raise GradFlowError(f"{name} must be an integer >= {low}, got {value!r}")
        if self.seq_len > 4096:
            raise GradFlowError(f"seq_len must be at most 4096, got {self.seq_len}")
        for rho in ([self.rho] if self.rho is not None else []) + list(self.rho_values):
            _check_rho(rho)
        self.truncation_probs = tuple(float(p) for p in self.truncation_probs)
        if any(not 0.0 < p <= 1.0 for p in self.truncation_probs):
            raise GradFlowError("truncation_probs must lie in (0, 1]")
        self.rho_values = tuple(float(r) for r in self.rho_values)
        if self.checkpoint is not None:
            self.checkpoint = str(self.checkpoint)



def _check_rho(rho) -> float:
    if isinstance(rho, bool) or not isinstance(rho, (int, float)) or not math.isfinite(rho):
        raise GradFlowError(f"rho must be a number in [0.5, 1.5], got {rho!r}")
    if not 0.5 <= float(rho) <= 1.5:
        raise GradFlowError(f"rho must be in [0.5, 1.5], got {rho}")
    return float(rho)


@dataclass
class Probe:
    """A model ready to probe: float64 eval copy, one sequence (batch 1).

    ``inputs``/``targets``: (1, T) long, targets = inputs shifted by one.
    ``chars``: the T input characters (``"<bos>"`` for BOS) for axis labels.
    """

    model: torch.nn.Module
    cell: str
    inputs: Tensor
    targets: Tensor
    chars: list[str]
    source: str
    config: GradFlowConfig | None = None

    @property
    def seq_len(self) -> int:
        return self.inputs.shape[1]

    @property
    def hidden_size(self) -> int:
        return self.model.rnn.hidden_size

    @property
    def num_layers(self) -> int:
        return self.model.rnn.num_layers

    def layer_index(self, layer: int) -> int:
        n = self.num_layers
        if not -n <= layer < n:
            raise GradFlowError(f"layer {layer} out of range for a {n}-layer model")
        return layer % n


@functools.lru_cache(maxsize=2)
def _tang_corpus():
    from rnncore.data import Vocab, load_corpus

    corpus = load_corpus("tang")
    return corpus, Vocab.build(p.text for p in corpus.poems)


def _poem_tokens(vocab, poem_index: int, length: int) -> list[int]:
    corpus, _ = _tang_corpus()
    if poem_index >= len(corpus.poems):
        raise GradFlowError(f"poem_index {poem_index} out of range "
                            f"(the corpus has {len(corpus.poems)} poems)")
    tokens: list[int] = []
    index = poem_index
    while len(tokens) < length:
        tokens += vocab.encode_poem(corpus.poems[index % len(corpus.poems)].text)
        index += 1
    return tokens[:length]


def _fresh_model(cfg: GradFlowConfig, vocab_size: int):
    from rnncore.model import CharRNN, ModelConfig

    torch.manual_seed(cfg.seed)
    model = CharRNN(ModelConfig(cell=cfg.cell, vocab_size=vocab_size,
                                embedding_dim=cfg.embedding_dim, hidden_size=cfg.hidden_size,
                                num_layers=cfg.num_layers, engine="bptt"))
    if cfg.init == "orthogonal":
        with torch.no_grad():
            for layer in range(cfg.num_layers):
                w_hh = getattr(model.rnn, f"weight_hh_l{layer}")
                for block in w_hh.split(cfg.hidden_size, dim=0):
                    torch.nn.init.orthogonal_(block)
    return model


def prepare(cfg: GradFlowConfig, model: torch.nn.Module | None = None, vocab=None) -> Probe:
    """Build (or load, or take) the model and the input sequence of ``cfg.seq_len`` steps."""
    from rnncore.data import Vocab

    if model is None and cfg.checkpoint is not None:
        from rnncore.checkpoint import load_checkpoint

        ckpt = load_checkpoint(cfg.checkpoint)
        model, vocab = ckpt.model, ckpt.vocab
    if model is None:
        if cfg.seq_source == "poem":
            vocab = _tang_corpus()[1]
        model = _fresh_model(cfg, len(vocab) if vocab is not None else cfg.vocab_size)
    if getattr(model.rnn, "bidirectional", False):
        raise GradFlowError("gradient-flow probes need a unidirectional model")
    cell = cell_of(model)
    length = cfg.seq_len + 1
    vocab_size = model.embedding.num_embeddings
    if cfg.seq_source == "poem":
        if vocab is None:
            vocab = _tang_corpus()[1]
            if len(vocab) != vocab_size:
                raise GradFlowError("a poem input needs the model's vocabulary")
        tokens = _poem_tokens(vocab, cfg.poem_index, length)
        itos = vocab.itos
    else:
        gen = torch.Generator().manual_seed(cfg.seed)
        tokens = torch.randint(Vocab.eos_id + 1, vocab_size, (length,), generator=gen).tolist()
        itos = vocab.itos if vocab is not None else None
    ids = torch.tensor(tokens, dtype=torch.long)[None]
    chars = [itos[i] if itos is not None else f"#{i}" for i in tokens[:-1]]
    model64 = copy.deepcopy(model).double().eval()
    for p in model64.parameters():
        p.requires_grad_(True)
    if cfg.rho is not None:
        rescale_recurrent_(model64, cfg.rho)
    return Probe(model64, cell, ids[:, :-1], ids[:, 1:], chars, cfg.seq_source, cfg)


# --------------------------------------------------------------------------------------
# the unrolled model: autograd through rnncore.cells, one step at a time
# --------------------------------------------------------------------------------------
@dataclass
class LayerTrace:
    """One layer's unrolled forward. ``states[t]`` is the state tuple after step t
    (``states[-1]`` entry of index -1 is not used: ``init`` is the state entering step 0);
    ``gates[name][t]`` (B, H); ``x_proj`` (T, B, G*H). ``w_copies``/``b_copies`` are the
    per-step zero perturbations of W_hh / b_hh, ``x_copies`` of x_proj (see ``unroll``)."""

    x_proj: Tensor
    init: tuple[Tensor, ...]
    states: list[tuple[Tensor, ...]]
    gates: dict[str, list[Tensor]]
    w_copies: list[Tensor] | None = None
    b_copies: list[Tensor] | None = None
    x_copies: list[Tensor] | None = None

    def prev_state(self, t: int) -> tuple[Tensor, ...]:
        return self.init if t == 0 else self.states[t - 1]

    @property
    def h(self) -> list[Tensor]:
        return [s[0] for s in self.states]


def _gate_boundary(state: tuple[Tensor, ...], scale) -> tuple[Tensor, ...]:
    """Same value; the gradient flowing back through it is multiplied by ``scale``
    (0 = detach, the truncation cut; 1/p = randomized truncation's reweighting).
    ``scale`` is a float or a (B,) tensor (one factor per batch row)."""
    if isinstance(scale, Tensor):
        scale = scale.to(state[0].dtype)[:, None]
        return tuple(s.detach() + scale * (s - s.detach()) for s in state)
    if scale == 1.0:
        return state
    if scale == 0.0:
        return tuple(s.detach() for s in state)
    return tuple(s.detach() + scale * (s - s.detach()) for s in state)


def unroll(model, inputs: Tensor, *, boundary_scale=None, perturb_layers: Iterable[int] = (),
           weight_copies: bool = False, retain_grad: bool = False, with_head: bool = True
           ) -> tuple[Tensor, list[LayerTrace]]:
    """Forward ``model`` one step at a time with autograd through ``rnncore.cells``.

    inputs (B, T) long -> logits (B, T, V), one ``LayerTrace`` per layer.
    ``boundary_scale``: (T,) floats or a (T, B) tensor; entry t scales the gradient through
    every layer's state entering step t (t >= 1), per batch row for a tensor.
    ``perturb_layers``: those layers get per-step zero tensors (B, G*H) added to the
    recurrent pre-activation (``b_copies``) and to x_proj (``x_copies``); their gradients
    are delta_t = dL/d(W_hh h_{t-1} + b_hh) and dL/d(x_proj_t), per row. With
    ``weight_copies`` also per-step zero (G*H, H) tensors added to W_hh (``w_copies``),
    whose gradients are the per-step terms of the tied-weight sum.
    ``retain_grad`` keeps ``.grad`` on every h_t (the total dL/dh_t after backward).
    ``with_head=False`` returns the top layer's outputs (B, T, H) instead of the logits.
    """
    rnn = model.rnn
    cell = cell_of(model)
    step = cell_step(cell, getattr(rnn, "nonlinearity", "tanh"))
    x = model.embedding(inputs).transpose(0, 1)  # (T, B, E) time-major
    T, B = x.shape[:2]
    H = rnn.hidden_size
    perturb_layers = {l % rnn.num_layers for l in perturb_layers}
    traces = []
    for layer in range(rnn.num_layers):
        w_ih, w_hh, b_ih, b_hh = layer_weights(rnn, layer)
        x_proj = F.linear(x, w_ih, b_ih)
        zeros = x.new_zeros(B, H)
        state = (zeros, zeros.clone()) if cell_kind(cell).has_cell_state else (zeros,)
        trace = LayerTrace(x_proj, state, [], {})
        if layer in perturb_layers:
            gh = w_hh.shape[0]
            trace.b_copies = [x.new_zeros(B, gh, requires_grad=True) for _ in range(T)]
            trace.x_copies = [x.new_zeros(B, gh, requires_grad=True) for _ in range(T)]
            if weight_copies:
                trace.w_copies = [torch.zeros_like(w_hh, requires_grad=True) for _ in range(T)]
        for t in range(T):
            if t > 0 and boundary_scale is not None:
                state = _gate_boundary(state, boundary_scale[t])
            w, b, xp = w_hh, b_hh, x_proj[t]
            if trace.b_copies is not None:
                b = (b_hh if b_hh is not None else 0.0) + trace.b_copies[t]
                xp = xp + trace.x_copies[t]
                if trace.w_copies is not None:
                    w = w_hh + trace.w_copies[t]
            state, gates = step(xp, state, w, b)
            if retain_grad:
                state[0].retain_grad()
            trace.states.append(state)
            for name, value in gates.items():
                trace.gates.setdefault(name, []).append(value)
        traces.append(trace)
        x = torch.stack(trace.h)
    out = x.transpose(0, 1)
    return (model.head(out) if with_head else out), traces


def sequence_loss(logits: Tensor, targets: Tensor, loss: str = "sum") -> Tensor:
    """Cross-entropy summed over time (``"sum"``) or on the last step only (``"last"``)."""
    if loss not in LOSSES:
        raise GradFlowError(f"unknown loss {loss!r} (choose from {', '.join(LOSSES)})")
    if loss == "last":
        logits, targets = logits[:, -1:], targets[:, -1:]
    return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), targets.reshape(-1),
                           reduction="sum")


# --------------------------------------------------------------------------------------
# 1. per-step gradient norms ||dL/dh_t|| from the hand-derived BPTT engine
# --------------------------------------------------------------------------------------
def hidden_grads(probe: Probe, loss: str = "last") -> np.ndarray:
    """Total dL/dh_t from the ``"bptt"`` engine's recorder: (L, T, H) float64."""
    from rnncore import record_hidden_grads

    model = probe.model
    engine = model.rnn.engine
    model.rnn.engine = "bptt"
    try:
        with record_hidden_grads() as rec:
            logits, _ = model(probe.inputs)
            grads = torch.autograd.grad(sequence_loss(logits, probe.targets, loss),
                                        [model.rnn.weight_hh_l0])
        del grads
    finally:
        model.rnn.engine = engine
    out = np.zeros((probe.num_layers, probe.seq_len, probe.hidden_size))
    for record in rec.records:
        if record.direction == 0:
            out[record.layer] = record.grad[:, 0].detach().cpu().numpy()
    if len({r.layer for r in rec.records}) != probe.num_layers:
        raise GradFlowError("the bptt engine recorded no hidden gradients")
    return out


def hidden_grads_autograd(probe: Probe, loss: str = "last") -> np.ndarray:
    """The same (L, T, H) from autograd through the unrolled cells (retain_grad on h_t)."""
    logits, traces = unroll(probe.model, probe.inputs, retain_grad=True)
    sequence_loss(logits, probe.targets, loss).backward()
    probe.model.zero_grad(set_to_none=True)
    return np.stack([np.stack([h.grad[0].numpy() if h.grad is not None
                               else np.zeros(probe.hidden_size) for h in tr.h])
                     for tr in traces])


def hidden_grad_norms(probe: Probe, losses: Iterable[str] = LOSSES) -> pd.DataFrame:
    """Columns: loss, layer, t, char, grad_norm (= ||dL/dh_t||_2)."""
    rows = []
    for loss in losses:
        norms = np.linalg.norm(hidden_grads(probe, loss), axis=-1)
        for layer in range(norms.shape[0]):
            for t in range(norms.shape[1]):
                rows.append((loss, layer, t, probe.chars[t], float(norms[layer, t])))
    return pd.DataFrame(rows, columns=["loss", "layer", "t", "char", "grad_norm"])


# --------------------------------------------------------------------------------------
# 2. Jacobian products dh_{T-1}/dh_{T-1-L}
# --------------------------------------------------------------------------------------
@dataclass
class StepLinearization:
    """J_t = ds_t/ds_{t-1} of one layer for all t, in the factored form every cell has:
    each output unit j depends on unit j of each gate's recurrent pre-activation
    rec = W_hh h + b_hh and on unit j of the old state (the "direct" path), so

        J_t[p, h-block] = sum_g diag(rec_coef[t, p, g]) W_g + diag(dir_coef[t, p, 0])
        J_t[p, c-block] = diag(dir_coef[t, p, 1])                        (LSTM only)

    with p the output part (h', and c' for LSTM) and W_g the (H, H) gate blocks of W_hh.
    The coefficients are read from autograd on ``rnncore.cells`` (one VJP per output part
    with a ones cotangent: unit-wise structure makes that sum the diagonal), the test suite
    checks the product against torch.func.jacrev of the whole step. Shapes: rec_coef
    (T, P, G, H), dir_coef (T, P, P, H), state size S = P*H.
    """

    cell: str
    w_hh: Tensor
    rec_coef: Tensor
    dir_coef: Tensor
    prev: Tensor            # (T, S) state entering step t (for reference Jacobians)
    x_proj: Tensor          # (T, G*H)
    b_hh: Tensor | None = None
    nonlinearity: str = "tanh"

    @property
    def hidden_size(self) -> int:
        return self.w_hh.shape[1]

    @property
    def seq_len(self) -> int:
        return self.rec_coef.shape[0]

    def jvp(self, t: int, v: Tensor) -> Tensor:
        """J_t v for a batch v (n, S)."""
        H, P = self.hidden_size, self.rec_coef.shape[1]
        v = v.reshape(-1, P, H)
        wv = F.linear(v[:, 0], self.w_hh).reshape(len(v), 1, -1, H)       # (n, 1, G, H)
        out = (self.rec_coef[t] * wv).sum(2) + (self.dir_coef[t] * v[:, None]).sum(2)
        return out.reshape(len(v), P * H)

    def vjp(self, t: int, u: Tensor) -> Tensor:
        """J_t^T u for a batch u (n, S) (rows: u^T J_t)."""
        H, P = self.hidden_size, self.rec_coef.shape[1]
        u = u.reshape(-1, P, 1, H)
        r = (self.rec_coef[t] * u).sum(1).reshape(len(u), -1)             # (n, G*H)
        out = (self.dir_coef[t] * u).sum(1)                                # (n, P, H)
        out[:, 0] += r @ self.w_hh
        return out.reshape(len(u), P * H)

    def dense(self) -> Tensor:
        """All J_t as (T, S, S) (small H only)."""
        S = self.prev.shape[1]
        eye = torch.eye(S, dtype=self.prev.dtype)
        return torch.stack([self.jvp(t, eye).T for t in range(self.seq_len)])


def _step_fn(cell: str, nonlinearity: str, w_hh: Tensor, b_hh: Tensor | None):
    """s (n, S), x_proj (n, G*H) -> s' (n, S), state flattened h then c."""
    step = cell_step(cell, nonlinearity)
    H = w_hh.shape[1]

    def f(s: Tensor, xp: Tensor) -> Tensor:
        state = (s[..., :H], s[..., H:]) if cell_kind(cell).has_cell_state else (s,)
        return torch.cat(step(xp, state, w_hh, b_hh)[0], dim=-1)

    return f


def linearize(probe: Probe, layer: int = -1, model=None) -> StepLinearization:
    """The per-step Jacobians of ``layer`` along the probe's sequence (inputs from the
    layer below held fixed)."""
    model = probe.model if model is None else model
    layer = probe.layer_index(layer)
    with torch.no_grad():
        _, traces = unroll(model, probe.inputs)
    tr = traces[layer]
    T, H, P = probe.seq_len, probe.hidden_size, cell_kind(probe.cell).state_parts
    prev = torch.stack([torch.cat(tr.prev_state(t), -1)[0] for t in range(T)])
    xp = tr.x_proj[:, 0].detach()
    _, w_hh, _, b_hh = layer_weights(model.rnn, layer)
    w_hh = w_hh.detach()
    b_hh = None if b_hh is None else b_hh.detach()
    nonlinearity = getattr(model.rnn, "nonlinearity", "tanh")
    # feed rec = W_hh h + b_hh as a bias with a zero W_hh: h then only enters directly
    rec = F.linear(prev[:, :H], w_hh, b_hh).requires_grad_(True)
    direct = prev.clone().requires_grad_(True)
    out = _step_fn(probe.cell, nonlinearity, torch.zeros_like(w_hh), rec)(direct, xp)
    rec_coef, dir_coef = [], []
    for part in range(P):
        cot = torch.zeros_like(out)
        cot[:, part * H:(part + 1) * H] = 1.0
        g_rec, g_dir = torch.autograd.grad(out, [rec, direct], cot, retain_graph=True,
                                           allow_unused=True)
        rec_coef.append(g_rec.reshape(T, -1, H))
        dir_coef.append(torch.zeros_like(direct).reshape(T, P, H) if g_dir is None
                        else g_dir.reshape(T, P, H))
    return StepLinearization(probe.cell, w_hh, torch.stack(rec_coef, 1),
                             torch.stack(dir_coef, 1), prev, xp, b_hh, nonlinearity)


def step_jacobians_autograd(lin: StepLinearization) -> Tensor:
    """Reference J_t for every t: (T, S, S) from torch.func.jacrev of the whole cell step
    (no structure assumed)."""
    fn = _step_fn(lin.cell, lin.nonlinearity, lin.w_hh, lin.b_hh)
    single = lambda s, xp: fn(s[None], xp[None])[0]  # noqa: E731
    return torch.func.vmap(torch.func.jacrev(single))(lin.prev, lin.x_proj)


def _exact_norms(lin: StepLinearization) -> np.ndarray:
    """||P_h J_{T-1}...J_{T-L} E_h||_2 for L = 1..T: the h rows of the product, built by
    one batched VJP per step (H rows at a time), then one batched SVD."""
    T, H, S = lin.seq_len, lin.hidden_size, lin.prev.shape[1]
    rows = torch.eye(H, S, dtype=lin.prev.dtype)
    blocks = []
    for L in range(1, T + 1):
        rows = lin.vjp(T - L, rows)
        blocks.append(rows[:, :H])
    return torch.linalg.matrix_norm(torch.stack(blocks), ord=2).numpy()


def _power_norms(lin: StepLinearization, iters: int, seed: int = 0, tol: float = 1e-7
                 ) -> np.ndarray:
    """The same norms by power iteration on M^T M with JVP/VJP only (no S x S matrix).

    All lags at once: row j of the batch holds lag L = T - j's vector; the forward sweep
    applies J_t to rows 0..t, the backward sweep J_t^T to rows 0..t, so each row sees
    exactly J_{T-1}...J_{T-L} and its transpose. Cost per iteration ~ T^2/2 VJPs, so
    ``exact`` (T*H VJPs) is cheaper unless H is large.
    """
    T, H, S = lin.seq_len, lin.hidden_size, lin.prev.shape[1]
    gen = torch.Generator().manual_seed(seed)
    v = torch.randn(T, H, generator=gen, dtype=lin.prev.dtype)
    v = v / v.norm(dim=1, keepdim=True)
    sigma = torch.zeros(T, dtype=lin.prev.dtype)

    def embed(u: Tensor) -> Tensor:
        return torch.cat([u, u.new_zeros(u.shape[0], S - H)], 1) if S > H else u

    for _ in range(iters):
        x = embed(v)
        for t in range(T):
            x = torch.cat([lin.jvp(t, x[:t + 1]), x[t + 1:]])
        new_sigma = x[:, :H].norm(dim=1)
        u = embed(x[:, :H] / new_sigma.clamp_min(1e-300)[:, None])
        for t in range(T - 1, -1, -1):
            u = torch.cat([lin.vjp(t, u[:t + 1]), u[t + 1:]])
        v = u[:, :H] / u[:, :H].norm(dim=1, keepdim=True).clamp_min(1e-300)
        done = torch.all((new_sigma - sigma).abs() <= tol * new_sigma.clamp_min(1e-300))
        sigma = new_sigma
        if done:
            break
    return sigma.flip(0).numpy()          # row j = lag T - j -> lags 1..T


@dataclass
class JacobianResult:
    """``frame``: lag, norm (spectral norm of dh_{T-1}/dh_{T-1-lag}), log10_norm.
    ``slope``: least-squares slope of ln(norm) vs lag (per step; exp(slope) is the
    average per-step factor). ``vanish_lag``: first lag with norm < 1e-3 * norm(lag 1)."""

    cell: str
    layer: int
    method: str
    frame: pd.DataFrame
    slope: float
    vanish_lag: int | None

    def to_dict(self) -> dict:
        return {"cell": self.cell, "layer": self.layer, "method": self.method,
                "slope": self.slope, "vanish_lag": self.vanish_lag,
                "norms": self.frame["norm"].tolist()}


def _summarise_norms(norms: np.ndarray) -> tuple[float, int | None]:
    lags = np.arange(1, len(norms) + 1)
    ok = np.isfinite(norms) & (norms > 0)
    slope = float(np.polyfit(lags[ok], np.log(norms[ok]), 1)[0]) if ok.sum() >= 2 else math.nan
    below = np.nonzero(norms < VANISH_RATIO * norms[0])[0]
    return slope, (int(lags[below[0]]) if len(below) else None)


def jacobian_norms(probe: Probe, layer: int = -1, method: str = "auto", iters: int = 30,
                   model=None) -> JacobianResult:
    """Spectral norm of dh_{T-1}/dh_{T-1-L} for L = 1..T (within ``layer``; its inputs
    from the layer below held fixed). ``exact`` multiplies full per-step Jacobians,
    ``power`` uses JVP/VJP only; ``auto`` = exact up to H = 1024 (where it is cheaper)."""
    if method not in JACOBIAN_METHODS:
        raise GradFlowError(f"unknown jacobian method {method!r}")
    if method == "auto":
        method = "exact" if probe.hidden_size <= EXACT_MAX_HIDDEN else "power"
    lin = linearize(probe, layer, model)
    norms = _exact_norms(lin) if method == "exact" else _power_norms(lin, iters)
    slope, vanish = _summarise_norms(norms)
    frame = pd.DataFrame({"lag": np.arange(1, len(norms) + 1), "norm": norms,
                          "log10_norm": np.log10(np.maximum(norms, 1e-300))})
    return JacobianResult(probe.cell, probe.layer_index(layer), method, frame, slope, vanish)


# --------------------------------------------------------------------------------------
# 3. spectral radius of W_hh and the rho sweep
# --------------------------------------------------------------------------------------
def _gate_blocks(cell: str, w_hh: Tensor, H: int) -> dict[str, Tensor]:
    names = GATE_NAMES[cell] if cell != "rnn" else ("h",)
    return dict(zip(names, w_hh.split(H, dim=0)))


def spectral_radii(model) -> pd.DataFrame:
    """Columns: layer, gate, spectral_radius (max |eigenvalue|), spectral_norm (max
    singular value) of each W_hh gate block (the whole W_hh for a vanilla RNN)."""
    cell, rnn = cell_of(model), model.rnn
    rows = []
    for layer in range(rnn.num_layers):
        w_hh = layer_weights(rnn, layer)[1].detach().double()
        for gate, block in _gate_blocks(cell, w_hh, rnn.hidden_size).items():
            rows.append((layer, gate, float(torch.linalg.eigvals(block).abs().max()),
                         float(torch.linalg.matrix_norm(block, ord=2))))
    return pd.DataFrame(rows, columns=["layer", "gate", "spectral_radius", "spectral_norm"])


@torch.no_grad()
def rescale_recurrent_(model, rho: float) -> None:
    """In place: scale every W_hh gate block so its spectral radius is ``rho``."""
    rho = _check_rho(rho)
    cell, rnn = cell_of(model), model.rnn
    for layer in range(rnn.num_layers):
        w_hh = layer_weights(rnn, layer)[1]
        for block in _gate_blocks(cell, w_hh, rnn.hidden_size).values():
            radius = float(torch.linalg.eigvals(block.double()).abs().max())
            if radius == 0.0:
                raise GradFlowError("cannot rescale an all-zero recurrent matrix")
            block.mul_(rho / radius)


def _verdict(slope: float) -> str:
    if not math.isfinite(slope):
        return "undefined"
    return "vanish" if slope < -SLOPE_FLAT else "explode" if slope > SLOPE_FLAT else "flat"


def rho_sweep(probe: Probe, rhos: Sequence[float] = (0.5, 0.75, 1.0, 1.25, 1.5),
              layer: int = -1, method: str = "auto", iters: int = 30) -> pd.DataFrame:
    """Rescale W_hh to each rho and measure what happens at long lags.

    Columns: rho, measured_rho (after rescaling), jac_lag1, jac_lag_mid, jac_lag_max,
    slope, decay_per_step (exp slope), linear_slope (ln rho: the slope if tanh' were 1
    and the norm followed the spectral radius), vanish_lag, grad_ratio
    (||dL/dh_0|| / ||dL/dh_{T-1}|| for loss on the last step), mean_deriv (mean f'(a)
    for RNN, mean gate derivative proxy otherwise: mean of 1 - h^2), saturated (fraction
    of |h| > 0.99), textbook ("vanish" if rho < 1, "explode" if rho > 1, else "flat"),
    observed (from the measured slope), agrees, norms (the whole curve, lags 1..T).
    """
    layer = probe.layer_index(layer)
    rows = []
    base_state = copy.deepcopy(probe.model.state_dict())
    try:
        for rho in rhos:
            rescale_recurrent_(probe.model, rho)
            radii = spectral_radii(probe.model)
            jac = jacobian_norms(probe, layer, method, iters)
            norms = jac.frame["norm"].to_numpy()
            g = np.linalg.norm(hidden_grads(probe, "last")[layer], axis=-1)
            with torch.no_grad():
                _, traces = unroll(probe.model, probe.inputs)
            h = torch.stack(traces[layer].h).numpy()
            textbook = "vanish" if rho < 1 else "explode" if rho > 1 else "flat"
            observed = _verdict(jac.slope)
            rows.append(dict(
                rho=float(rho), measured_rho=float(radii[radii.layer == layer]
                                                   .spectral_radius.max()),
                jac_lag1=float(norms[0]), jac_lag_mid=float(norms[len(norms) // 2 - 1]),
                jac_lag_max=float(norms[-1]), slope=jac.slope,
                decay_per_step=math.exp(jac.slope) if math.isfinite(jac.slope) else math.nan,
                linear_slope=math.log(rho), vanish_lag=jac.vanish_lag,
                grad_ratio=float(g[0] / g[-1]) if g[-1] > 0 else math.nan,
                mean_deriv=float(np.mean(1 - h ** 2)), saturated=float(np.mean(np.abs(h) > 0.99)),
                textbook=textbook, observed=observed, agrees=textbook == observed,
                norms=norms.tolist()))
            probe.model.load_state_dict(base_state)
    finally:
        probe.model.load_state_dict(base_state)
    return pd.DataFrame(rows)


# --------------------------------------------------------------------------------------
# 4. gate paths: LSTM dc_t/dc_{t-1} = diag(f_t); GRU direct path dh_t/dh_{t-1} = diag(z_t)
# --------------------------------------------------------------------------------------
def gate_path_jacobians(probe: Probe, layer: int = -1) -> tuple[Tensor, Tensor]:
    """(J (T, H, H), gate (T, H)) from autograd on the cell.

    LSTM: J_t = dc_t/dc_{t-1} with h_{t-1} held fixed; gate = f_t.
    GRU: J_t = dh_t/dh_{t-1} through the interpolation only, with r, z, n held at their
    values (the recurrent projection W_hh h_{t-1} + b_hh is fed in as a constant bias and
    W_hh as zero); gate = z_t. In PyTorch's convention h_t = (1 - z) n + z h_{t-1}
    this is diag(z_t); were it h_t = (1 - z) h_{t-1} + z n it would be diag(1 - z_t).
    """
    if probe.cell == "rnn":
        raise GradFlowError("gate paths exist for lstm and gru only")
    layer = probe.layer_index(layer)
    with torch.no_grad():
        _, traces = unroll(probe.model, probe.inputs)
    tr = traces[layer]
    T = probe.seq_len
    _, w_hh, _, b_hh = layer_weights(probe.model.rnn, layer)
    w_hh = w_hh.detach()
    b_hh = None if b_hh is None else b_hh.detach()
    xp = tr.x_proj[:, 0]
    h_prev = torch.stack([tr.prev_state(t)[0][0] for t in range(T)])
    rec = F.linear(h_prev, w_hh, b_hh)      # (T, G*H): h_{t-1}'s contribution, held fixed
    if probe.cell == "lstm":
        c_prev = torch.stack([tr.prev_state(t)[1][0] for t in range(T)])
        # h enters the LSTM step only through W_hh h + b_hh: feed that as the bias with an
        # empty h / W_hh, so the Jacobian is taken with h_{t-1} fixed and costs no matmul
        no_h, no_w = xp.new_zeros(1, 0), xp.new_zeros(w_hh.shape[0], 0)

        def c_next(c, x, r):
            return cells.lstm_cell(x[None], no_h, c[None], no_w, r[None])[0][1][0]

        J = torch.func.vmap(torch.func.jacrev(c_next))(c_prev, xp, rec)
        return J, torch.stack(tr.gates["f"])[:, 0]
    zero_w = torch.zeros_like(w_hh)

    def h_next(h, x, r):
        return cells.gru_cell(x[None], h[None], zero_w, r[None])[0][0]

    J = torch.func.vmap(torch.func.jacrev(h_next))(h_prev, xp, rec)
    return J, torch.stack(tr.gates["z"])[:, 0]


def gate_path_check(probe: Probe, layer: int = -1) -> pd.DataFrame:
    """Per step: t, char, gate ('f' or 'z'), err_diag_gate = max|J - diag(gate)|,
    err_diag_one_minus = max|J - diag(1 - gate)|, offdiag_max = max off-diagonal |J|."""
    J, gate = gate_path_jacobians(probe, layer)
    eye = torch.eye(J.shape[-1], dtype=J.dtype)
    off = (J * (1 - eye)).abs().amax(dim=(1, 2))
    err = (J - torch.diag_embed(gate)).abs().amax(dim=(1, 2))
    err_alt = (J - torch.diag_embed(1 - gate)).abs().amax(dim=(1, 2))
    name = "f" if probe.cell == "lstm" else "z"
    return pd.DataFrame({"t": np.arange(probe.seq_len), "char": probe.chars, "gate": name,
                         "err_diag_gate": err.numpy(), "err_diag_one_minus": err_alt.numpy(),
                         "offdiag_max": off.numpy()})


QUANTILES = (0.1, 0.25, 0.5, 0.75, 0.9)


def gate_stats(probe: Probe, gate: str | None = None, layer: int = -1) -> pd.DataFrame:
    """Per step over the H units of ``layer``: t, char, gate, mean, q10..q90, frac_gt_0.9,
    and retention = prod_{s>t} mean gate (the average path factor from step t to the end).
    Default gate: ``f`` (LSTM), ``z`` (GRU)."""
    if probe.cell == "rnn":
        raise GradFlowError("gate statistics exist for lstm and gru only")
    gate = gate or ("f" if probe.cell == "lstm" else "z")
    if gate not in GATE_NAMES[probe.cell]:
        raise GradFlowError(f"{probe.cell} has no gate {gate!r} "
                            f"(choose from {', '.join(GATE_NAMES[probe.cell])})")
    acts = activations(probe, layer).values[gate]       # (T, H)
    frame = pd.DataFrame({"t": np.arange(probe.seq_len), "char": probe.chars, "gate": gate,
                          "mean": acts.mean(1)})
    for q in QUANTILES:
        frame[f"q{int(round(q * 100))}"] = np.quantile(acts, q, axis=1)
    frame["frac_gt_0.9"] = (acts > 0.9).mean(1)
    means = frame["mean"].to_numpy()
    frame["retention"] = np.append(np.cumprod(means[::-1][:-1])[::-1], 1.0)
    return frame


# --------------------------------------------------------------------------------------
# 5. tied weights: dL/dW_hh = sum_t delta_t h_{t-1}^T
# --------------------------------------------------------------------------------------
@dataclass
class TiedWeightGrad:
    """``per_step``: t, char, contribution_norm (Frobenius), share (of the sum of norms),
    cumulative (||sum_{s<=t}|| / ||total||) and one column per gate block's norm.
    ``total``: sum of the per-step outer products (G*H, H); ``autograd``: W_hh.grad from
    the model's own backward; ``contributions`` (T, G*H, H) only if asked for."""

    per_step: pd.DataFrame
    total: np.ndarray
    autograd: np.ndarray
    max_abs_err: float
    contributions: np.ndarray | None = None


def tied_weight_grads(probe: Probe, layer: int = -1, loss: str = "sum",
                      keep_contributions: bool = False) -> TiedWeightGrad:
    """Per-step terms delta_t h_{t-1}^T of dL/dW_hh, with delta_t = dL/d(rec_t) the
    gradient of the recurrent pre-activation rec_t = W_hh h_{t-1} + b_hh at step t (read
    off a per-step zero bias added to b_hh). Their sum is compared with the W_hh gradient
    of the model's own engine."""
    layer = probe.layer_index(layer)
    model = probe.model
    logits, traces = unroll(model, probe.inputs, perturb_layers=(layer,))
    tr = traces[layer]
    deltas = torch.autograd.grad(sequence_loss(logits, probe.targets, loss), tr.b_copies)
    h_prev = torch.stack([tr.prev_state(t)[0] for t in range(probe.seq_len)]).detach()
    contrib = torch.einsum("tbg,tbh->tgh", torch.stack(deltas), h_prev)
    total = contrib.sum(0)
    w_hh = layer_weights(model.rnn, layer)[1]
    logits, _ = model(probe.inputs)
    (reference,) = torch.autograd.grad(sequence_loss(logits, probe.targets, loss), [w_hh])
    norms = contrib.flatten(1).norm(dim=1)
    cumulative = contrib.cumsum(0).flatten(1).norm(dim=1) / total.norm().clamp_min(1e-300)
    frame = pd.DataFrame({"t": np.arange(probe.seq_len), "char": probe.chars,
                          "contribution_norm": norms.numpy(),
                          "share": (norms / norms.sum().clamp_min(1e-300)).numpy(),
                          "cumulative": cumulative.numpy()})
    H = probe.hidden_size
    for gate, block in _gate_blocks(probe.cell, contrib.transpose(0, 1), H).items():
        frame[f"norm_{gate}"] = block.transpose(0, 1).flatten(1).norm(dim=1).numpy()
    return TiedWeightGrad(frame, total.numpy(), reference.numpy(),
                          float((total - reference).abs().max()),
                          contrib.numpy() if keep_contributions else None)


# --------------------------------------------------------------------------------------
# 6. truncation bias: regular (detach every k steps) and randomized (d2l 9.7)
# --------------------------------------------------------------------------------------
# regular truncation as a 0/1 factor on each step's incoming state gradient, and the
# randomized factors xi (T, draws): the same rules the trainer uses (rnncore.truncation)
regular_truncation_scale = regular_boundary_scale


def randomized_truncation_scale(seq_len: int, prob: float, draws: int,
                                gen: torch.Generator) -> Tensor:
    """(T, draws) randomized-truncation factors, one column per draw."""
    return draw_keep_factors(seq_len, draws, prob, gen)


def rnn_param_grad(probe: Probe, boundary_scale: Sequence[float] | None = None,
                   loss: str = "sum") -> Tensor:
    """Flat gradient (P,) of the recurrent layer's parameters (``named_parameters`` order;
    the head's gradient does not depend on truncation), plain autograd, one sequence."""
    params = list(probe.model.rnn.parameters())
    logits, _ = unroll(probe.model, probe.inputs, boundary_scale=boundary_scale)
    grads = torch.autograd.grad(sequence_loss(logits, probe.targets, loss), params,
                                allow_unused=True)
    return torch.cat([(torch.zeros_like(p) if g is None else g).flatten()
                      for p, g in zip(params, grads)])


def batched_param_grads(probe: Probe, scales: Tensor, loss: str = "sum") -> Tensor:
    """(B, P): one recurrent-parameter gradient per column of ``scales`` (T, B), all from
    a single batched backward.

    The B rows run the same sequence, so they share every forward value and differ only
    in how the gradient crosses step boundaries. The per-row gradient is assembled from
    per-step deltas: dW_hh = sum_t delta_t h_{t-1}^T, db_hh = sum_t delta_t,
    dW_ih = sum_t delta^x_t x_t^T, db_ih = sum_t delta^x_t (delta^x = dL/dx_proj_t).
    """
    rnn, T = probe.model.rnn, probe.seq_len
    B = scales.shape[1]
    inputs, targets = probe.inputs.expand(B, -1), probe.targets.expand(B, -1)
    top, traces = unroll(probe.model, inputs, boundary_scale=scales,
                         perturb_layers=range(rnn.num_layers), with_head=False)
    # every row has the same outputs, so the head's gradient dL/dh_t (direct part) is
    # computed once and fed to all rows through the exact linear surrogate <g_t, h_t>
    top0 = top[0].detach().requires_grad_(True)
    (direct,) = torch.autograd.grad(
        sequence_loss(probe.model.head(top0)[None], targets[:1], loss), [top0])
    copies = [c for tr in traces for c in tr.b_copies + tr.x_copies]
    grads = torch.autograd.grad((top * direct).sum(), copies)
    parts = {}
    layer_in = probe.model.embedding(probe.inputs)[0].detach()          # (T, I)
    for layer, tr in enumerate(traces):
        base = 2 * T * layer
        d_rec = torch.stack(grads[base:base + T])                      # (T, B, G*H)
        d_x = torch.stack(grads[base + T:base + 2 * T])
        h_prev = torch.stack([tr.prev_state(t)[0][0] for t in range(T)]).detach()
        parts[f"weight_ih_l{layer}"] = torch.einsum("tbg,ti->bgi", d_x, layer_in)
        parts[f"weight_hh_l{layer}"] = torch.einsum("tbg,th->bgh", d_rec, h_prev)
        parts[f"bias_ih_l{layer}"] = d_x.sum(0)
        parts[f"bias_hh_l{layer}"] = d_rec.sum(0)
        layer_in = torch.stack(tr.h)[:, 0].detach()
    return torch.cat([parts[name].reshape(B, -1) for name, _ in rnn.named_parameters()], 1)


def randomized_truncation_grads(probe: Probe, prob: float, draws: int, seed: int = 0
                                ) -> Tensor:
    """(draws, P) gradients, one randomized-truncation draw per row."""
    gen = torch.Generator().manual_seed(seed)
    return batched_param_grads(probe, randomized_truncation_scale(probe.seq_len, prob,
                                                                  draws, gen))


def _cos(a: Tensor, b: Tensor) -> Tensor:
    return (a * b).sum(-1) / (a.norm(dim=-1) * b.norm(dim=-1)).clamp_min(1e-300)


def truncation_bias(probe: Probe, truncation_lens: Sequence[int] | None = None,
                    probs: Sequence[float] = (0.25, 0.5, 0.75), draws: int = 32,
                    seed: int = 0) -> pd.DataFrame:
    """Truncated vs full-BPTT gradient of the recurrent parameters on the same sequence.

    Rows ``scheme="regular"`` for k = 1, 2, 4, ..., T: cosine, rel_norm (||g_k||/||g||),
    rel_error (||g_k - g||/||g||). Rows ``scheme="randomized"`` per p: cosine, rel_norm
    and rel_error of the mean over ``draws`` (unbiased: they tend to 1, 1 and 0 as draws
    grow), mean_cosine / mean_rel_error of single draws, and rel_std =
    sqrt(mean ||g_i - mean||^2) / ||g|| (the spread of one draw).
    """
    T = probe.seq_len
    if truncation_lens is None:
        truncation_lens = sorted({2 ** i for i in range(int(math.log2(T)) + 1)} | {T})
    for k in truncation_lens:
        if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or not 1 <= k <= T:
            raise GradFlowError(f"truncation length must be an integer in 1..{T}, got {k}")
    for p in probs:
        if not 0.0 < p <= 1.0:
            raise GradFlowError(f"truncation probability must be in (0, 1], got {p}")
    scales = torch.tensor([regular_truncation_scale(T, int(k)) for k in truncation_lens]
                          + [[1.0] * T], dtype=torch.float64).T
    grads = batched_param_grads(probe, scales)
    full, grads = grads[-1], grads[:-1]
    full_norm = float(full.norm())
    rows = [dict(scheme="regular", truncation_len=int(k), prob=math.nan, draws=1,
                 cosine=float(_cos(g, full)), rel_norm=float(g.norm()) / full_norm,
                 rel_error=float((g - full).norm()) / full_norm)
            for k, g in zip(truncation_lens, grads)]
    gen = torch.Generator().manual_seed(seed)
    for p in probs:
        g = batched_param_grads(probe, randomized_truncation_scale(T, float(p), draws, gen))
        mean = g.mean(0)
        rows.append(dict(scheme="randomized", truncation_len=math.nan, prob=float(p),
                         draws=draws, cosine=float(_cos(mean, full)),
                         rel_norm=float(mean.norm()) / full_norm,
                         rel_error=float((mean - full).norm()) / full_norm,
                         mean_cosine=float(_cos(g, full[None]).mean()),
                         mean_rel_error=float(((g - full).norm(dim=1) / full_norm).mean()),
                         rel_std=float((g - mean).pow(2).sum(1).mean().sqrt()) / full_norm))
    return pd.DataFrame(rows)


# --------------------------------------------------------------------------------------
# 7. clipping, from a trainer's step records
# --------------------------------------------------------------------------------------
CLIP_COLUMNS = ["step", "grad_norm", "clip_threshold", "clipped"]


def clipping_frame(records: Iterable, clip_threshold: float | None = None) -> pd.DataFrame:
    """Step records (``trainer.StepRecord`` objects or dicts with ``step``, ``grad_norm`` =
    pre-clip global norm, ``clipped``, optionally ``clip_threshold``/``clip_norm``) ->
    DataFrame with CLIP_COLUMNS. The threshold is the record's own or ``clip_threshold``
    (the run's ``TrainConfig.clip_norm``; 0 = clipping off -> nan). A missing ``clipped``
    is derived as grad_norm > threshold."""
    rows = []
    for i, rec in enumerate(records):
        get = rec.get if isinstance(rec, dict) else (lambda k, d=None, r=rec: getattr(r, k, d))
        norm = get("grad_norm")
        if norm is None:
            raise GradFlowError(f"step record {i} has no grad_norm")
        threshold = get("clip_threshold", get("clip_norm", None))
        threshold = clip_threshold if threshold is None else threshold
        threshold = None if threshold is not None and float(threshold) <= 0 else threshold
        clipped = get("clipped")
        if clipped is None:
            clipped = threshold is not None and float(norm) > float(threshold)
        rows.append((int(get("step", i)), float(norm),
                     math.nan if threshold is None else float(threshold), bool(clipped)))
    return pd.DataFrame(rows, columns=CLIP_COLUMNS)


def clip_rate(frame: pd.DataFrame) -> float:
    """Fraction of steps whose gradient was clipped (nan for no steps)."""
    return float(frame["clipped"].mean()) if len(frame) else math.nan


def load_step_records(path: str | Path, clip_threshold: float | None = None) -> pd.DataFrame:
    """Read step records from a JSON-lines file (one record per line) or a JSON list, or
    a checkpoint/run directory holding ``steps.jsonl`` or ``meta.json`` with ``steps``."""
    path = Path(path)
    if path.is_dir():
        for name in ("steps.jsonl", "steps.json", "meta.json"):
            if (path / name).is_file():
                path = path / name
                break
        else:
            raise GradFlowError(f"{path} holds no step records (steps.jsonl)")
    if not path.is_file():
        raise GradFlowError(f"step records not found: {path}")
    text = path.read_text(encoding="utf-8")
    try:
        if path.suffix == ".jsonl":
            records = [json.loads(line) for line in text.splitlines() if line.strip()]
        else:
            data = json.loads(text)
            records = data.get("steps", data.get("history", [])) if isinstance(data, dict) \
                else data
    except json.JSONDecodeError as exc:
        raise GradFlowError(f"{path} is not valid JSON: {exc.msg}") from None
    if not isinstance(records, list):
        raise GradFlowError(f"{path}: step records must be a list")
    if clip_threshold is None and path.name == "meta.json" and isinstance(data, dict):
        clip_threshold = (data.get("train_config") or {}).get("clip_norm")
    return clipping_frame(records, clip_threshold)


# --------------------------------------------------------------------------------------
# 8. activations per character
# --------------------------------------------------------------------------------------
@dataclass
class Activations:
    """``values[name]``: (T, H) per character for h (and c, i, f, g, o for LSTM; r, z, n
    for GRU; a = pre-activation for RNN)."""

    cell: str
    layer: int
    chars: list[str]
    values: dict[str, np.ndarray] = field(default_factory=dict)

    def frame(self, name: str) -> pd.DataFrame:
        """Units as rows, one column per step labelled ``"t:char"`` (heatmap-ready)."""
        if name not in self.values:
            raise GradFlowError(f"no activation {name!r} (have {', '.join(self.values)})")
        cols = [f"{t}:{c}" for t, c in enumerate(self.chars)]
        return pd.DataFrame(self.values[name].T, columns=cols).rename_axis("unit")

    def long_frame(self) -> pd.DataFrame:
        """Columns: name, t, char, unit, value."""
        parts = []
        for name, arr in self.values.items():
            T, H = arr.shape
            parts.append(pd.DataFrame({"name": name, "t": np.repeat(np.arange(T), H),
                                       "char": np.repeat(self.chars, H),
                                       "unit": np.tile(np.arange(H), T),
                                       "value": arr.reshape(-1)}))
        return pd.concat(parts, ignore_index=True)


def activations(probe: Probe, layer: int = -1) -> Activations:
    layer = probe.layer_index(layer)
    with torch.no_grad():
        _, traces = unroll(probe.model, probe.inputs)
    tr = traces[layer]
    values = {"h": torch.stack(tr.h)[:, 0].numpy()}
    for name, seq in tr.gates.items():
        values[name] = torch.stack(seq)[:, 0].numpy()
    return Activations(probe.cell, layer, list(probe.chars), values)


# --------------------------------------------------------------------------------------
# everything at once (the CLI's numbers)
# --------------------------------------------------------------------------------------
def run_probes(cfg: GradFlowConfig, probe: Probe | None = None) -> dict:
    """A JSON-ready summary of every probe for ``cfg``."""
    probe = prepare(cfg) if probe is None else probe
    layer = probe.layer_index(cfg.layer)
    norms = hidden_grad_norms(probe)
    jac = jacobian_norms(probe, layer, cfg.jacobian_method, cfg.power_iters)
    sweep = rho_sweep(probe, cfg.rho_values, layer, cfg.jacobian_method, cfg.power_iters)
    tied = tied_weight_grads(probe, layer)
    trunc = truncation_bias(probe, probs=cfg.truncation_probs, draws=cfg.truncation_draws,
                            seed=cfg.seed)
    out = {
        "config": cfg.to_dict(), "cell": probe.cell, "hidden_size": probe.hidden_size,
        "num_layers": probe.num_layers, "seq_len": probe.seq_len, "layer": layer,
        "text": "".join(probe.chars),
        "hidden_grad_norms": {
            loss: {str(lay): g.grad_norm.tolist() for lay, g in df.groupby("layer")}
            for loss, df in norms.groupby("loss")},
        "jacobian": jac.to_dict(),
        "spectral_radii": spectral_radii(probe.model).to_dict(orient="records"),
        "rho_sweep": sweep.to_dict(orient="records"),
        "tied_weights": {"max_abs_err": tied.max_abs_err,
                         "total_norm": float(np.linalg.norm(tied.total)),
                         "contribution_norms": tied.per_step.contribution_norm.tolist()},
        "truncation": trunc.to_dict(orient="records"),
    }
    if probe.cell != "rnn":
        check = gate_path_check(probe, layer)
        stats = gate_stats(probe, layer=layer)
        out["gate_path"] = {"gate": str(check.gate.iloc[0]),
                            "max_err_diag_gate": float(check.err_diag_gate.max()),
                            "min_err_diag_one_minus": float(check.err_diag_one_minus.min()),
                            "max_offdiag": float(check.offdiag_max.max())}
        out["gate_stats"] = {"gate": str(stats.gate.iloc[0]),
                             "mean": float(stats["mean"].mean()),
                             **{c: float(stats[c].mean()) for c in stats.columns
                                if c.startswith("q")}}
    return out
