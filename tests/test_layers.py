"""rnncore.RNN / LSTM / GRU against torch.nn with copied weights, every engine."""
import itertools
import zlib

import pytest
import torch
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

import rnncore

TORCH = {"rnn": torch.nn.RNN, "lstm": torch.nn.LSTM, "gru": torch.nn.GRU}
OURS = {"rnn": rnncore.RNN, "lstm": rnncore.LSTM, "gru": rnncore.GRU}
I, H, T, B = 4, 5, 6, 3


def _pair(mode, dtype, engine="bptt", **kw):
    ref = TORCH[mode](I, H, **kw).to(dtype)
    ours = OURS[mode](I, H, engine=engine, **kw).to(dtype)
    ours.load_state_dict(ref.state_dict())
    return ref, ours


def _states(s):
    return s if isinstance(s, tuple) else (s,)


def _run(model, x, hx, lengths, batch_first):
    """Forward, then a loss touching every output so every gradient is exercised."""
    inp = x
    if lengths is not None:
        inp = pack_padded_sequence(x, lengths, batch_first=batch_first, enforce_sorted=False)
    out, state = model(inp, hx)
    if lengths is not None:
        out, _ = pad_packed_sequence(out, batch_first=batch_first)
    w = torch.linspace(-1, 1, out.numel(), dtype=out.dtype).view_as(out)
    loss = (out * w).sum() + sum((s * s.sin()).sum() for s in _states(state))
    return out, state, loss


def _compare(mode, dtype, num_layers, bidirectional, batch_first, with_hx, packed,
             engine="bptt", rtol=None, atol=None):
    # crc32, not hash(): str hashes change from process to process (PYTHONHASHSEED)
    key = repr((mode, num_layers, bidirectional, batch_first, with_hx, packed)).encode()
    torch.manual_seed(zlib.crc32(key) % 1000)
    ref, ours = _pair(mode, dtype, engine, num_layers=num_layers,
                      bidirectional=bidirectional, batch_first=batch_first)
    shape = (B, T, I) if batch_first else (T, B, I)
    x = torch.randn(shape, dtype=dtype)
    D = 2 if bidirectional else 1
    hx = None
    if with_hx:
        hx = [torch.randn(num_layers * D, B, H, dtype=dtype) for _ in range(2 if mode == "lstm" else 1)]
    lengths = torch.tensor([T, 2, T - 1]) if packed else None

    results = []
    for model in (ref, ours):
        xx = x.clone().requires_grad_(True)
        hh = None
        if hx is not None:
            hh = [h.clone().requires_grad_(True) for h in hx]
        out, state, loss = _run(model, xx, (tuple(hh) if mode == "lstm" else hh[0]) if hh else None,
                                lengths, batch_first)
        leaves = [xx] + (hh or []) + list(model.parameters())
        grads = torch.autograd.grad(loss, leaves)
        results.append((out, _states(state), grads))
    (o1, s1, g1), (o2, s2, g2) = results
    kw = dict(rtol=rtol, atol=atol)
    torch.testing.assert_close(o2, o1, **kw)
    for a, b in zip(s2, s1):
        torch.testing.assert_close(a, b, **kw)
    assert len(g1) == len(g2)
    for a, b in zip(g2, g1):
        torch.testing.assert_close(a, b, **kw)


MATRIX = list(itertools.product(["rnn", "lstm", "gru"], [1, 2, 3], [False, True],
                                [False, True], [False, True], [False, True]))


