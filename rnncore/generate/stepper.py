"""Decoding engines: one recurrent step per position, with the head kept apart.

The decoder drives an engine through four calls, for B rows and a vocab of V tokens::

    start(ids, rows) -> (top, state)       feed the priming ids, copy the state to B rows
    advance(tokens (B,), state) -> (top, state)
    head(top) -> logits (B, V)
    select(state, index (B,)) -> state     reorder rows (beam search)

``_ModelEngine`` goes through the model's own ``step`` (any cell; ``top`` is already the
logits). ``_LSTMStepper`` is the fused float32 / float16-packed LSTM step for a
unidirectional LSTM ``CharRNN`` in eval mode; its ``top`` is the last layer's hidden state
(B, H), so the head product (H x V) is skipped where the token is forced. A head that is
not a plain Linear serves its exact log-probabilities as the logits: the adaptive softmax
through ``_adaptive_log_prob`` (torch's ops, the same bits), any other as the model's module.
For one row a step is mostly per-op overhead (a few microseconds each), so the step's
intermediates live in buffers reused every step (``_Scratch``).
"""
from __future__ import annotations

import weakref

import torch
import torch.nn.functional as F

from rnncore.cells import lstm_pointwise
from rnncore.kinds import layer_weights


def _state_select(state, index: torch.Tensor):
    if isinstance(state, tuple):
        return tuple(s.index_select(1, index) for s in state)
    return state.index_select(1, index)


def _state_expand(state, batch: int):
    if isinstance(state, tuple):
        return tuple(s.expand(-1, batch, -1).contiguous() for s in state)
    return state.expand(-1, batch, -1).contiguous()


def _step(model, tokens: torch.Tensor, state):
    step = getattr(model, "step", None)
    if step is not None:
        return step(tokens, state)
    logits, state = model(tokens.reshape(-1, 1), state)
    return logits[:, 0], state


class _ModelEngine:
    """Decoding steps through the model's own ``step`` (any cell). The decoder talks to an
    engine: ``start(ids, rows) -> (top, state)`` feeds the priming ids, ``advance(tokens,
    state) -> (top, state)`` one token per row, ``head(top) -> logits`` (B, V), ``select``
    reorders rows. Here ``top`` already is the logits; the LSTM engine keeps it the last
    layer's hidden state so the head can be skipped where the token is forced."""

    def __init__(self, model) -> None:
        self.model = model

    def start(self, ids: list[int], rows: int):
        logits, state = self.model(torch.tensor([ids], dtype=torch.long),
                                   self.model.poem_start_state(1))
        return logits[:, -1].expand(rows, -1), _state_expand(state, rows)

    def advance(self, tokens: torch.Tensor, state):
        return _step(self.model, tokens, state)

    @staticmethod
    def head(top: torch.Tensor) -> torch.Tensor:
        return top

    @staticmethod
    def select(state, index: torch.Tensor):
        return _state_select(state, index)


# fused weights per model: weak keys, so a model that is dropped frees its copies
_FUSED_CACHE: "weakref.WeakKeyDictionary" = weakref.WeakKeyDictionary()


def _fp16_exact(w: torch.Tensor) -> bool:
    """Whether every entry of ``w`` is a float16 value (true for a checkpoint stored in
    float16, such as the bundled one, and loaded to float32)."""
    w = w.detach()
    return w.dtype == torch.float32 and torch.equal(w.half().float(), w)


def _pack_fp16(pairs):
    """fbgemm-packed float16 copies of ``(W (N, K), b (N,) or None)`` pairs, or None where
    the ops are missing (builds without fbgemm, e.g. ARM).

    ``_linear_fp16(x, packed) = x @ W^T + b`` reads W as float16 and multiplies and
    accumulates in float32 (bias kept float32): for weights that are float16 values
    (``_fp16_exact``) it is the float32 product up to summation order (~1e-6, tested),
    with half the bytes per step -- and decoding one row is bound by reading the weights
    (8 MB per token in float32 for the bundled model, as much as the L3 cache)."""
    try:
        prepack = torch.ops.quantized.linear_prepack_fp16
        packed = [prepack(w.detach().contiguous(), None if b is None else b.detach())
                  for w, b in pairs]
        w, b = pairs[0]
        x = torch.zeros(1, w.shape[1])
        _linear_fp16(x, packed[0])  # the kernel must run here, not only pack
    except (AttributeError, RuntimeError, NotImplementedError):
        return None
    return packed


def _linear_fp16(x: torch.Tensor, packed) -> torch.Tensor:
    return torch.ops.quantized.linear_dynamic_fp16(x, packed)


