"""The "bptt" engine beyond first-order backward: double backward, torch.func transforms,
zero-size batches and torch.compile, each against torch.nn (float64, copied weights)."""
import shutil

import pytest
import torch
from torch.func import functional_call, jacrev, vmap
from torch.nn.utils.rnn import PackedSequence, pack_padded_sequence

import rnncore

TORCH = {"rnn": torch.nn.RNN, "lstm": torch.nn.LSTM, "gru": torch.nn.GRU}
OURS = {"rnn": rnncore.RNN, "lstm": rnncore.LSTM, "gru": rnncore.GRU}
# (mode, nonlinearity): every cell, the RNN with both of its nonlinearities
CELLS = [("rnn", "tanh"), ("rnn", "relu"), ("lstm", "tanh"), ("gru", "tanh")]
I, H, T, B = 3, 4, 5, 2


def _pair(mode, nonlinearity="tanh", engine="bptt", **kw):
    if mode == "rnn":
        kw["nonlinearity"] = nonlinearity
    ref = TORCH[mode](I, H, **kw).double()
    ours = OURS[mode](I, H, engine=engine, **kw).double()
    ours.load_state_dict(ref.state_dict())
    return ref, ours


def _flat(out, state):
    """(output, h_n[, c_n]) as a tuple of tensors (a PackedSequence's data)."""
    out = out.data if isinstance(out, PackedSequence) else out     # Tensor.data detaches
    return (out, *(state if isinstance(state, tuple) else (state,)))


# a covering set of layers, bidirectional, packed, bias: each value with each other's
LAYOUTS = [(1, False, False, True), (2, True, True, False),
           (1, True, False, False), (2, False, True, True)]


@pytest.mark.parametrize("layers,bidir,packed,bias", LAYOUTS)
@pytest.mark.parametrize("mode,nonlinearity", CELLS)
def test_gradgradcheck(mode, nonlinearity, layers, bidir, packed, bias):
    """Second derivatives of every input and weight (create_graph=True backward)."""
    torch.manual_seed(0)
    _, m = _pair(mode, nonlinearity, num_layers=layers, bidirectional=bidir, bias=bias)
    n_states = 2 if mode == "lstm" else 1
    x = torch.randn(T, B + 1, I, dtype=torch.double, requires_grad=True)
    hx = [torch.randn(layers * (1 + bidir), B + 1, H, dtype=torch.double,
                      requires_grad=True) for _ in range(n_states)]
    names = [n for n, _ in m.named_parameters()]

    def f(x, *rest):
        inp = pack_padded_sequence(x, torch.tensor([3, T, 1]), enforce_sorted=False) \
            if packed else x
        states = rest[:n_states]
        out, state = functional_call(m, dict(zip(names, rest[n_states:])),
                                     (inp, tuple(states) if n_states == 2 else states[0]))
        return _flat(out, state)

    # random projections of the second derivatives (fast_mode) keep it quick
    assert torch.autograd.gradgradcheck(f, (x, *hx, *m.parameters()), eps=1e-6, atol=1e-6,
                                        fast_mode=True)


def _penalised_grads(model, x):
    """A task loss plus a penalty on its input gradient; the gradient of the sum."""
    x = x.clone().requires_grad_(True)
    out, _ = model(x)
    task = out.pow(2).mean()
    (gx,) = torch.autograd.grad(task, x, create_graph=True)
    assert gx.requires_grad
    return torch.autograd.grad(task + 10 * gx.pow(2).sum(), [x, *model.parameters()])


@pytest.mark.parametrize("mode,nonlinearity", CELLS)
def test_gradient_penalty_matches_torch(mode, nonlinearity):
    torch.manual_seed(1)
    ref, ours = _pair(mode, nonlinearity, num_layers=2, bidirectional=True)
    x = torch.randn(T, B, I, dtype=torch.double)
    for a, b in zip(_penalised_grads(ours, x), _penalised_grads(ref, x)):
        torch.testing.assert_close(a, b, rtol=1e-9, atol=1e-10)


def _out(model):
    return lambda x: model(x)[0]


