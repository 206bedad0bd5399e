"""The fused LSTM/GRU steps and the RNN's backward step (rnncore/functional/fused.py) against the eager ops they replace.

RNNCORE_FUSED=1 runs the kernels for float64 too, so the comparisons are exact up to
rounding; RNNCORE_FUSED=0 is the eager path. Where the extension cannot be built the
comparisons skip and the fallback tests still run.
"""
import warnings

import pytest
import torch
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

import rnncore
from rnncore.functional import fused

I, H, T, B = 5, 7, 6, 4
LENGTHS = [6, 2, 5, 1]     # unsorted: packing reorders, and the batch shrinks to 1


@pytest.fixture(scope="module")
def built():
    if fused.kernels(torch.zeros(1)) is None:
        pytest.skip("the fused extension could not be built here")


def _run(mode, dtype, *, bidirectional=True, packed=True, proj_size=0, flag="1",
         monkeypatch=None):
    """Outputs, final states and every gradient of a 2-layer layer, with RNNCORE_FUSED=flag."""
    monkeypatch.setenv("RNNCORE_FUSED", flag)
    torch.manual_seed(0)
    model = _layer(mode, I, H, bidirectional=bidirectional, proj_size=proj_size).to(dtype)
    D = 2 if bidirectional else 1
    x = torch.randn(T, B, I, dtype=dtype, requires_grad=True)
    h0 = torch.randn(2 * D, B, proj_size or H, dtype=dtype, requires_grad=True)
    c0 = torch.randn(2 * D, B, H, dtype=dtype, requires_grad=True)
    hx = (h0, c0) if mode == "LSTM" else h0
    inp = pack_padded_sequence(x, torch.tensor(LENGTHS), enforce_sorted=False) if packed else x
    out, state = model(inp, hx)
    if packed:
        out = pad_packed_sequence(out)[0]
    states = state if isinstance(state, tuple) else (state,)
    w = torch.linspace(-1, 1, out.numel(), dtype=dtype).view_as(out)
    loss = (out * w).sum() + sum((s * s.sin()).sum() for s in states)
    loss.backward()
    grads = [x.grad, h0.grad] + ([c0.grad] if mode == "LSTM" else [])
    return [out, *states, *grads, *(p.grad for p in model.parameters())]


def _layer(mode, *sizes, proj_size=0, **kw):
    """A 2-layer "bptt" layer; mode "RNN_RELU" is the RNN with nonlinearity="relu"."""
    if proj_size:
        kw["proj_size"] = proj_size
    if mode == "RNN_RELU":
        mode, kw["nonlinearity"] = "RNN", "relu"
    return getattr(rnncore, mode)(*sizes, num_layers=2, engine="bptt", **kw)


def _assert_close(a, b, **tol):
    assert len(a) == len(b)
    for u, v in zip(a, b):
        torch.testing.assert_close(u, v, **tol)


MODES = ("LSTM", "GRU", "RNN", "RNN_RELU")
CASES = [(mode, bidir, packed) for mode in MODES for bidir in (False, True)
         for packed in (False, True)]


