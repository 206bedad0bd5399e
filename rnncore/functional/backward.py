"""Backward loops of the "bptt" engine, and the blocked weight/input-gradient accumulation.

The BPTT recursion runs in reverse processing order over the flat time-major batch. With
dH the *total* gradient dL/dh_t (the direct part dL/dout_t, plus dL/dh_n at each
sequence's last step, plus what flows back from step t+1) and dA_t the gradient of the
pre-activations:

    RNN : dA_t = dH_t * (1 - h_t^2)
    LSTM: dC_t += dH_t * o_t (1 - tanh^2 c_t)
          dA_t = [dC g i(1-i), dC c_{t-1} f(1-f), dC i (1-g^2), dH tanh(c_t) o(1-o)]
          dC_{t-1} += dC_t * f_t                       (the cell's own path: diag(f_t))
    GRU : dA^n = dH (1-z)(1-n^2);  dA^z = dH (h_{t-1}-n) z(1-z);  dA^r = dA^n (W_hn h + b_hn) r(1-r)
          dH_{t-1} += dH_t * z_t                       (the update gate's direct path)
    LSTM with a projection h_t = W_hr m_t, m_t = o_t tanh(c_t): dH (N, P) is dL/dh_t, the
          LSTM lines above read dM_t = dH_t W_hr (B, H) in its place, and afterwards
          dW_hr = dH^T M                               (one GEMM over all N rows)
    all : dH_{t-1} += dA_t^{rec} W_hh                  (one GEMM per step)

so dL/dh_t = W^T (dL/dh_{t+1} * f'(a_{t+1})) + dL/dout_t, generalised to the gates. LSTM
and GRU accumulate dH in an (N, H) buffer; the RNN, whose forward saves only h (N, H),
keeps just the part flowing back from t+1 in a (B, H) carry, so its backward's working
set is the gate gradients and dx. Only that recursion is sequential: afterwards
dW_hh = dA^T H_prev, dW_ih = dA^T X, dx = dA W_ih and db = sum dA are single GEMMs/
reductions over all N rows (``_Grads``). When the gate gradients (N, G*H) of the whole
sequence would exceed GRAD_BLOCK_BYTES (long sequences) the same GEMMs run per block of
steps as soon as the recursion has finished that block, so the backward's working set
stays bounded and peak memory grows with T only by what forward saved. Where the fused
kernels serve, each block's recursion runs in C++ (steploops.cpp), as forward.py's loops do.

CHUNK and GRAD_BLOCK_BYTES are read from this module at every backward (tests patch them).
"""
from __future__ import annotations

import torch
from torch import Tensor

from rnncore.functional import fused
from rnncore.functional.layout import Schedule, _gather_prev
from rnncore.functional.stepgemm import StepGemm


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
    if torch.compiler.is_compiling():      # filling the cache would be a traced side effect
        return _make_blocks(sched, row_bytes)
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


def _step_tables(sched: Schedule, blocks) -> list[Tensor]:
    """Each block's steps, in backward order, as rows of ``sched.table(backward=True)``:
    what the C++ step loops (steploops.cpp) run."""
    table, tables, i = sched.table(backward=True), [], 0
    for _, _, chunks in blocks:
        n = sum(len(chunk) for chunk, _, _ in chunks)
        tables.append(table[i:i + n])
        i += n
    return tables


def _block_buffer(ref: Tensor, blocks, width: int) -> Tensor:
    return ref.new_empty(max(hi - lo for lo, hi, _ in blocks), width)


def _mul_into(a: Tensor, b: Tensor, *, out: Tensor) -> Tensor:
    """``torch.mul(a, b, out=out)`` for torch.compile, which refuses a non-contiguous out."""
    return out.copy_(a * b)


def _mul_op():
    """The gate-gradient writes' multiply, chosen once per backward: ``torch.mul`` (one
    kernel into a strided column block), or ``_mul_into`` while torch.compile traces."""
    return _mul_into if torch.compiler.is_compiling() else torch.mul