def _adaptive_parts(head):
    """``(W_h, b_h, c_0, [(P_i, U_i)])`` of an adaptive softmax head
    (``torch.nn.AdaptiveLogSoftmaxWithLoss`` with bias-free two-layer tails) for
    ``_adaptive_log_prob``, or None for any other head."""
    if not isinstance(head, torch.nn.AdaptiveLogSoftmaxWithLoss):
        return None
    tails = []
    for tail in head.tail:
        if not (isinstance(tail, torch.nn.Sequential) and len(tail) == 2
                and all(isinstance(m, torch.nn.Linear) and m.bias is None for m in tail)):
            return None
        tails.append((tail[0].weight, tail[1].weight))
    return head.head.weight, head.head.bias, head.shortlist_size, tails


def _adaptive_log_prob(parts, x: torch.Tensor, scratch: dict) -> torch.Tensor:
    """x (B, H) -> log p (B, V): the arithmetic of torch's
    ``AdaptiveLogSoftmaxWithLoss.log_prob`` op for op (so the same bits), without its module
    calls, and the head's log-softmax kept in a buffer with ready-made views, since a view
    costs as much as a small op (about half of a one-row step's head time was such overhead).
    ``scratch``: the caller's buffers, per row count."""
    w, b, shortlist, tails = parts
    hit = scratch.get(x.shape[0])
    if hit is None:  # (B, c_0 + k) and views of it: the shortlist and one slot per cluster
        hl = x.new_empty((x.shape[0], w.shape[0]))
        hit = scratch[x.shape[0]] = (hl, hl[:, :shortlist],
                                    [hl[:, shortlist + i, None] for i in range(len(tails))])
    hl, short, slots = hit
    torch.log_softmax(F.linear(x, w, b), dim=1, out=hl)
    pieces = [short]
    for (proj, up), slot in zip(tails, slots):
        # log p(v) = log p(cluster) + log p(v | cluster), the same single rounding in place
        pieces.append(torch.log_softmax(F.linear(F.linear(x, proj), up), dim=1).add_(slot))
    return torch.cat(pieces, 1)  # clusters follow the shortlist; fresh: the decoder keeps it


class _Scratch:
    """One layer's step buffers for B rows, reused every step (only h' and c' leave a step),
    with their views made once: ``gates`` (B, 4H), ``xh`` (B, K) the input of a layer > 0,
    ``sig`` (B, 4H) its sigmoid, views ``i f o`` of it, ``g`` of gates.

    ``pointwise`` is ``lstm_pointwise`` with one sigmoid over all gates instead of three and
    no new tensors but h' and c': the same bits where each slice runs the vectorised
    kernels (H a multiple of 64; ATen finishes other lengths with scalar code of other
    rounding), about half of a one-row step's non-matmul time."""

    def __init__(self, B: int, K: int, H: int) -> None:
        empty = lambda n: torch.empty(B, n, dtype=torch.float32)  # noqa: E731
        self.gates, self.xh, self.sig = empty(4 * H), empty(K), empty(4 * H)
        self.i, self.f, _, self.o = self.sig.chunk(4, 1)
        self.g = self.gates[:, 2 * H:3 * H]
        self.tg, self.fc, self.ig, self.tc = (empty(H) for _ in range(4))

    def pointwise(self, gates: torch.Tensor, c: torch.Tensor):
        H = c.shape[1]
        torch.sigmoid(gates, out=self.sig)
        torch.tanh(self.g if gates is self.gates else gates[:, 2 * H:3 * H], out=self.tg)
        c = torch.add(torch.mul(self.f, c, out=self.fc), torch.mul(self.i, self.tg, out=self.ig))
        return torch.mul(self.o, torch.tanh(c, out=self.tc)), c


