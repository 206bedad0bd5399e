"""Forward loops of the "bptt" engine, one per cell, over a flat time-major batch.

One GEMM projects the input of every step, x_proj = x W_ih^T + b (N, G*H), then per step
in processing order:

    a_t = x_proj_t + h_{t-1} W_hh^T                (one GEMM per step: stepgemm.StepGemm)
    RNN : h_t = tanh(a_t)
    LSTM: i,f,o = sigmoid, g = tanh;  c_t = f c_{t-1} + i g;  h_t = o tanh(c_t)
    GRU : r,z = sigmoid(x_rz + W_hrz h + b_hrz);  n = tanh(x_n + r (W_hn h + b_hn))
          h_t = (1 - z) n + z h_{t-1}
    LSTM with a projection W_hr (P, H), P < H:  m_t = o tanh(c_t);  h_t = W_hr m_t (B, P),
          so W_hh is (4H, P) and the recurrent GEMM reads h_{t-1} of size P

Each loop completes the projection buffer (N, G*H) in place, so the pre-activations need
no second buffer (for LSTM it becomes the saved gates), and writes into preallocated
buffers with ``out=`` / in-place ops so a step is a handful of kernel calls. Where the
fused kernels serve (``fused.kernels``: float32 CPU by default) the whole loop runs in C++
instead (steploops.cpp: the same GEMMs, each step's pointwise work in one pass, the same
buffers); the Python loops below are the other path and the reference for it.

Saved for backward (besides x (N, I) and W_ih, which the engine keeps): RNN out (N, H);
LSTM gates (N, 4H), c (N, H), out (with a projection also m (N, H) before out (N, P));
GRU [r, z, W_hn h + b_hn] (N, 3H), n (N, H), out.
With ``save`` false (no grad required) nothing is kept beyond the outputs.
"""
from __future__ import annotations

import torch

from rnncore.functional import fused
from rnncore.functional.layout import _prev
from rnncore.functional.stepgemm import StepGemm


# one signature for every cell, so the engine runs a layer-direction without asking which:
# forward(x, w_ih, b_ih, h0, c0, w_hh, b_hh, sched, relu, save) -> (outputs, saved) with
# outputs [out] or, for LSTM, [out, c] (N, H); arguments a cell has no use for are ignored.
# The LSTM's takes the projection w_hr (P, H) as a keyword (functional/projection.py).
def _rnn_forward(x, w_ih, b_ih, h0, c0, w_hh, b_hh, sched, relu, save):
    out = _project(x, w_ih, b_ih, b_hh)       # (N, H): a_t, then h_t = f(a_t) in place
    rec = StepGemm(w_hh, sched.B, sched.T)
    fk = fused.kernels(out)
    if fk is not None:               # the loop below in C++ (steploops.cpp)
        fk.rnn_forward_loop(sched.table(), out, h0.contiguous(), relu, *rec.args())
        return (out,), (out,)
    for s in sched.steps:
        o = out[s.off:s.off + s.bs]
        rec.add_to(o, _prev(out, h0, s))
        o.relu_() if relu else o.tanh_()
    return (out,), (out,)


def _lstm_forward(x, w_ih, b_ih, h0, c0, w_hh, b_hh, sched, relu, save, w_hr=None):
    N, H = x.shape[0], c0.shape[1]
    B = sched.B
    gates = _project(x, w_ih, b_ih, b_hh)     # (N, 4H): a_t, then [i, f, g, o] in place
    out = gates.new_empty(N, h0.shape[1])     # h_t: (N, H), or (N, P) with a projection
    cs = gates.new_empty(N, H)
    # m_t = o tanh(c_t) before the projection, kept for dW_hr only when saving
    ms = None if w_hr is None else gates.new_empty(N if save else B, H)
    proj = None if w_hr is None else StepGemm(w_hr, B, sched.T)
    rec = StepGemm(w_hh, B, sched.T)
    fk = fused.kernels(gates)
    if fk is not None:               # the loop below in C++ (steploops.cpp)
        fk.lstm_forward_loop(sched.table(), gates, cs, out, h0.contiguous(), c0.contiguous(),
                             fused.none_or(ms), save, *rec.args(),
                             *(proj.args()[:3] if proj else (fused.none_or(None),) * 3))
        return (out, cs), ((gates, cs, out) if w_hr is None else (gates, cs, ms, out))
    tc = gates.new_empty(B, H)
    for s in sched.steps:
        r0, r1 = s.off, s.off + s.bs
        g = gates[r0:r1]
        rec.add_to(g, _prev(out, h0, s))
        c = cs[r0:r1]
        m = out[r0:r1] if w_hr is None else ms[r0:r1] if save else ms[:s.bs]
        g[:, :2 * H].sigmoid_()
        g[:, 2 * H:3 * H].tanh_()
        g[:, 3 * H:].sigmoid_()
        torch.mul(g[:, H:2 * H], _prev(cs, c0, s), out=c)
        c.addcmul_(g[:, :H], g[:, 2 * H:3 * H])
        t = tc[:s.bs]
        torch.tanh(c, out=t)
        torch.mul(g[:, 3 * H:], t, out=m)
        if w_hr is not None:
            proj.into(out[r0:r1], m)
    return (out, cs), ((gates, cs, out) if w_hr is None else (gates, cs, ms, out))


def _gru_forward(x, w_ih, b_ih, h0, c0, w_hh, b_hh, sched, relu, save):
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
    rec = StepGemm(w_hh, sched.B, sched.T)
    fk = fused.kernels(rzh)
    if fk is not None:               # the loop below in C++ (steploops.cpp)
        fk.gru_forward_loop(sched.table(), rzh, xn, nn_, out, h0.contiguous(), save,
                            *rec.args())
        return (out,), (rzh, nn_, out)
    for s in sched.steps:
        r0, r1 = s.off, s.off + s.bs
        hp = _prev(out, h0, s)
        hb = rzh[r0:r1]
        rec.add_to(hb, hp)
        n = nn_[r0:r1] if save else nn_[:s.bs]
        g = hb[:, :2 * H]
        g.sigmoid_()
        torch.addcmul(xn[r0:r1], g[:, :H], hb[:, 2 * H:], out=n)
        n.tanh_()
        torch.lerp(n, hp, g[:, H:], out=out[r0:r1])          # (1 - z) n + z h_{t-1}
    return (out,), (rzh, nn_, out)


FORWARD = {"rnn": _rnn_forward, "lstm": _lstm_forward, "gru": _gru_forward}


def _project(x, w_ih, b_ih, b_hh):
    """x (N, I) -> x W_ih^T + b_ih (+ b_hh, which adds to the same pre-activation for
    RNN and LSTM; GRU passes b_hh=None because b_hn sits inside r * (.)): one GEMM."""
    bias = b_ih if b_hh is None else (b_hh if b_ih is None else b_ih + b_hh)
    return torch.mm(x, w_ih.t()) if bias is None else torch.addmm(bias, x, w_ih.t())


def final_states(outputs, sched):
    """(out, h_n) or (out, h_n, c_n) from the flat outputs [out] or [out, c] (N, H) of
    either engine. For a padded batch the final states are one step's rows (the last
    step, or the first for the reverse direction), copied without an index gather."""
    out = outputs[0]
    if sched.uniform:
        rows = slice(0, sched.B) if sched.reverse else slice(sched.N - sched.B, sched.N)
        finals = [t[rows].clone() for t in outputs]
    else:
        _, last = sched.indices(out.device)
        finals = [t[last] for t in outputs]
    return (out, *finals)