def _backward_init(grad_out, grad_hn, last_idx):
    dH = grad_out.clone()
    dH.index_add_(0, last_idx, grad_hn)
    return dH


# One signature for every cell, so the engine runs a backward without asking which:
# backward(saved, h0, c0, w_hh, sched, relu, grad_out, grad_hn, grad_cn, flush, record,
# need_h0, need_c0) -> (dh0, dc0, dH); arguments a cell has no use for are ignored. Each
# walks the steps in reverse processing order, block by block, and hands every finished
# block's gate gradients to ``flush`` (see _Grads).
def _rnn_backward(saved, h0, c0, w_hh, sched, relu, grad_out, grad_hn, grad_cn, flush, record,
                  need_h0, need_c0):
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
    dh0 = h0.new_zeros(h0.shape) if need_h0 else None
    carry = h0.new_empty(h0.shape)
    rec = StepGemm(w_hh.t(), sched.B, sched.T)      # dA_t W_hh
    fk = fused.kernels(out)
    tables = _step_tables(sched, blocks) if fk is not None else None
    k_in = 0    # rows of this step that the next processed step passes dL/dh back to
    for b, (blo, bhi, chunks) in enumerate(blocks):
        dA = buf[:bhi - blo]
        if fk is not None:                  # the loop below in C++ (steploops.cpp)
            k_in = fk.rnn_backward_loop(tables[b], blo, out, grad_out, grad_hn.contiguous(),
                                        carry, k_in, relu, dA, fused.none_or(dH),
                                        fused.none_or(dh0), *rec.args())
            flush(blo, bhi, dA, dA)
            continue
        for chunk, lo, hi in chunks:
            o = out[lo:hi]
            deriv = (o > 0).to(o.dtype) if relu else 1 - o * o
            torch.mul(grad_out[lo:hi], deriv, out=dA[lo - blo:hi - blo])
            for s in chunk:
                r0, r1, k = s.off, s.off + s.bs, s.n_carry
                if k_in < s.bs:          # sequences whose final state is this step's
                    carry[k_in:s.bs] = grad_hn[k_in:s.bs]
                da = dA[r0 - blo:r1 - blo]
                if dH is not None:
                    torch.add(grad_out[r0:r1], carry[:s.bs], out=dH[r0:r1])
                da.addcmul_(carry[:s.bs], deriv[r0 - lo:r1 - lo])
                if k:
                    rec.into(carry[:k], da[:k])
                if k < s.bs and need_h0:
                    rec.add_to(dh0[k:s.bs], da[k:])
                k_in = k
        flush(blo, bhi, dA, dA)
    return dh0, None, dH