class _LSTMStepper:
    """``model.step`` for a unidirectional LSTM ``CharRNN`` in eval mode, with each layer's
    two matmuls fused into one and every weight stored transposed (K, N)::

        gates_0 = X[token] + h_0 @ W_hh0^T,   X = E @ W_ih0^T + (b_ih0 + b_hh0)   (V, 4H)
        gates_l = [x, h_l] @ [W_ih, W_hh]^T + (b_ih + b_hh)   (B, 4H), l >= 1, order i f g o
        c' = sigmoid(f) * c + sigmoid(i) * tanh(g),   h' = sigmoid(o) * tanh(c')
        logits = h'_top @ W_head^T + b_head                       (B, V)

    The same function as the layer (tested against ``model.step``), minus its per-call
    Python bookkeeping, which dominates one-token steps. The first layer's input projection
    of every token, ``X``, is computed once per model (its input is the embedding row, so a
    step reads one row of X instead of multiplying by W_ih0), when X stays below
    ``MAX_INPUT_TABLE_BYTES``. The (K, N) copies make the matmuls ``addmm(b, x, W^T)`` on
    contiguous memory, measurably faster on CPU than ``linear`` on the (N, K) weights (40%
    for the one-row head product on the 2-core EPYC). ``__call__`` keeps the ``model.step``
    interface, state ``(h, c)`` (L, B, H); the decoder uses the engine methods with the
    state as per-layer lists and the head applied separately.

    Weights that are all float16 values (a checkpoint stored in float16 and loaded to
    float32, as the bundled one) are also packed as float16 for fbgemm (``_pack_fp16``):
    the same numbers in half the bytes, multiplied and summed in float32, so the logits
    match the float32 path to ~1e-6 (tested). They are used for several rows, or for one
    row with more than one torch thread; one row on one thread keeps the float32 copies.
    ``FP16_WEIGHTS = False`` switches the packing off. Other weights only use float32.
    """

    MAX_INPUT_TABLE_BYTES = 64 * 2**20
    # "auto": fp16-packed weights where they hold the model's weights exactly (see
    # ``_pack_fp16``); False: always the fp32 copies
    FP16_WEIGHTS = "auto"

    def __init__(self, model) -> None:
        rnn = model.rnn
        self.embedding = model.embedding.weight
        self.start_state = model.poem_start_state(1)  # (h, c) (L, 1, H) or None
        self.num_layers = rnn.num_layers
        self.hidden_size = rnn.hidden_size
        # only a Linear head is fused; any other is called as it is (``head``)
        self.model_head = None if isinstance(model.head, torch.nn.Linear) else model.head
        self.adaptive = _adaptive_parts(model.head)
        params = [p for l in range(rnn.num_layers) for p in layer_weights(rnn, l)]
        params += [*model.head.parameters(), model.embedding.weight]
        # fused weights are cached per model and rebuilt whenever a parameter changes
        # (an optimizer step bumps ``_version``; loading replaces the tensor)
        key = (tuple((id(p), p._version) for p in params if p is not None), self.FP16_WEIGHTS)
        hit = _FUSED_CACHE.get(model)
        if hit is None or hit[0] != key:
            hit = (key,) + self._build(model)
            _FUSED_CACHE[model] = hit
        self.layers, self.input_table, self.head_wT, self.head_b, packed = hit[1:]
        self.head_packed = packed[0] if packed else None
        self.layers_packed = packed[1:] if packed else None
        # fbgemm's fp16 kernel converts every weight it reads: for a single row on a single
        # core that costs more than the halved bytes save (2-core EPYC, bundled model: one
        # poem ~10% slower on 1 thread, ~15% faster on 2; 16 poems 15-30% faster on both)
        self.fp16_one_row = torch.get_num_threads() > 1
        # step buffers per row count (``_Scratch``; float32 hidden sizes that are multiples
        # of 64 only), and the adaptive head's
        self.scratch = {} if self.hidden_size % 64 == 0 and \
            self.embedding.dtype == torch.float32 else None
        self.head_scratch: dict = {}

    def _build(self, model):
        rnn = model.rnn
        head = model.head if isinstance(model.head, torch.nn.Linear) else None
        layers, weights = [], [] if head is None else [head.weight]
        for l in range(rnn.num_layers):
            w_ih, w_hh, b_ih, b_hh = layer_weights(rnn, l)
            weights += [w_ih, w_hh]
            w = torch.cat([w_ih, w_hh], 1).detach()
            b = None if b_ih is None else (b_ih + b_hh).detach()
            layers.append((w, b))
        table = None
        emb = model.embedding.weight.detach()
        w0, b0 = layers[0]
        if emb.shape[0] * w0.shape[0] * emb.element_size() <= self.MAX_INPUT_TABLE_BYTES:
            E = emb.shape[1]
            w_in = w0[:, :E].T
            table = emb @ w_in if b0 is None else torch.addmm(b0, emb, w_in)
            layers[0] = (w0[:, E:].contiguous(), None)  # only W_hh0 is left per step
        head_wT = head_b = None
        if head is not None:
            head_b = None if head.bias is None else head.bias.detach()
            head_wT = head.weight.detach().T.contiguous()
        packed = None
        if self.FP16_WEIGHTS == "auto" and all(_fp16_exact(w) for w in weights):
            # packed[0] is the head's (None without a Linear head), packed[1:] the layers'
            pairs = [] if head is None else [(head.weight.detach(), head_b)]
            packed = _pack_fp16(pairs + layers)
            if packed is not None and head is None:
                packed = [None, *packed]
        return ([(w.T.contiguous(), b) for w, b in layers], table, head_wT, head_b, packed)

    @staticmethod
    def supports(model) -> bool:
        rnn = getattr(model, "rnn", None)
        cfg = getattr(model, "cfg", None)
        return (getattr(cfg, "cell", None) == "lstm" and rnn is not None
                and not getattr(rnn, "bidirectional", True)
                and getattr(rnn, "proj_size", 0) == 0 and not model.training
                and hasattr(model, "embedding") and hasattr(model, "head"))

    def advance(self, tokens: torch.Tensor, state):
        """tokens (B,) -> top hidden state (B, H) and ``([h_l], [c_l])`` (lists of (B, H))."""
        hs, cs = state
        packed = self.layers_packed
        if packed is not None and not self.fp16_one_row and tokens.shape[0] == 1:
            packed = None
        bufs = self._buffers(tokens.shape[0])
        new_h, new_c = [], []
        for l, ((w, b), h, c) in enumerate(zip(self.layers, hs, cs)):
            buf = bufs[l] if bufs else None
            out = buf.gates if buf else None
            if l == 0 and self.input_table is not None:
                if packed is None:
                    gates = torch.addmm(self.input_table.index_select(0, tokens), h, w, out=out)
                else:
                    gates = torch.index_select(self.input_table, 0, tokens, out=out)
                    gates.add_(_linear_fp16(h, packed[0]))
            else:
                if l == 0:
                    x = torch.nn.functional.embedding(tokens, self.embedding)
                xh = torch.cat([x, h], 1, out=buf.xh if buf else None)
                if packed is not None:
                    gates = _linear_fp16(xh, packed[l])
                elif b is None:
                    gates = torch.mm(xh, w, out=out)
                else:
                    gates = torch.addmm(b, xh, w, out=out)
            if buf is None:
                (x, c), _ = lstm_pointwise(gates, c)
            else:
                x, c = buf.pointwise(gates, c)
            new_h.append(x)
            new_c.append(c)
        return x, (new_h, new_c)

    def _buffers(self, rows: int):
        if self.scratch is None:
            return None
        hit = self.scratch.get(rows)
        if hit is None:
            H = self.hidden_size
            hit = self.scratch[rows] = [_Scratch(rows, w.shape[0], H) for w, _ in self.layers]
        return hit

    def head(self, top: torch.Tensor) -> torch.Tensor:
        if self.adaptive is not None:
            if not torch.is_grad_enabled():
                return _adaptive_log_prob(self.adaptive, top, self.head_scratch)
            with torch.no_grad():
                return _adaptive_log_prob(self.adaptive, top, self.head_scratch)
        if self.model_head is not None:
            with torch.no_grad():
                return self.model_head(top)
        if self.head_packed is not None and (self.fp16_one_row or top.shape[0] > 1):
            return _linear_fp16(top, self.head_packed)
        if self.head_b is None:
            return torch.mm(top, self.head_wT)
        return torch.addmm(self.head_b, top, self.head_wT)

    def start(self, ids: list[int], rows: int):
        """Feed the priming ids to one row from the model's poem start state (zeros if it
        has none), then copy it to ``rows``."""
        if self.start_state is None:
            zero = torch.zeros(1, self.hidden_size, dtype=self.embedding.dtype)
            state = ([zero] * self.num_layers, [zero] * self.num_layers)
        else:
            h, c = self.start_state
            state = ([h[l] for l in range(self.num_layers)],
                     [c[l] for l in range(self.num_layers)])
        for i in ids:
            top, state = self.advance(torch.tensor([i], dtype=torch.long), state)
        hs, cs = state
        rows_of = lambda x: x.expand(rows, -1).contiguous()  # noqa: E731
        return rows_of(top), ([rows_of(h) for h in hs], [rows_of(c) for c in cs])

    @staticmethod
    def select(state, index: torch.Tensor):
        hs, cs = state
        return [h.index_select(0, index) for h in hs], [c.index_select(0, index) for c in cs]

    def __call__(self, tokens: torch.Tensor, state):
        h_all, c_all = state
        top, (hs, cs) = self.advance(tokens, (list(h_all.unbind(0)), list(c_all.unbind(0))))
        return self.head(top), (torch.stack(hs), torch.stack(cs))