@pytest.mark.parametrize("mode,layers,bidir,batch_first,with_hx,packed", MATRIX)
def test_bptt_matches_torch_float64(mode, layers, bidir, batch_first, with_hx, packed):
    _compare(mode, torch.float64, layers, bidir, batch_first, with_hx, packed,
             rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("mode,layers,bidir,batch_first,with_hx,packed",
                         [m for m in MATRIX if m[1] != 3])
def test_bptt_matches_torch_float32(mode, layers, bidir, batch_first, with_hx, packed):
    _compare(mode, torch.float32, layers, bidir, batch_first, with_hx, packed,
             rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("engine", ["autograd", "native"])
@pytest.mark.parametrize("mode", ["rnn", "lstm", "gru"])
@pytest.mark.parametrize("packed", [False, True])
def test_other_engines_match_torch(engine, mode, packed):
    _compare(mode, torch.float64, 2, True, False, True, packed, engine=engine,
             rtol=1e-10, atol=1e-10)


def test_relu_rnn():
    torch.manual_seed(0)
    ref = torch.nn.RNN(I, H, nonlinearity="relu", num_layers=2).double()
    ours = rnncore.RNN(I, H, nonlinearity="relu", num_layers=2).double()
    ours.load_state_dict(ref.state_dict())
    x = torch.randn(T, B, I, dtype=torch.double, requires_grad=True)
    g = [torch.autograd.grad(m(x)[0].pow(2).sum(), [x] + list(m.parameters())) for m in (ref, ours)]
    for a, b in zip(*g):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("mode", ["rnn", "lstm", "gru"])
@pytest.mark.parametrize("bias,layers,bidir", [(True, 1, False), (False, 2, True)])
def test_gradcheck_bptt(mode, bias, layers, bidir):
    torch.manual_seed(1)
    m = OURS[mode](3, 3, num_layers=layers, bidirectional=bidir, bias=bias).double()
    x = torch.randn(4, 2, 3, dtype=torch.double, requires_grad=True)
    n_states = 2 if mode == "lstm" else 1
    D = 2 if bidir else 1
    hx = [torch.randn(layers * D, 2, 3, dtype=torch.double, requires_grad=True)
          for _ in range(n_states)]
    params = list(m.parameters())

    def f(x, *rest):
        states, ws = rest[:n_states], rest[n_states:]
        sd = dict(zip([n for n, _ in m.named_parameters()], ws))
        out, s = torch.func.functional_call(m, sd, (x, tuple(states) if n_states == 2 else states[0]))
        return (out,) + _states(s)

    # the deep case checks random projections of the Jacobian (fast_mode) to stay quick
    assert torch.autograd.gradcheck(f, (x, *hx, *params), eps=1e-6, atol=1e-7,
                                    fast_mode=layers > 1)


def test_gradcheck_bptt_packed():
    torch.manual_seed(2)
    m = rnncore.LSTM(3, 4, bidirectional=True).double()
    x = torch.randn(5, 3, 3, dtype=torch.double, requires_grad=True)

    def f(x):
        p = pack_padded_sequence(x, torch.tensor([5, 3, 1]))
        out, (h, c) = m(p)
        return out.data, h, c

    assert torch.autograd.gradcheck(f, (x,), eps=1e-6, atol=1e-7)


@pytest.mark.parametrize("mode", ["rnn", "lstm", "gru"])
def test_unbatched_input(mode):
    torch.manual_seed(3)
    ref, ours = _pair(mode, torch.float64, num_layers=2)
    x = torch.randn(T, I, dtype=torch.double)
    hx = torch.randn(2, H, dtype=torch.double)
    hx = (hx, hx.clone()) if mode == "lstm" else hx
    o1, s1 = ref(x, hx)
    o2, s2 = ours(x, hx)
    assert o2.shape == (T, H)
    torch.testing.assert_close(o2, o1)
    for a, b in zip(_states(s2), _states(s1)):
        assert a.shape == (2, H)
        torch.testing.assert_close(a, b)


@pytest.mark.parametrize("grad_h0,grad_c0", [(True, False), (False, True), (False, False)])
def test_state_gradients_only_where_asked(grad_h0, grad_c0):
    """The backward skips dL/dh0 (dc0) when the start state needs no gradient (a truncated
    window's detached state); whichever of h0, c0 does need one still matches torch.nn,
    and so does every other gradient."""
    torch.manual_seed(5)
    ref, ours = _pair("lstm", torch.float64, num_layers=2, bidirectional=True)
    x = torch.randn(T, B, I, dtype=torch.double)
    hx = [torch.randn(4, B, H, dtype=torch.double) for _ in range(2)]
    grads = []
    for model in (ref, ours):
        h0 = hx[0].clone().requires_grad_(grad_h0)
        c0 = hx[1].clone().requires_grad_(grad_c0)
        _, _, loss = _run(model, x, (h0, c0), None, False)
        leaves = [t for t in (h0, c0) if t.requires_grad] + list(model.parameters())
        grads.append(torch.autograd.grad(loss, leaves))
    for a, b in zip(*grads):
        torch.testing.assert_close(b, a, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("mode", ["rnn", "lstm", "gru"])
def test_state_dict_round_trip(mode):
    torch.manual_seed(4)
    ours = OURS[mode](I, H, num_layers=2, bidirectional=True)
    ref = TORCH[mode](I, H, num_layers=2, bidirectional=True)
    assert list(ours.state_dict()) == list(ref.state_dict())
    ref.load_state_dict(ours.state_dict())
    back = OURS[mode](I, H, num_layers=2, bidirectional=True)
    back.load_state_dict(ref.state_dict())
    x = torch.randn(T, B, I)
    torch.testing.assert_close(back(x)[0], ref(x)[0])
    torch.testing.assert_close(ours(x)[0], ref(x)[0])


@pytest.mark.parametrize("mode", ["rnn", "lstm", "gru"])
def test_dropout_semantics(mode):
    torch.manual_seed(5)
    ref, ours = _pair(mode, torch.float64, num_layers=3, dropout=0.5)
    x = torch.randn(T, B, I, dtype=torch.double)
    ref.eval(), ours.eval()
    torch.testing.assert_close(ours(x)[0], ref(x)[0])        # eval: no dropout
    ours.train()
    a, b = ours(x)[0], ours(x)[0]
    assert not torch.allclose(a, b)                           # train: fresh masks each call
    ours.dropout = 1.0                                        # every inter-layer unit dropped
    one, _ = ours(x)
    lone = OURS[mode](H, H).double()
    lone.load_state_dict({k.replace("_l2", "_l0"): v for k, v in ours.state_dict().items()
                          if k.endswith("_l2")})
    with torch.no_grad():
        # the last layer then sees zeros: its output is that of a zero input
        torch.testing.assert_close(one, lone(torch.zeros(T, B, H, dtype=torch.double))[0])


@pytest.mark.parametrize("ctor,kwargs,word", [
    (rnncore.LSTM, dict(input_size=4, hidden_size=0), "hidden_size"),
    (rnncore.GRU, dict(input_size=0, hidden_size=3), "input_size"),
    (rnncore.RNN, dict(input_size=4, hidden_size=3, num_layers=0), "num_layers"),
    (rnncore.RNN, dict(input_size=4, hidden_size=3, nonlinearity="sigmoid"), "nonlinearity"),
    (rnncore.LSTM, dict(input_size=4, hidden_size=3, dropout=1.5), "dropout"),
    (rnncore.LSTM, dict(input_size=4, hidden_size=3, engine="cudnn"), "engine"),
])
def test_bad_arguments(ctor, kwargs, word):
    with pytest.raises(ValueError, match=word):
        ctor(**kwargs)


def test_bad_forward_arguments():
    m = rnncore.LSTM(4, 3, num_layers=2)
    with pytest.raises(ValueError, match="input_size"):
        m(torch.randn(5, 2, 7))
    with pytest.raises(ValueError, match="h_0"):
        m(torch.randn(5, 2, 4), (torch.zeros(1, 2, 3), torch.zeros(2, 2, 3)))
    with pytest.raises(ValueError, match="engine"):
        m.engine = "fast"
    with pytest.raises(ValueError):
        rnncore.GRU(4, 3)(torch.randn(5, 2, 4), torch.zeros(1, 5, 3))


@pytest.mark.parametrize("mode", ["rnn", "lstm", "gru"])
def test_no_grad_saves_nothing(mode):
    m = OURS[mode](I, H)
    x = torch.randn(T, B, I)
    with torch.inference_mode():
        out, _ = m(x)
    assert out.grad_fn is None
    with torch.no_grad():
        out, _ = m(x)
    assert out.grad_fn is None
    ref = TORCH[mode](I, H)
    ref.load_state_dict(m.state_dict())
    with torch.no_grad():
        torch.testing.assert_close(out, ref(x)[0])


@pytest.mark.parametrize("mode", ["rnn", "lstm", "gru"])
def test_recorded_hidden_grads_match_autograd(mode):
    """dL/dh_t recorded by the bptt engine equals autograd's (retain_grad) on the reference."""
    torch.manual_seed(6)
    ours = OURS[mode](I, H, num_layers=2).double()
    ref = OURS[mode](I, H, num_layers=2, engine="autograd").double()
    ref.load_state_dict(ours.state_dict())
    x = torch.randn(T, B, I, dtype=torch.double)
    with rnncore.record_hidden_grads() as rec:
        out, _ = ours(x)
        out[-1].pow(2).sum().backward()     # loss on the last step only
    top = [r for r in rec.records if r.layer == 1][0].grad      # (T, B, H)
    assert top.shape == (T, B, H)
    # reference: a step loop with retain_grad on every h_t of the top layer, whose input
    # is the (fixed) output of the bottom layer
    from rnncore import cells
    w_ih, w_hh = ref.weight_ih_l1, ref.weight_hh_l1
    b_ih, b_hh = ref.bias_ih_l1, ref.bias_hh_l1
    bottom = OURS[mode](I, H, engine="autograd").double()
    bottom.load_state_dict({k: v for k, v in ref.state_dict().items() if k.endswith("_l0")})
    x1 = bottom(x)[0].detach()
    hs = []
    h = torch.zeros(B, H, dtype=torch.double)
    c = torch.zeros(B, H, dtype=torch.double)
    for t in range(T):
        xp = torch.nn.functional.linear(x1[t], w_ih, b_ih)
        if mode == "lstm":
            (h, c), _ = cells.lstm_cell(xp, h, c, w_hh, b_hh)
        elif mode == "gru":
            h, _ = cells.gru_cell(xp, h, w_hh, b_hh)
        else:
            h, _ = cells.rnn_cell(xp, h, w_hh, b_hh)
        h.retain_grad()
        hs.append(h)
    hs[-1].pow(2).sum().backward()
    want = torch.stack([hh.grad for hh in hs])
    torch.testing.assert_close(top, want, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("cell,ref_cls", [(rnncore.RNNCell, torch.nn.RNNCell),
                                          (rnncore.LSTMCell, torch.nn.LSTMCell),
                                          (rnncore.GRUCell, torch.nn.GRUCell)])
def test_cells_match_torch(cell, ref_cls):
    torch.manual_seed(7)
    ours, ref = cell(I, H).double(), ref_cls(I, H).double()
    ours.load_state_dict(ref.state_dict())
    x = torch.randn(B, I, dtype=torch.double, requires_grad=True)
    for unbatched in (False, True):
        xx = x[0] if unbatched else x
        a, b = ours(xx), ref(xx)
        for u, v in zip(_states(a), _states(b)):
            torch.testing.assert_close(u, v)
        la = sum(s.sum() for s in _states(a))
        lb = sum(s.sum() for s in _states(b))
        for u, v in zip(torch.autograd.grad(la, list(ours.parameters())),
                        torch.autograd.grad(lb, list(ref.parameters()))):
            torch.testing.assert_close(u, v)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
@pytest.mark.parametrize("mode", ["rnn", "lstm", "gru"])
@pytest.mark.parametrize("engine", ["bptt", "autograd", "native"])
def test_cuda_matches_cpu(mode, engine):
    torch.manual_seed(8)
    ref, ours = _pair(mode, torch.float64, engine, num_layers=2, bidirectional=True)
    ours = ours.cuda()
    x = torch.randn(T, B, I, dtype=torch.double)
    lengths = torch.tensor([T, 3, 2])
    outs = []
    for model, dev in ((ref, "cpu"), (ours, "cuda")):
        xx = x.to(dev).requires_grad_(True)
        p = pack_padded_sequence(xx, lengths)
        out, _ = model(p)
        g = torch.autograd.grad(out.data.pow(2).sum(), [xx] + list(model.parameters()))
        outs.append([out.data.cpu()] + [t.cpu() for t in g])
    for a, b in zip(*outs):
        torch.testing.assert_close(a, b, rtol=1e-9, atol=1e-10)


@pytest.mark.parametrize("mode", ["rnn", "lstm", "gru"])
@pytest.mark.parametrize("chunk", [1, 2, 64])
def test_backward_chunks_cross_sequence_ends(mode, chunk, monkeypatch):
    """The backward computes gate factors chunk by chunk; chunk borders that fall between
    sequence ends (packed, both directions) must not change any gradient."""
    from rnncore.functional import backward as fb
    monkeypatch.setattr(fb, "CHUNK", chunk)
    _compare(mode, torch.float64, 2, True, False, True, True, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("mode", ["rnn", "lstm", "gru"])
@pytest.mark.parametrize("packed", [False, True])
@pytest.mark.parametrize("chunk", [1, 3])
def test_backward_blocks(mode, packed, chunk, monkeypatch):
    """Beyond GRAD_BLOCK_BYTES the weight and input gradients are formed block by block
    (here every block is one chunk of 1 or 3 steps): every gradient still matches torch.nn,
    padded and packed, in both directions, with and without hx."""
    from rnncore.functional import backward as fb
    monkeypatch.setattr(fb, "GRAD_BLOCK_BYTES", 1)
    monkeypatch.setattr(fb, "CHUNK", chunk)
    for with_hx in (False, True):
        _compare(mode, torch.float64, 2, True, False, with_hx, packed, rtol=1e-10, atol=1e-10)


def test_backward_blocks_bound_the_gate_gradients(monkeypatch):
    """The block buffer never holds more rows than GRAD_BLOCK_BYTES allows (one chunk at
    least), while the single-block case covers all N rows."""
    from rnncore.functional import backward as fb, schedule
    sched = schedule((4,) * 100, False)
    row_bytes = 16 * 4
    assert [(lo, hi) for lo, hi, _ in fb._blocks(sched, row_bytes)] == [(0, 400)]
    monkeypatch.setattr(fb, "CHUNK", 8)
    monkeypatch.setattr(fb, "GRAD_BLOCK_BYTES", 100 * row_bytes)
    blocks = fb._blocks(sched, row_bytes)
    assert max(hi - lo for lo, hi, _ in blocks) <= 100
    rows = sorted((lo, hi) for lo, hi, _ in blocks)
    assert rows[0][0] == 0 and rows[-1][1] == 400
    assert all(a[1] == b[0] for a, b in zip(rows, rows[1:]))      # a partition of the rows
    assert sum(len(cs) for _, _, cs in blocks) == 13               # ceil(100 / 8) chunks


@pytest.mark.parametrize("mode", ["rnn", "lstm", "gru"])
def test_long_packed_sequence(mode):
    """T well beyond one backward chunk, with sequences ending inside chunks."""
    torch.manual_seed(9)
    ref = TORCH[mode](3, 4, bidirectional=True).double()
    ours = OURS[mode](3, 4, bidirectional=True).double()
    ours.load_state_dict(ref.state_dict())
    x = torch.randn(150, 3, 3, dtype=torch.double)
    lengths = torch.tensor([150, 70, 3])
    grads = []
    for m in (ref, ours):
        xx = x.clone().requires_grad_(True)
        out, _ = m(pack_padded_sequence(xx, lengths, enforce_sorted=False))
        grads.append(torch.autograd.grad(out.data.pow(2).sum(), [xx] + list(m.parameters())))
    for a, b in zip(*grads):
        torch.testing.assert_close(b, a, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("mode", ["rnn", "lstm", "gru"])
def test_no_bias_matches_torch(mode):
    """bias=False: no bias enters the folded input projection (GRU's r, z fold b_hh in)."""
    torch.manual_seed(3)
    ref, ours = _pair(mode, torch.float64, num_layers=2, bias=False)
    x = torch.randn(5, 3, I, dtype=torch.float64)
    res = []
    for m in (ref, ours):
        xx = x.clone().requires_grad_(True)
        out, _ = m(xx)
        res.append([out] + list(torch.autograd.grad(out.pow(2).sum(), [xx] + list(m.parameters()))))
    for a, b in zip(*res):
        torch.testing.assert_close(b, a, rtol=1e-10, atol=1e-10)


def test_rnn_backward_working_set():
    """The RNN's backward carries dL/dh in a (B, H) buffer: beyond what it returns (dx, N x I)
    it holds the gate gradients (N x H, one block) and chunk-sized temporaries, no second
    (N, H) buffer for dL/dh."""
    from benchmarks.measure import peak_memory
    T, B, I, H = 512, 8, 64, 64
    torch.manual_seed(0)
    rnn = rnncore.RNN(I, H)
    x = torch.randn(T, B, I, requires_grad=True)
    out, _ = rnn(x)
    g = torch.randn_like(out)
    peak = peak_memory(lambda: out.backward(g), "cpu")
    N = T * B
    assert N * (I + H) * 4 <= peak < N * (I + 1.5 * H) * 4


@pytest.mark.parametrize("engine", ["bptt", "autograd"])
def test_training_after_inference_mode_forward(engine):
    """A forward under torch.inference_mode (as generation runs) must not leave cached
    inference tensors that a later training forward of the same shape would have to save."""
    torch.manual_seed(0)
    rnn = rnncore.RNN(3, 4, engine=engine)
    x = torch.randn(37, 7, 3)  # a shape no other test uses: its schedule is built here
    with torch.inference_mode():
        rnn(x)
    out, h = rnn(x)
    (out.sum() + h.sum()).backward()
    assert rnn.weight_hh_l0.grad is not None