def _lstm_backward(saved, h0, c0, w_hh, sched, relu, grad_out, grad_hn, grad_cn, flush, record,
                   need_h0, need_c0, w_hr=None):
    """With a projection ``w_hr`` (P, H) (saved then holds m as well), dH is (N, P) and
    each step first forms dL/dm_t = dL/dh_t W_hr; the caller forms dW_hr = dH^T M."""
    gates, cs, out = saved[0], saved[1], saved[-1]
    H = cs.shape[1]
    prev_idx, last_idx = sched.indices(out.device)
    dH = _backward_init(grad_out, grad_hn, last_idx)
    dm_buf = None if w_hr is None else cs.new_empty(sched.B, H)
    # dL/dc of the step being processed, per sequence (B, H)
    dc_run = grad_cn.clone(memory_format=torch.contiguous_format)
    blocks = _blocks(sched, gates.shape[1] * gates.element_size())
    buf = _block_buffer(gates, blocks, gates.shape[1])
    fk = fused.kernels(gates)
    c0 = c0.contiguous() if fk is not None else c0
    dh0 = h0.new_zeros(h0.shape) if need_h0 else None
    dc0 = c0.new_zeros(c0.shape) if need_c0 else None
    mul = _mul_op()
    rec = StepGemm(w_hh.t(), sched.B, sched.T)      # dA_t W_hh
    tables = _step_tables(sched, blocks) if fk is not None else None
    for b, (blo, bhi, chunks) in enumerate(blocks):
        dA = buf[:bhi - blo]
        if fk is not None:                  # the loop below in C++ (steploops.cpp)
            fk.lstm_backward_loop(tables[b], blo, gates, cs, c0, dH, dc_run, dA,
                                  *map(fused.none_or, (dh0, dc0, dm_buf, w_hr)), *rec.args())
            flush(blo, bhi, dA, dA)
            continue
        for chunk, lo, hi in chunks:
            i, f, g, o = gates[lo:hi].split(H, dim=1)
            c_prev = _gather_prev(cs, c0, prev_idx[lo:hi])
            tc = torch.tanh(cs[lo:hi])
            dc_from_h = o * (1 - tc * tc)                               # dc/dh through h = o tanh c
            mul_c = torch.stack([g * i * (1 - i), c_prev * f * (1 - f), i * (1 - g * g)], dim=1)
            mul_h = tc * o * (1 - o)
            for s in chunk:
                r0, r1, k = s.off, s.off + s.bs, s.n_carry
                a0, a1 = r0 - lo, r1 - lo
                dh = dH[r0:r1]
                if w_hr is not None:                                    # dL/dm_t
                    dh = torch.mm(dh, w_hr, out=dm_buf[:s.bs])
                dc = dc_run[:s.bs]
                da = dA[r0 - blo:r1 - blo]
                dc.addcmul_(dh, dc_from_h[a0:a1])
                mul(mul_c[a0:a1], dc.unsqueeze(1), out=da.view(s.bs, 4, H)[:, :3])
                mul(dh, mul_h[a0:a1], out=da[:, 3 * H:])
                fr = f[a0:a1]
                if k < s.bs and need_c0:
                    dc0[k:s.bs].addcmul_(dc[k:], fr[k:])
                if k:
                    dc[:k].mul_(fr[:k])                                 # dc_{t-1} = dc_t * f_t
                if k < s.bs and need_h0:
                    rec.add_to(dh0[k:s.bs], da[k:])
                if k:
                    rec.add_to(dH[s.off_prev:s.off_prev + k], da[:k])
        flush(blo, bhi, dA, dA)
    return dh0, dc0, dH


def _gru_backward(saved, h0, c0, w_hh, sched, relu, grad_out, grad_hn, grad_cn, flush, record,
                  need_h0, need_c0):
    rzh, n, out = saved
    H = out.shape[1]
    prev_idx, last_idx = sched.indices(out.device)
    dH = _backward_init(grad_out, grad_hn, last_idx)
    blocks = _blocks(sched, 2 * rzh.shape[1] * rzh.element_size())
    buf_h = _block_buffer(rzh, blocks, 3 * H)    # [dA^r, dA^z, d(W_hn h + b_hn)]
    buf_x = _block_buffer(rzh, blocks, 3 * H)    # [dA^r, dA^z, dA^n]
    fk = fused.kernels(rzh)
    h0 = h0.contiguous() if fk is not None else h0
    dh0 = h0.new_zeros(h0.shape) if need_h0 else None
    mul = _mul_op()
    rec = StepGemm(w_hh.t(), sched.B, sched.T)      # dA_t W_hh
    tables = _step_tables(sched, blocks) if fk is not None else None
    for b, (blo, bhi, chunks) in enumerate(blocks):
        dAh, dAx = buf_h[:bhi - blo], buf_x[:bhi - blo]
        if fk is not None:                  # the loop below in C++ (steploops.cpp)
            fk.gru_backward_loop(tables[b], blo, rzh, n, out, h0, dH, dAh, dAx,
                                 fused.none_or(dh0), *rec.args())
            flush(blo, bhi, dAx, dAh)
            continue
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
                mul(dh, d_n[a0:a1], out=dn)
                da = dAh[r0 - blo:r1 - blo]
                mul(dh, d_z[a0:a1], out=da[:, H:2 * H])
                mul(r_and_hn[a0:a1], dn.unsqueeze(1), out=da.view(s.bs, 3, H)[:, ::2])
                zr = z[a0:a1]
                k = s.n_carry
                if k:
                    rec.add_to(dH[s.off_prev:s.off_prev + k].addcmul_(dh[:k], zr[:k]), da[:k])
                if k < s.bs and need_h0:
                    rec.add_to(dh0[k:s.bs].addcmul_(dh[k:], zr[k:]), da[k:])
        dAx[:, :2 * H] = dAh[:, :2 * H]
        flush(blo, bhi, dAx, dAh)
    return dh0, None, dH


