"""The ``"bptt"`` engine: hand-derived forward and backward through time for one layer and
one direction, as a single ``torch.autograd.Function``.

Layout. Every sequence is kept *flat and time-major*, the layout of a PackedSequence:
rows ``[off_t, off_t + bs_t)`` of an (N, .) tensor hold time step t for the bs_t
sequences still running (sorted by length, longest first). A padded (T, B) batch is the
special case bs_t = B, off_t = t*B, so one code path serves both.

Forward: one GEMM projects the input of every step, x_proj = x W_ih^T + b (N, G*H),
then per step in processing order:

    a_t = x_proj_t + h_{t-1} W_hh^T                (one GEMM per step)
    RNN : h_t = tanh(a_t)
    LSTM: i,f,o = sigmoid, g = tanh;  c_t = f c_{t-1} + i g;  h_t = o tanh(c_t)
    GRU : r,z = sigmoid(x_rz + W_hrz h + b_hrz);  n = tanh(x_n + r (W_hn h + b_hn))
          h_t = (1 - z) n + z h_{t-1}

Backward (the BPTT recursion, in reverse processing order). With dH the *total* gradient
dL/dh_t (the direct part dL/dout_t, plus dL/dh_n at each sequence's last step, plus what
flows back from step t+1) and dA_t the gradient of the pre-activations:

    RNN : dA_t = dH_t * (1 - h_t^2)
    LSTM: dC_t += dH_t * o_t (1 - tanh^2 c_t)
          dA_t = [dC g i(1-i), dC c_{t-1} f(1-f), dC i (1-g^2), dH tanh(c_t) o(1-o)]
          dC_{t-1} += dC_t * f_t                       (the cell's own path: diag(f_t))
    GRU : dA^n = dH (1-z)(1-n^2);  dA^z = dH (h_{t-1}-n) z(1-z);  dA^r = dA^n (W_hn h + b_hn) r(1-r)
          dH_{t-1} += dH_t * z_t                       (the update gate's direct path)
    all : dH_{t-1} += dA_t^{rec} W_hh                  (one GEMM per step)

so dL/dh_t = W^T (dL/dh_{t+1} * f'(a_{t+1})) + dL/dout_t, generalised to the gates. LSTM
and GRU accumulate dH in an (N, H) buffer; the RNN, whose forward saves only h (N, H),
keeps just the part flowing back from t+1 in a (B, H) carry, so its backward's working
set is the gate gradients and dx. Only
that recursion is sequential: afterwards dW_hh = dA^T H_prev, dW_ih = dA^T X, dx = dA W_ih
and db = sum dA are single GEMMs/reductions over all N rows (``_Grads``). When the gate
gradients of the whole sequence would exceed GRAD_BLOCK_BYTES (long sequences) the same
GEMMs run per block of steps as soon as the recursion has finished that block, so the
backward's working set stays bounded and peak memory grows with T only by what forward
saved. The loop bodies write into preallocated buffers with ``out=`` / in-place ops so a
step is a handful of kernel calls.

Saved for backward: x (N,I) and W_ih; RNN out (N,H); LSTM gates (N,4H, the projection
buffer completed in place), c (N,H), out; GRU [r, z, W_hn h + b_hn] (N,3H), n (N,H),
out. With no grad required nothing is saved.
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import torch
from torch import Tensor


# --------------------------------------------------------------------------------------
# schedule: which rows are active at each step, and where each step's previous state lives
# --------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Step:
    off: int        # first row of this step in the flat layout
    bs: int         # active sequences at this step
    off_prev: int   # first row of the step whose output is this step's h_{t-1}
    n_carry: int    # rows [0, n_carry) take h_{t-1} from that step; rows [n_carry, bs) from h0


class Schedule:
    """Processing order for a flat, time-major batch; ``reverse`` runs each sequence
    backwards within its own length (the second direction of a bidirectional layer)."""

    def __init__(self, batch_sizes: tuple[int, ...], reverse: bool):
        self.batch_sizes = batch_sizes
        self.reverse = reverse
        self.T = len(batch_sizes)
        self.B = batch_sizes[0]
        offs = [0]
        for bs in batch_sizes[:-1]:
            offs.append(offs[-1] + bs)
        self.offsets = offs
        self.N = offs[-1] + batch_sizes[-1]
        order = range(self.T - 1, -1, -1) if reverse else range(self.T)
        steps, prev_t = [], None
        for t in order:
            bs = batch_sizes[t]
            if prev_t is None:
                steps.append(Step(offs[t], bs, 0, 0))
            else:
                steps.append(Step(offs[t], bs, offs[prev_t], min(bs, batch_sizes[prev_t])))
            prev_t = t
        self.steps = steps
        self.uniform = all(bs == self.B for bs in batch_sizes)   # a padded batch, not packed
        self._cache: dict = {}

    def indices(self, device) -> tuple[Tensor, Tensor]:
        """(prev_index (N,), last_index (B,)) into ``cat([out, h0])``: the row holding each
        row's h_{t-1}, and the row holding each sequence's final state."""
        key = str(device)
        if key not in self._cache:
            # the cache outlives the call: made under inference_mode (generation) these
            # would be inference tensors, which a later training forward cannot save
            with torch.inference_mode(False):
                self._cache[key] = self._build_indices(device)
        return self._cache[key]

    def _build_indices(self, device) -> tuple[Tensor, Tensor]:
        prev = torch.empty(self.N, dtype=torch.long)
        last = torch.empty(self.B, dtype=torch.long)
        for s in self.steps:
            rows = torch.arange(s.bs)
            src = torch.where(rows < s.n_carry, s.off_prev + rows, self.N + rows)
            prev[s.off:s.off + s.bs] = src
            last[:s.bs] = s.off + rows
        return prev.to(device), last.to(device)


@lru_cache(maxsize=256)
def schedule(batch_sizes: tuple[int, ...], reverse: bool) -> Schedule:
    return Schedule(batch_sizes, reverse)


def step_prev(prev_rows: Tensor | None, init: Tensor, s: Step) -> Tensor:
    """This step's h_{t-1} (bs, H): the first ``n_carry`` rows of the previous step's output
    ``prev_rows``, then rows of the initial state."""
    if s.n_carry == s.bs:
        return prev_rows[:s.bs]
    if s.n_carry == 0:
        return init[:s.bs]
    return torch.cat([prev_rows[:s.n_carry], init[s.n_carry:s.bs]])


def _prev(buf: Tensor, init: Tensor, s: Step) -> Tensor:
    """``step_prev`` over a flat (N, H) buffer."""
    return step_prev(buf[s.off_prev:s.off_prev + s.n_carry], init, s)


def _gather_prev(buf: Tensor, init: Tensor, idx: Tensor) -> Tensor:
    """Rows ``idx`` of ``cat([buf, init])`` without materialising the concatenation."""
    n = buf.shape[0]
    from_init = (idx >= n).unsqueeze(1)
    return torch.where(from_init, init[(idx - n).clamp(min=0)], buf[idx.clamp(max=n - 1)])


# --------------------------------------------------------------------------------------
# recording dL/dh_t for the gradient-flow probes
# --------------------------------------------------------------------------------------
@dataclass
class HiddenGrad:
    layer: int
    direction: int
    grad: Tensor  # (T, B, H), total dL/dh_t, zero where a sequence has ended


class HiddenGradRecorder:
    """Collects dL/dh_t from every "bptt" layer that runs backward while it is active."""

    def __init__(self):
        self.records: list[HiddenGrad] = []

    def __enter__(self):
        _RECORDERS.append(self)
        return self

    def __exit__(self, *exc):
        _RECORDERS.remove(self)
        return False


# A process-wide stack (not thread-local): CUDA backward runs on autograd's device threads.
_RECORDERS: list[HiddenGradRecorder] = []


def record_hidden_grads() -> HiddenGradRecorder:
    """``with record_hidden_grads() as rec: loss.backward()`` -> ``rec.records``."""
    return HiddenGradRecorder()


def _to_padded(flat: Tensor, sched: Schedule) -> Tensor:
    if all(bs == sched.B for bs in sched.batch_sizes):
        return flat.reshape(sched.T, sched.B, -1).clone()
    out = flat.new_zeros(sched.T, sched.B, flat.shape[-1])
    for t, (off, bs) in enumerate(zip(sched.offsets, sched.batch_sizes)):
        out[t, :bs] = flat[off:off + bs]
    return out


# --------------------------------------------------------------------------------------
# forward loops. Each completes the input projection ``xp`` (N, G*H) = x W_ih^T + b in
# place, so the pre-activations need no second buffer (for LSTM it becomes the saved gates).
# --------------------------------------------------------------------------------------
def _rnn_forward(xp, h0, w_hh, sched, relu):
    out = xp                                  # (N, H): a_t, then h_t = f(a_t) in place
    wt = w_hh.t()
    for s in sched.steps:
        o = out[s.off:s.off + s.bs]
        o.addmm_(_prev(out, h0, s), wt)
        o.relu_() if relu else o.tanh_()
    return (out,), (out,)


def _lstm_forward(xp, h0, c0, w_hh, sched):
    N, H = xp.shape[0], h0.shape[1]
    B = sched.B
    gates = xp                                # (N, 4H): a_t, then [i, f, g, o] in place
    out = xp.new_empty(N, H)
    cs = xp.new_empty(N, H)
    tc = xp.new_empty(B, H)
    wt = w_hh.t()
    for s in sched.steps:
        r0, r1 = s.off, s.off + s.bs
        g = gates[r0:r1]
        g.addmm_(_prev(out, h0, s), wt)
        g[:, :2 * H].sigmoid_()
        g[:, 2 * H:3 * H].tanh_()
        g[:, 3 * H:].sigmoid_()
        c = cs[r0:r1]
        torch.mul(g[:, H:2 * H], _prev(cs, c0, s), out=c)
        c.addcmul_(g[:, :H], g[:, 2 * H:3 * H])
        t = tc[:s.bs]
        torch.tanh(c, out=t)
        torch.mul(g[:, 3 * H:], t, out=out[r0:r1])
    return (out, cs), (gates, cs, out)


def _gru_forward(x, w_ih, b_ih, h0, w_hh, b_hh, sched, save):
    N, H = x.shape[0], h0.shape[1]
    # b_hr, b_hz add to the same pre-activations as b_ir, b_iz: fold them into the input
    # GEMM. Its buffer then serves per row as [r, z | W_hn h + b_hn]: it starts as
    # [x_r + b_r, x_z + b_z | b_hn], the step's GEMM adds W_hh h in place and r, z replace
    # their pre-activations in place, so what backward needs takes 3H and a step is 5 ops.
    b_x = b_ih
    if b_hh is not None:
        b_rz = torch.cat([b_hh[:2 * H], b_hh.new_zeros(H)])
        b_x = b_rz if b_ih is None else b_ih + b_rz
    rzh = _project(x, w_ih, b_x, None)                       # (N, 3H)
    xn = rzh[:, 2 * H:].clone()                               # x_n + b_in (N, H)
    if b_hh is None:
        rzh[:, 2 * H:] = 0
    else:
        rzh[:, 2 * H:] = b_hh[2 * H:]
    out = x.new_empty(N, H)
    nn_ = x.new_empty(N if save else sched.B, H)
    wt = w_hh.t()
    for s in sched.steps:
        r0, r1 = s.off, s.off + s.bs
        hp = _prev(out, h0, s)
        hb = rzh[r0:r1]
        hb.addmm_(hp, wt)
        g = hb[:, :2 * H]
        g.sigmoid_()
        n = nn_[r0:r1] if save else nn_[:s.bs]
        torch.addcmul(xn[r0:r1], g[:, :H], hb[:, 2 * H:], out=n)
        n.tanh_()
        torch.lerp(n, hp, g[:, H:], out=out[r0:r1])          # (1 - z) n + z h_{t-1}
    return (out,), (rzh, nn_, out)


def _project(x, w_ih, b_ih, b_hh):
    """x (N, I) -> x W_ih^T + b_ih (+ b_hh, which adds to the same pre-activation for
    RNN and LSTM; GRU passes b_hh=None because b_hn sits inside r * (.)): one GEMM."""
    bias = b_ih if b_hh is None else (b_hh if b_ih is None else b_ih + b_hh)
    return torch.mm(x, w_ih.t()) if bias is None else torch.addmm(bias, x, w_ih.t())


# --------------------------------------------------------------------------------------
# backward loops: each walks the steps in reverse processing order, block by block, and
# hands every finished block's gate gradients to ``flush`` (see _Grads)
# --------------------------------------------------------------------------------------
# Step-independent factors (gate derivatives) are computed vectorised over a chunk of
# CHUNK steps at a time: big-tensor ops without per-step launches, yet a working set that
# does not grow with T.
CHUNK = 64
# The gate gradients dA of a whole sequence take G*H floats per row, as much as the saved
# gates again. Up to this size they are kept and the weight/input gradients are single
# GEMMs over all rows; beyond it they are formed block by block (each block whole chunks,
# at least one), so long sequences' peak memory grows only by what the forward saved.
GRAD_BLOCK_BYTES = 32 * 2 ** 20


def _chunks(sched: Schedule):
    """Backward order (reverse processing order) in chunks: (steps, lo, hi) where rows
    [lo, hi) cover every step of the chunk (consecutive steps are adjacent rows)."""
    steps = sched.steps[::-1]
    for i in range(0, len(steps), CHUNK):
        chunk = steps[i:i + CHUNK]
        lo = min(s.off for s in chunk)
        hi = max(s.off + s.bs for s in chunk)
        yield chunk, lo, hi


def _blocks(sched: Schedule, row_bytes: int) -> list[tuple[int, int, list]]:
    """Consecutive chunks grouped into blocks (lo, hi, chunks) of at most GRAD_BLOCK_BYTES
    of gate gradients (``row_bytes`` per row), in backward order. Cached on the schedule:
    a training loop's windows share one, and rebuilding the lists each backward is a
    fixed cost per window."""
    key = ("blocks", row_bytes, GRAD_BLOCK_BYTES, CHUNK)
    if key not in sched._cache:
        sched._cache[key] = _make_blocks(sched, row_bytes)
    return sched._cache[key]


def _make_blocks(sched: Schedule, row_bytes: int) -> list[tuple[int, int, list]]:
    max_rows = max(1, GRAD_BLOCK_BYTES // row_bytes)
    blocks: list[tuple[int, int, list]] = []
    for chunk, lo, hi in _chunks(sched):
        if blocks:
            blo, bhi, cs = blocks[-1]
            if max(bhi, hi) - min(blo, lo) <= max_rows:
                blocks[-1] = (min(blo, lo), max(bhi, hi), cs + [(chunk, lo, hi)])
                continue
        blocks.append((lo, hi, [(chunk, lo, hi)]))
    return blocks


def _block_buffer(ref: Tensor, blocks, width: int) -> Tensor:
    return ref.new_empty(max(hi - lo for lo, hi, _ in blocks), width)


def _backward_init(grad_out, grad_hn, last_idx):
    dH = grad_out.clone()
    dH.index_add_(0, last_idx, grad_hn)
    return dH


def _rnn_backward(saved, h0, w_hh, sched, relu, grad_out, grad_hn, flush, record, need_h0):
    """RNN's recursion without an (N, H) dH buffer (for this cell it would be as large as
    all the forward saved): ``carry`` (B, H) holds the recurrent part of dL/dh for the
    step being processed, dA_t = (dL/dout_t + carry) * f'(a_t) is formed as
    dL/dout * f' for a whole chunk at once plus carry * f' per step, and
    carry <- dA_t W_hh. dH is materialised only for the gradient-flow recorder; dh0 only
    when ``need_h0`` (a truncated window's start state is detached: no GEMM for it)."""
    (out,) = saved
    dH = out.new_empty(out.shape) if record else None
    blocks = _blocks(sched, out.shape[1] * out.element_size())
    buf = _block_buffer(out, blocks, out.shape[1])
    dh0 = torch.zeros_like(h0) if need_h0 else None
    carry = torch.empty_like(h0)
    k_in = 0    # rows of this step that the next processed step passes dL/dh back to
    for blo, bhi, chunks in blocks:
        dA = buf[:bhi - blo]
        for chunk, lo, hi in chunks:
            o = out[lo:hi]
            deriv = (o > 0).to(o.dtype) if relu else 1 - o * o
            torch.mul(grad_out[lo:hi], deriv, out=dA[lo - blo:hi - blo])
            for s in chunk:
                r0, r1, k = s.off, s.off + s.bs, s.n_carry
                if k_in < s.bs:          # sequences whose final state is this step's
                    carry[k_in:s.bs] = grad_hn[k_in:s.bs]
                if dH is not None:
                    torch.add(grad_out[r0:r1], carry[:s.bs], out=dH[r0:r1])
                da = dA[r0 - blo:r1 - blo].addcmul_(carry[:s.bs], deriv[r0 - lo:r1 - lo])
                if k:
                    torch.mm(da[:k], w_hh, out=carry[:k])
                if k < s.bs and need_h0:
                    dh0[k:s.bs].addmm_(da[k:], w_hh)
                k_in = k
        flush(blo, bhi, dA, dA)
    return dh0, None, dH


def _lstm_backward(saved, h0, c0, w_hh, sched, grad_out, grad_hn, grad_cn, flush, need_h0,
                   need_c0):
    gates, cs, out = saved
    H = out.shape[1]
    prev_idx, last_idx = sched.indices(out.device)
    dH = _backward_init(grad_out, grad_hn, last_idx)
    dc_run = grad_cn.clone()       # dL/dc of the step being processed, per sequence (B, H)
    blocks = _blocks(sched, gates.shape[1] * gates.element_size())
    buf = _block_buffer(gates, blocks, gates.shape[1])
    dh0 = torch.zeros_like(h0) if need_h0 else None
    dc0 = torch.zeros_like(c0) if need_c0 else None
    for blo, bhi, chunks in blocks:
        dA = buf[:bhi - blo]
        for chunk, lo, hi in chunks:
            i, f, g, o = gates[lo:hi].split(H, dim=1)
            c_prev = _gather_prev(cs, c0, prev_idx[lo:hi])
            tc = torch.tanh(cs[lo:hi])
            dc_from_h = o * (1 - tc * tc)                               # dc/dh through h = o tanh c
            mul_c = torch.stack([g * i * (1 - i), c_prev * f * (1 - f), i * (1 - g * g)], dim=1)
            mul_h = tc * o * (1 - o)
            for s in chunk:
                r0, r1 = s.off, s.off + s.bs
                a0, a1 = r0 - lo, r1 - lo
                dh = dH[r0:r1]
                dc = dc_run[:s.bs].addcmul_(dh, dc_from_h[a0:a1])
                da = dA[r0 - blo:r1 - blo]
                torch.mul(mul_c[a0:a1], dc.unsqueeze(1), out=da.view(s.bs, 4, H)[:, :3])
                torch.mul(dh, mul_h[a0:a1], out=da[:, 3 * H:])
                fr = f[a0:a1]
                k = s.n_carry
                if k < s.bs and need_h0:
                    dh0[k:s.bs].addmm_(da[k:], w_hh)
                if k < s.bs and need_c0:
                    dc0[k:s.bs].addcmul_(dc[k:], fr[k:])
                if k:
                    dH[s.off_prev:s.off_prev + k].addmm_(da[:k], w_hh)
                    dc[:k].mul_(fr[:k])                                 # dc_{t-1} = dc_t * f_t
        flush(blo, bhi, dA, dA)
    return dh0, dc0, dH


def _gru_backward(saved, h0, w_hh, sched, grad_out, grad_hn, flush, need_h0):
    rzh, n, out = saved
    H = out.shape[1]
    prev_idx, last_idx = sched.indices(out.device)
    dH = _backward_init(grad_out, grad_hn, last_idx)
    blocks = _blocks(sched, 2 * rzh.shape[1] * rzh.element_size())
    buf_h = _block_buffer(rzh, blocks, 3 * H)    # [dA^r, dA^z, d(W_hn h + b_hn)]
    buf_x = _block_buffer(rzh, blocks, 3 * H)    # [dA^r, dA^z, dA^n]
    dh0 = torch.zeros_like(h0) if need_h0 else None
    for blo, bhi, chunks in blocks:
        dAh, dAx = buf_h[:bhi - blo], buf_x[:bhi - blo]
        for chunk, lo, hi in chunks:
            r, z = rzh[lo:hi, :H], rzh[lo:hi, H:2 * H]
            nn_ = n[lo:hi]
            d_n = (1 - z) * (1 - nn_ * nn_)                              # dA^n / dH
            d_z = (_gather_prev(out, h0, prev_idx[lo:hi]) - nn_) * z * (1 - z)  # dA^z / dH
            r_and_hn = torch.stack([rzh[lo:hi, 2 * H:] * r * (1 - r), r], dim=1)  # / dA^n
            z = z.contiguous()
            for s in chunk:
                r0, r1 = s.off, s.off + s.bs
                a0, a1 = r0 - lo, r1 - lo
                dh = dH[r0:r1]
                dn = dAx[r0 - blo:r1 - blo, 2 * H:]
                torch.mul(dh, d_n[a0:a1], out=dn)
                da = dAh[r0 - blo:r1 - blo]
                torch.mul(dh, d_z[a0:a1], out=da[:, H:2 * H])
                torch.mul(r_and_hn[a0:a1], dn.unsqueeze(1), out=da.view(s.bs, 3, H)[:, ::2])
                zr = z[a0:a1]
                k = s.n_carry
                if k:
                    dH[s.off_prev:s.off_prev + k].addcmul_(dh[:k], zr[:k]).addmm_(da[:k], w_hh)
                if k < s.bs and need_h0:
                    dh0[k:s.bs].addcmul_(dh[k:], zr[k:]).addmm_(da[k:], w_hh)
        dAx[:, :2 * H] = dAh[:, :2 * H]
        flush(blo, bhi, dAx, dAh)
    return dh0, None, dH


class _Grads:
    """Gradients of the layer-direction's inputs and weights, accumulated block by block
    from the gate gradients of rows [lo, hi):

        dx[lo:hi] = dA_x W_ih          dW_ih += dA_x^T x[lo:hi]      db_ih += sum dA_x
        dW_hh += dA_h^T h_prev[lo:hi]  db_hh += sum dA_h

    (dA_x: gradient of x W_ih^T + b_ih; dA_h: of W_hh h + b_hh; one tensor for RNN and
    LSTM, where both biases add to the same pre-activation). With a single block these
    are single GEMMs over all N rows."""

    def __init__(self, x, w_ih, w_hh, h0, prev_src, sched, need):
        self.x, self.w_ih, self.h0, self.prev_src, self.sched = x, w_ih, h0, prev_src, sched
        self.dx = x.new_empty(x.shape) if need[0] else None
        self.dw_ih = torch.zeros_like(w_ih) if need[1] else None
        self.db_ih = w_ih.new_zeros(w_ih.shape[0]) if need[2] else None
        self.dw_hh = torch.zeros_like(w_hh) if need[5] else None
        self.db_hh = w_hh.new_zeros(w_hh.shape[0]) if need[6] else None

    def __call__(self, lo: int, hi: int, dAx: Tensor, dAh: Tensor) -> None:
        if self.dx is not None:
            torch.mm(dAx, self.w_ih, out=self.dx[lo:hi])
        if self.dw_ih is not None:
            self.dw_ih.addmm_(dAx.t(), self.x[lo:hi])
        if self.dw_hh is not None:
            _weight_grad_into(self.dw_hh, dAh, self.prev_src, self.h0, self.sched, lo, hi)
        sum_x = dAx.sum(0) if self.db_ih is not None else None
        if self.db_ih is not None:
            self.db_ih += sum_x
        if self.db_hh is not None:
            self.db_hh += sum_x if dAh is dAx and sum_x is not None else dAh.sum(0)


def _weight_grad_into(dw: Tensor, dA: Tensor, out: Tensor, h0: Tensor, sched: Schedule,
                      lo: int, hi: int) -> None:
    """dW_hh += sum over rows [lo, hi) of dA_t^T h_{t-1}. For a padded batch h_{t-1} is
    ``out`` shifted by one step (views, no copy; the first processed step reads h0);
    packed input gathers the rows."""
    if sched.uniform:
        B, N = sched.B, sched.N
        if not sched.reverse:
            if lo == 0:
                dw.addmm_(dA[:B].t(), h0)
                dA, lo = dA[B:], B
            dw.addmm_(dA.t(), out[lo - B:hi - B])
        else:
            if hi == N:
                dw.addmm_(dA[-B:].t(), h0)
                dA, hi = dA[:-B], N - B
            dw.addmm_(dA.t(), out[lo + B:hi + B])
        return
    prev_idx, _ = sched.indices(out.device)
    dw.addmm_(dA.t(), _gather_prev(out, h0, prev_idx[lo:hi]))


# --------------------------------------------------------------------------------------
# the autograd Function and the entry point
# --------------------------------------------------------------------------------------
def _forward(mode, x, w_ih, b_ih, h0, c0, w_hh, b_hh, sched, relu, save):
    """-> (outputs, saved): out (N, H) (and, for LSTM, c (N, H)), and what backward needs."""
    if mode == "lstm":
        return _lstm_forward(_project(x, w_ih, b_ih, b_hh), h0, c0, w_hh, sched)
    if mode == "gru":
        return _gru_forward(x, w_ih, b_ih, h0, w_hh, b_hh, sched, save)
    return _rnn_forward(_project(x, w_ih, b_ih, b_hh), h0, w_hh, sched, relu)


def final_states(outputs, sched):
    """(out, h_n) or (out, h_n, c_n) from the flat outputs [out] or [out, c] (N, H) of
    either engine. For a padded batch the final
    states are one step's rows (the last step, or the first for the reverse direction),
    copied without an index gather."""
    out = outputs[0]
    if sched.uniform:
        rows = slice(0, sched.B) if sched.reverse else slice(sched.N - sched.B, sched.N)
        finals = [t[rows].clone() for t in outputs]
    else:
        _, last = sched.indices(out.device)
        finals = [t[last] for t in outputs]
    return (out, *finals)


class _BPTT(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, w_ih, b_ih, h0, c0, w_hh, b_hh, mode, sched, relu, tag):
        outputs, saved = _forward(mode, x, w_ih, b_ih, h0, c0, w_hh, b_hh, sched, relu, True)
        ctx.mode, ctx.sched, ctx.relu, ctx.tag = mode, sched, relu, tag
        ctx.save_for_backward(x, w_ih, *saved, h0, c0 if c0 is not None else h0, w_hh)
        return final_states(outputs, sched)

    @staticmethod
    def backward(ctx, grad_out, grad_hn, grad_cn=None):
        x, w_ih, *saved, h0, c0, w_hh = ctx.saved_tensors
        mode, sched, need = ctx.mode, ctx.sched, ctx.needs_input_grad
        record = bool(_RECORDERS) and ctx.tag is not None
        with torch.no_grad():
            grad_out = grad_out.contiguous()
            grads = _Grads(x, w_ih, w_hh, h0, saved[-1], sched, need)
            # dL/dh0 (and dc0) only when asked for: a truncated window's start state is
            # detached, and its gradient would cost a GEMM per window
            need_h0, need_c0 = need[3], need[4] and mode == "lstm"
            if mode == "lstm":
                dh0, dc0, dH = _lstm_backward(saved, h0, c0, w_hh, sched, grad_out, grad_hn,
                                              grad_cn, grads, need_h0, need_c0)
            elif mode == "gru":
                dh0, dc0, dH = _gru_backward(saved, h0, w_hh, sched, grad_out, grad_hn, grads,
                                             need_h0)
            else:
                dh0, dc0, dH = _rnn_backward(saved, h0, w_hh, sched, ctx.relu, grad_out,
                                             grad_hn, grads, record, need_h0)
        if record:
            padded = _to_padded(dH, sched)
            for rec in _RECORDERS:
                rec.records.append(HiddenGrad(ctx.tag[0], ctx.tag[1], padded))
        return (grads.dx, grads.dw_ih, grads.db_ih, dh0, dc0, grads.dw_hh, grads.db_hh,
                None, None, None, None)


def recurrence(mode: str, x: Tensor, w_ih: Tensor, b_ih: Tensor | None, h0: Tensor,
               c0: Tensor | None, w_hh: Tensor, b_hh: Tensor | None, sched: Schedule,
               relu: bool = False, tag=None):
    """Run one layer-direction over a flat time-major batch with the "bptt" engine.

    x (N, I) the layer's input; w_ih (G*H, I), b_ih (G*H,), w_hh (G*H, H), b_hh (G*H,)
    (biases may be None); h0, c0 (B, H). Returns out (N, H), h_n (B, H) and, for LSTM,
    c_n (B, H). The input projection is the first GEMM inside the Function, so the
    backward can form dx, dW_ih and dW_hh together from blocks of gate gradients.
    Without grad nothing is saved for backward.
    """
    needs_grad = torch.is_grad_enabled() and any(
        t is not None and t.requires_grad for t in (x, w_ih, b_ih, h0, c0, w_hh, b_hh))
    if needs_grad:
        return _BPTT.apply(x, w_ih, b_ih, h0, c0, w_hh, b_hh, mode, sched, relu, tag)
    with torch.no_grad():
        outputs, _ = _forward(mode, x, w_ih, b_ih, h0, c0, w_hh, b_hh, sched, relu, False)
        return final_states(outputs, sched)