@pytest.mark.parametrize("mode,nonlinearity", CELLS)
def test_vmap_over_inputs(mode, nonlinearity):
    torch.manual_seed(2)
    ref, ours = _pair(mode, nonlinearity, bidirectional=True)
    xs = torch.randn(3, T, B, I, dtype=torch.double)
    want = torch.stack([ref(x)[0] for x in xs])      # torch.nn's kernels have no vmap rule
    torch.testing.assert_close(vmap(_out(ours))(xs), want, rtol=1e-10, atol=1e-12)
    with torch.no_grad():
        torch.testing.assert_close(vmap(_out(ours))(xs), want, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("mode,nonlinearity", CELLS)
def test_jacrev_matches_torch(mode, nonlinearity):
    torch.manual_seed(3)
    ref, ours = _pair(mode, nonlinearity, num_layers=2, bidirectional=True)
    x = torch.randn(T, B, I, dtype=torch.double)
    torch.testing.assert_close(jacrev(_out(ours))(x), jacrev(_out(ref))(x),
                               rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("mode,nonlinearity", CELLS)
def test_batched_grads_match_a_loop(mode, nonlinearity):
    """autograd.grad(is_grads_batched=True) runs the backward under vmap."""
    torch.manual_seed(4)
    _, m = _pair(mode, nonlinearity, num_layers=2, bidirectional=True)
    x = torch.randn(T, B, I, dtype=torch.double, requires_grad=True)
    out, state = m(x)
    outs = _flat(out, state)
    vs = [torch.randn(4, *o.shape, dtype=torch.double) for o in outs]
    leaves = [x, *m.parameters()]
    got = torch.autograd.grad(outs, leaves, vs, is_grads_batched=True, retain_graph=True)
    for k, g in enumerate(got):
        want = torch.stack([torch.autograd.grad(outs, leaves[k], [v[i] for v in vs],
                                                retain_graph=True)[0] for i in range(4)])
        torch.testing.assert_close(g, want, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("engine", ["bptt", "autograd", "native"])
@pytest.mark.parametrize("mode", ["rnn", "lstm", "gru"])
@pytest.mark.parametrize("batch_first", [False, True])
def test_empty_batch(engine, mode, batch_first):
    """Batch 0: torch.nn's output and state shapes, zero-size input and state gradients
    and zero weight gradients."""
    ref, ours = _pair(mode, engine=engine, num_layers=2, bidirectional=True,
                      batch_first=batch_first)
    shape = (0, T, I) if batch_first else (T, 0, I)
    results = []
    for m in (ref, ours):
        x = torch.randn(shape, dtype=torch.double, requires_grad=True)
        hx = [torch.zeros(4, 0, H, dtype=torch.double, requires_grad=True)
              for _ in range(2 if mode == "lstm" else 1)]
        outs = _flat(*m(x, tuple(hx) if mode == "lstm" else hx[0]))
        grads = torch.autograd.grad(sum(o.sum() for o in outs), [x, *hx, *m.parameters()])
        results.append((outs, grads))
    (o1, g1), (o2, g2) = results
    assert [o.shape for o in o2] == [o.shape for o in o1]
    for a, b in zip(g2, g1):
        torch.testing.assert_close(a, b)


def _compiled_matches_eager(mode, backend, **kw):
    torch.manual_seed(5)
    _, m = _pair(mode, **kw)
    x = torch.randn(3, B, I, dtype=torch.double)
    results = []
    for model in (m, torch.compile(m, fullgraph=True, backend=backend)):
        xx = x.clone().requires_grad_(True)
        outs = _flat(*model(xx))
        loss = sum((o * o.sin()).sum() for o in outs)
        results.append((*outs, *torch.autograd.grad(loss, [xx, *m.parameters()])))
    for a, b in zip(*results):
        torch.testing.assert_close(b, a, rtol=1e-10, atol=1e-12)


@pytest.mark.slow
@pytest.mark.parametrize("mode", ["rnn", "lstm", "gru"])
def test_compiles_fullgraph_aot_eager(mode):
    """Dynamo captures forward and backward of every cell as one graph (no graph breaks),
    functionalised by AOTAutograd; aot_eager runs it without generating code."""
    torch._dynamo.reset()
    _compiled_matches_eager(mode, "aot_eager", bidirectional=True)


@pytest.mark.slow
@pytest.mark.timeout(900)      # a cold inductor cache on two busy cores takes minutes
@pytest.mark.skipif(shutil.which("g++") is None and shutil.which("c++") is None,
                    reason="inductor's CPU backend needs a C++ compiler (none on PATH)")
def test_compiles_fullgraph_inductor():
    """The default backend too (its generated C++ kernels): the LSTM, whose backward writes
    strided gate blocks."""
    torch._dynamo.reset()
    _compiled_matches_eager("lstm", "inductor")


@pytest.mark.parametrize("bidirectional", [False, True])
def test_projected_lstm_double_backward_and_vmap(bidirectional):
    """proj_size takes the same exact routes: a gradient penalty equals torch.nn's, and
    vmap equals a loop."""
    torch.manual_seed(0)
    ours = rnncore.LSTM(3, 5, num_layers=2, proj_size=2, bidirectional=bidirectional).double()
    ref = torch.nn.LSTM(3, 5, num_layers=2, proj_size=2, bidirectional=bidirectional).double()
    ref.load_state_dict(ours.state_dict())
    x = torch.randn(4, 2, 3, dtype=torch.double, requires_grad=True)

    def penalty_grad(module):
        out, _ = module(x)
        loss = (out ** 2).mean()
        (gx,) = torch.autograd.grad(loss, x, create_graph=True)
        return torch.autograd.grad(loss + 100 * (gx ** 2).sum(), module.weight_ih_l0)[0]

    torch.testing.assert_close(penalty_grad(ours), penalty_grad(ref), rtol=1e-9, atol=1e-12)
    xs = torch.randn(3, 4, 2, 3, dtype=torch.double)
    batched = torch.func.vmap(lambda xx: ours(xx)[0])(xs)
    torch.testing.assert_close(batched, torch.stack([ours(xx)[0] for xx in xs]))