BACKWARD = {"rnn": _rnn_backward, "lstm": _lstm_backward, "gru": _gru_backward}


class _Grads:
    """Gradients of the layer-direction's inputs and weights, accumulated block by block
    from the gate gradients of rows [lo, hi):

        dx[lo:hi] = dA_x W_ih          dW_ih += dA_x^T x[lo:hi]      db_ih += sum dA_x
        dW_hh += dA_h^T h_prev[lo:hi]  db_hh += sum dA_h

    (dA_x: gradient of x W_ih^T + b_ih; dA_h: of W_hh h + b_hh; one tensor for RNN and
    LSTM, where both biases add to the same pre-activation). With a single block these
    are single GEMMs over all N rows."""

    def __init__(self, x, w_ih, w_hh, h0, prev_src, sched, need):
        self.x, self.w_ih, self.w_hh, self.h0 = x, w_ih, w_hh, h0
        self.prev_src, self.sched, self.need = prev_src, sched, need
        self.dx = x.new_empty(x.shape) if need[0] else None
        # made by the first block (a truncated window's only one) instead of zeroed first
        self.dw_ih = self.db_ih = self.dw_hh = self.db_hh = None

    def __call__(self, lo: int, hi: int, dAx: Tensor, dAh: Tensor) -> None:
        need = self.need
        if self.dx is not None:
            torch.mm(dAx, self.w_ih, out=self.dx[lo:hi])
        if need[1]:
            if self.dw_ih is None:
                self.dw_ih = torch.mm(dAx.t(), self.x[lo:hi])
            else:
                self.dw_ih.addmm_(dAx.t(), self.x[lo:hi])
        if need[5]:
            if self.dw_hh is None:
                self.dw_hh = torch.zeros_like(self.w_hh)
            _weight_grad_into(self.dw_hh, dAh, self.prev_src, self.h0, self.sched, lo, hi)
        sum_x = dAx.sum(0) if need[2] or (need[6] and dAh is dAx) else None
        sum_h = sum_x if dAh is dAx else dAh.sum(0) if need[6] else None
        if need[2]:
            self.db_ih = sum_x if self.db_ih is None else self.db_ih.add_(sum_x)
        if need[6]:
            # a copy where db_ih holds the same sum: two Parameters' .grad must not alias
            self.db_hh = ((sum_h.clone() if sum_h is self.db_ih else sum_h)
                          if self.db_hh is None else self.db_hh.add_(sum_h))

    def grads(self) -> tuple:
        """(dx, dW_ih, db_ih, dW_hh, db_hh); zeros for a needed one no block reached."""
        got = (self.dw_ih, self.db_ih, self.dw_hh, self.db_hh)
        shapes = (self.w_ih.shape, self.w_ih.shape[:1], self.w_hh.shape, self.w_hh.shape[:1])
        return (self.dx, *(self.w_ih.new_zeros(shape) if g is None and self.need[i] else g
                           for g, i, shape in zip(got, (1, 2, 5, 6), shapes)))


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