@pytest.mark.parametrize("mode,bidirectional,packed", CASES)
def test_fused_matches_eager_float64(built, monkeypatch, mode, bidirectional, packed):
    kw = dict(bidirectional=bidirectional, packed=packed, monkeypatch=monkeypatch)
    _assert_close(_run(mode, torch.float64, flag="1", **kw),
                  _run(mode, torch.float64, flag="0", **kw), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("mode,bidirectional,packed", CASES)
def test_fused_matches_eager_float32(built, monkeypatch, mode, bidirectional, packed):
    kw = dict(bidirectional=bidirectional, packed=packed, monkeypatch=monkeypatch)
    _assert_close(_run(mode, torch.float32, flag="1", **kw),
                  _run(mode, torch.float32, flag="0", **kw), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("packed", [False, True])
def test_fused_projected_lstm_matches_eager(built, monkeypatch, packed):
    kw = dict(packed=packed, proj_size=3, monkeypatch=monkeypatch)
    _assert_close(_run("LSTM", torch.float64, flag="1", **kw),
                  _run("LSTM", torch.float64, flag="0", **kw), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("mode", MODES)
def test_gradcheck_fused(built, monkeypatch, mode):
    """The hand-derived backward through the kernels is the forward's derivative."""
    monkeypatch.setenv("RNNCORE_FUSED", "1")
    torch.manual_seed(1)
    model = _layer(mode, 3, 4, bidirectional=True).double()
    params = list(model.parameters())
    names = [n for n, _ in model.named_parameters()]

    def f(x, h0, c0, *ps):
        p = pack_padded_sequence(x, torch.tensor([5, 3, 1]))
        hx = (h0, c0) if mode == "LSTM" else h0
        out, state = torch.func.functional_call(model, dict(zip(names, ps)), (p, hx))
        states = state if isinstance(state, tuple) else (state,)
        return (pad_packed_sequence(out)[0], *states)

    x = torch.randn(5, 3, 3, dtype=torch.float64, requires_grad=True)
    h0 = torch.randn(4, 3, 4, dtype=torch.float64, requires_grad=True)
    c0 = torch.randn(4, 3, 4, dtype=torch.float64, requires_grad=mode == "LSTM")
    assert torch.autograd.gradcheck(f, (x, h0, c0, *params))


def test_default_fuses_float32_only(built, monkeypatch):
    monkeypatch.delenv("RNNCORE_FUSED", raising=False)
    assert fused.kernels(torch.zeros(1)) is not None
    assert fused.kernels(torch.zeros(1, dtype=torch.float64)) is None
    assert fused.kernels(torch.zeros(1, dtype=torch.bfloat16)) is None
    monkeypatch.setenv("RNNCORE_FUSED", "1")
    assert fused.kernels(torch.zeros(1, dtype=torch.float64)) is not None
    assert fused.kernels(torch.zeros(1, dtype=torch.float16)) is None


def test_fused_off_and_while_compiling(monkeypatch):
    monkeypatch.setenv("RNNCORE_FUSED", "0")
    assert fused.kernels(torch.zeros(1)) is None
    monkeypatch.setenv("RNNCORE_FUSED", "1")
    monkeypatch.setattr(torch.compiler, "is_compiling", lambda: True)
    assert fused.kernels(torch.zeros(1)) is None


def test_trainer_builds_the_kernels_while_setting_up(monkeypatch):
    """The one-time compile happens in Trainer() (the app shows "Preparing"), never inside
    the first timed step; engines that do not run the loops never build it."""
    from rnncore.data import DataConfig, prepare_data
    from rnncore.model import CharRNN, ModelConfig
    from rnncore.trainer import TrainConfig, Trainer

    monkeypatch.delenv("RNNCORE_FUSED", raising=False)
    calls = []
    monkeypatch.setattr(fused, "_module", fused._UNSET)
    monkeypatch.setattr(fused, "_build", lambda: calls.append(1) or "module")
    assert not fused.prepare(CharRNN(ModelConfig(vocab_size=5, engine="autograd")))
    assert not fused.prepare(CharRNN(ModelConfig(vocab_size=5)).double())
    assert calls == []
    data = prepare_data(DataConfig(max_poems=8, val_fraction=0.125))
    Trainer(ModelConfig(vocab_size=len(data.vocab), embedding_dim=8, hidden_size=8),
            TrainConfig(max_steps=1, device="cpu"), data=data)
    assert calls == [1] and fused._module == "module"


@pytest.mark.parametrize("mode", ["LSTM", "GRU"])
def test_failed_build_falls_back_to_eager(monkeypatch, mode):
    """A build that fails warns once and leaves the eager ops: results as RNNCORE_FUSED=0."""
    def fail():
        raise RuntimeError("Error building extension 'rnncore_fused'\nno compiler")

    eager = _run(mode, torch.float32, flag="0", monkeypatch=monkeypatch)
    monkeypatch.setattr(fused, "_module", fused._UNSET)
    monkeypatch.setattr(fused, "_build", fail)
    with pytest.warns(UserWarning, match="fused LSTM/GRU kernels unavailable"):
        fallback = _run(mode, torch.float32, flag="1", monkeypatch=monkeypatch)
    with warnings.catch_warnings():
        warnings.simplefilter("error")           # decided once: no second warning
        again = _run(mode, torch.float32, flag="1", monkeypatch=monkeypatch)
    for a, b, c in zip(eager, fallback, again):
        assert torch.equal(a, b) and torch.equal(a, c)


class _Counting:
    """The extension module, counting the calls of each kernel."""

    def __init__(self, module):
        self.module, self.calls = module, {}

    def __getattr__(self, name):
        def call(*args):
            self.calls[name] = self.calls.get(name, 0) + 1
            return getattr(self.module, name)(*args)
        return call


def test_layers_take_the_kernels(built, monkeypatch):
    """float32 layers run every layer-direction's steps in the C++ loops by default: one
    forward loop and one backward loop (one block here) each, no step left to Python."""
    counting = _Counting(fused.kernels(torch.zeros(1)))
    monkeypatch.setattr(fused, "_module", counting)
    for mode in ("LSTM", "GRU", "RNN"):
        _run(mode, torch.float32, flag="", monkeypatch=monkeypatch)
    runs = 2 * 2                 # layers x directions
    assert counting.calls == {f"{cell}_{way}_loop": runs for cell in ("lstm", "gru", "rnn")
                              for way in ("forward", "backward")}


@pytest.mark.parametrize("mode,proj_size", [("LSTM", 0), ("LSTM", 3), ("GRU", 0)])
def test_fused_inference_matches_eager(built, monkeypatch, mode, proj_size):
    """Without grad the loops keep only a step's scratch rows: the kernels write those."""
    def run(flag):
        monkeypatch.setenv("RNNCORE_FUSED", flag)
        torch.manual_seed(2)
        kw = {"proj_size": proj_size} if proj_size else {}
        model = getattr(rnncore, mode)(I, H, num_layers=2, bidirectional=True, engine="bptt",
                                       **kw).double()
        x = torch.randn(T, B, I, dtype=torch.float64)
        with torch.no_grad():
            out, state = model(pack_padded_sequence(x, torch.tensor(LENGTHS),
                                                    enforce_sorted=False))
        return [pad_packed_sequence(out)[0], *(state if mode == "LSTM" else (state,))]

    _assert_close(run("1"), run("0"), rtol=1e-12, atol=1e-12)


@pytest.mark.slow
@pytest.mark.parametrize("mode", ["LSTM", "GRU"])
def test_compiled_float32_takes_the_eager_ops(built, mode):
    """Dynamo cannot trace into the extension: a compiled float32 layer (one graph) runs the
    eager ops and agrees with the fused uncompiled one."""
    torch._dynamo.reset()
    torch.manual_seed(0)
    model = getattr(rnncore, mode)(3, 4, num_layers=2, bidirectional=True, engine="bptt")
    x = torch.randn(5, 2, 3)
    results = []
    for m in (model, torch.compile(model, fullgraph=True, backend="aot_eager")):
        xx = x.clone().requires_grad_(True)
        out = m(xx)[0]
        results.append((out, *torch.autograd.grad(out.pow(2).sum(), [xx, *model.parameters()])))
    _assert_close(results[0], results[1], rtol=1e-5, atol=1e-6)
