"""Drop-in details of rnncore's layers beyond torch's generic inputs: positional arguments,
the weight lists, LSTM projections in every engine, torch's exception types, TorchScript
and tracing."""
import copy
import io
import warnings

import pytest
import torch
from torch.nn.utils.rnn import pack_padded_sequence

import rnncore
from rnncore.layers import ArgTypeError, ShapeError

TORCH = {"rnn": torch.nn.RNN, "lstm": torch.nn.LSTM, "gru": torch.nn.GRU}
OURS = {"rnn": rnncore.RNN, "lstm": rnncore.LSTM, "gru": rnncore.GRU}
ENGINES = ("bptt", "autograd", "native")


def test_positional_arguments_follow_torch():
    rnn = rnncore.RNN(2, 3, 1, "relu")
    assert (rnn.nonlinearity, rnn.bias) == ("relu", True)
    lstm = rnncore.LSTM(2, 3, 2, False, True, 0.0, True, 1)
    ref = torch.nn.LSTM(2, 3, 2, False, True, 0.0, True, 1)
    assert [(k, v.shape) for k, v in lstm.state_dict().items()] == \
        [(k, v.shape) for k, v in ref.state_dict().items()]
    with pytest.raises(TypeError):           # engine is keyword-only: no 11th positional
        rnncore.LSTM(2, 3, 1, True, False, 0.0, False, 0, None, None, "native")


@pytest.mark.parametrize("mode,kw", [("rnn", {}), ("gru", dict(bias=False)),
                                     ("lstm", dict(num_layers=2, bidirectional=True)),
                                     ("lstm", dict(num_layers=2, proj_size=2, bias=False))])
def test_weight_lists_match_torch(mode, kw):
    ours, ref = OURS[mode](3, 4, **kw), TORCH[mode](3, 4, **kw)
    assert ours._flat_weights_names == ref._flat_weights_names
    assert ours._all_weights == ref._all_weights
    assert [[w.shape for w in ws] for ws in ours.all_weights] == \
        [[w.shape for w in ws] for ws in ref.all_weights]
    assert all(w is getattr(ours, n) for w, n in zip(ours._flat_weights, ours._flat_weights_names))
    assert ours.flatten_parameters() is None


def test_projection_initialises_like_torch():
    torch.manual_seed(0)
    ref = torch.nn.LSTM(3, 5, 2, proj_size=2, bidirectional=True)
    torch.manual_seed(0)
    ours = rnncore.LSTM(3, 5, 2, proj_size=2, bidirectional=True)
    for (k, a), (_, b) in zip(ours.state_dict().items(), ref.state_dict().items()):
        assert torch.equal(a, b), k
    assert "proj_size=2" in repr(ours)


@pytest.mark.parametrize("engine", ENGINES)
@pytest.mark.parametrize("layers,bidir,batch_first,packed", [
    (1, False, False, False), (2, True, True, False), (2, True, False, True),
    (3, False, False, True)])
def test_projection_matches_torch(engine, layers, bidir, batch_first, packed):
    """h_t = W_hr (o_t * tanh c_t): outputs, states and every gradient (input, h_0, c_0,
    weights with W_hr) as torch.nn.LSTM(proj_size=...) in float64."""
    torch.manual_seed(layers)
    T, B, I, H, P = 5, 3, 4, 6, 3
    kw = dict(num_layers=layers, bidirectional=bidir, batch_first=batch_first, proj_size=P)
    ref = torch.nn.LSTM(I, H, **kw).double()
    ours = rnncore.LSTM(I, H, engine=engine, **kw).double()
    ours.load_state_dict(ref.state_dict())
    D = 2 if bidir else 1
    x = torch.randn((B, T, I) if batch_first else (T, B, I), dtype=torch.double)
    hx = (torch.randn(layers * D, B, P, dtype=torch.double),
          torch.randn(layers * D, B, H, dtype=torch.double))
    results = []
    for m in (ref, ours):
        leaves = [x.clone().requires_grad_(), *(h.clone().requires_grad_() for h in hx)]
        inp = leaves[0]
        if packed:
            inp = pack_padded_sequence(inp, torch.tensor([T, 2, 4]), batch_first=batch_first,
                                       enforce_sorted=False)
        out, (h, c) = m(inp, tuple(leaves[1:]))
        out = out.data if packed else out
        assert out.shape[-1] == D * P and h.shape == (layers * D, B, P) and c.shape[-1] == H
        loss = (out * out.sin()).sum() + (h * h).sum() + c.sum()
        results.append([out, h, c, *torch.autograd.grad(loss, leaves + list(m.parameters()))])
    for a, b in zip(*results):
        torch.testing.assert_close(b, a, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("bias,bidir,packed", [(True, False, False), (False, True, True)])
def test_projection_gradcheck(bias, bidir, packed):
    torch.manual_seed(2)
    m = rnncore.LSTM(3, 4, num_layers=2, proj_size=2, bias=bias, bidirectional=bidir).double()
    D = 2 if bidir else 1
    x = torch.randn(4, 2, 3, dtype=torch.double, requires_grad=True)
    h0 = torch.randn(2 * D, 2, 2, dtype=torch.double, requires_grad=True)
    c0 = torch.randn(2 * D, 2, 4, dtype=torch.double, requires_grad=True)
    names = [n for n, _ in m.named_parameters()]

    def f(x, h0, c0, *params):
        inp = pack_padded_sequence(x, torch.tensor([4, 3])) if packed else x
        out, (h, c) = torch.func.functional_call(m, dict(zip(names, params)), (inp, (h0, c0)))
        return (out.data if packed else out), h, c

    params = [p.detach().clone().requires_grad_() for p in m.parameters()]
    assert torch.autograd.gradcheck(f, (x, h0, c0, *params), eps=1e-6, atol=1e-7)


def test_projection_records_hidden_grads():
    """record_hidden_grads sees dL/dh_t (T, B, P): at the last step, with the loss on it
    alone, that is dL/dout_T."""
    torch.manual_seed(3)
    m = rnncore.LSTM(3, 5, proj_size=2).double()
    x = torch.randn(6, 2, 3, dtype=torch.double)
    with rnncore.record_hidden_grads() as rec:
        out, _ = m(x)
        out[-1].pow(2).sum().backward()
    (record,) = rec.records
    assert record.grad.shape == (6, 2, 2)
    torch.testing.assert_close(record.grad[-1], 2 * out[-1].detach())


@pytest.mark.parametrize("kwargs,torch_type,message", [
    (dict(bias=0), TypeError, "bias should be of type bool, got: int"),
    (dict(bias="True"), TypeError, "bias should be of type bool, got: str"),
    (dict(batch_first="False"), TypeError, "batch_first should be of type bool, got: str"),
    (dict(input_size=3.0), TypeError, "input_size should be of type int, got: float"),
    (dict(hidden_size="5"), TypeError, "hidden_size should be of type int, got: str"),
    (dict(num_layers=1.5), TypeError, "num_layers should be of type int"),
    (dict(proj_size=1.5), TypeError, "proj_size should be of type int"),
    (dict(proj_size=5), ValueError, "proj_size has to be smaller than hidden_size"),
])
def test_constructor_errors_are_torchs_and_value_errors(kwargs, torch_type, message):
    args = dict(input_size=3, hidden_size=5) | kwargs
    with pytest.raises(torch_type):
        torch.nn.LSTM(**args)
    with pytest.raises(torch_type, match=message) as err:
        rnncore.LSTM(**args)
    assert isinstance(err.value, ValueError)


def test_forward_errors_are_torchs_and_value_errors():
    m = rnncore.GRU(3, 4)
    for bad, cls in ((lambda: m(torch.randn(0, 2, 3)), ShapeError),
                     (lambda: m(torch.randn(5, 2, 7)), ShapeError),
                     (lambda: m(torch.randn(5, 2, 3), torch.zeros(1, 3, 4)), ShapeError),
                     (lambda: m(torch.randn(5, 2, 3, dtype=torch.double)), ValueError)):
        with pytest.raises(cls) as err:
            bad()
        assert isinstance(err.value, ValueError)
    assert issubclass(ShapeError, RuntimeError) and issubclass(ArgTypeError, TypeError)
    with pytest.raises(RuntimeError, match="Expected sequence length to be larger than 0"):
        m(torch.randn(0, 2, 3))
    with pytest.raises(ValueError, match=r"RNN input dtype \(torch.float64\) does not match"):
        m(torch.randn(5, 2, 3, dtype=torch.double))


@pytest.mark.parametrize("cls", [rnncore.RNNCell, rnncore.GRUCell, rnncore.LSTMCell])
def test_cells_of_size_zero_work_as_torchs(cls):
    ref = getattr(torch.nn, cls.__name__)(3, 0)
    ours = cls(3, 0)
    ours.load_state_dict(ref.state_dict())
    for a, b in zip(torch.utils._pytree.tree_leaves(ours(torch.randn(2, 3))),
                    torch.utils._pytree.tree_leaves(ref(torch.randn(2, 3)))):
        assert a.shape == b.shape == (2, 0)
    with pytest.raises(ArgTypeError, match="hidden_size should be of type int"):
        cls(3, 2.0)


class _Model(torch.nn.Module):
    """A recurrent layer and a linear head: what one scripts or traces in practice."""

    def __init__(self, rnn: torch.nn.Module):
        super().__init__()
        self.rnn = rnn
        self.head = torch.nn.Linear((rnn.proj_size or rnn.hidden_size) * rnn.num_directions, 2)

    def forward(self, x):
        out, _ = self.rnn(x)
        return self.head(out)


LAYER_CASES = [("lstm", dict(num_layers=2, batch_first=True)),
               ("lstm", dict(proj_size=2, bidirectional=True)),
               ("rnn", dict(nonlinearity="relu")), ("gru", dict(num_layers=2))]


def _quiet():
    """Warnings filters for the tests below: torch's own deprecation and tracer warnings
    are not what they check."""
    warnings.filterwarnings("ignore", message=".*deprecated.*")
    warnings.filterwarnings("ignore", category=torch.jit.TracerWarning)


@pytest.mark.parametrize("engine", ENGINES)
@pytest.mark.parametrize("mode,kw", LAYER_CASES)
def test_script_and_trace_generalise(engine, mode, kw):
    """Scripted and traced models run other sequence lengths and batch sizes as the eager
    model does; the engines TorchScript cannot compile or tracing would unroll fall back to
    the native one with a one-line warning."""
    torch.manual_seed(0)
    model = _Model(OURS[mode](3, 4, engine=engine, **kw))
    eager = copy.deepcopy(model)     # torch.jit.script swaps the layer in `model` (jit.py)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        _quiet()
        traced = torch.jit.trace(model, (torch.randn(2, 5, 3),))
        scripted = torch.jit.script(model)
    ours = [str(w.message) for w in caught if str(w.message).startswith("rnncore.")]
    if engine == "native":
        assert ours == []
    else:
        assert ours and all(m.endswith(f"runs the 'native' engine (torch's kernels) in place "
                                       f"of engine={engine!r}") and "\n" not in m for m in ours)
    buf = io.BytesIO()
    with warnings.catch_warnings():
        _quiet()
        torch.jit.save(scripted, buf)
        buf.seek(0)
        loaded = torch.jit.load(buf)
    x = torch.randn(7, 9, 3)
    want = eager(x)
    for compiled in (traced, scripted, loaded):
        torch.testing.assert_close(compiled(x), want, rtol=1e-5, atol=1e-6)
    with torch.no_grad():                    # Parameters are shared, not copied
        next(model.rnn.parameters()).add_(1.0)
        next(eager.rnn.parameters()).add_(1.0)
    torch.testing.assert_close(scripted(x), eager(x), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("cls,kw", [(rnncore.RNNCell, dict(nonlinearity="relu")),
                                    (rnncore.LSTMCell, {}), (rnncore.GRUCell, dict(bias=False))])
def test_cells_script_and_trace(cls, kw):
    torch.manual_seed(0)
    cell = cls(3, 4, **kw)
    with warnings.catch_warnings():
        _quiet()
        compiled = [torch.jit.script(cell), torch.jit.script(cell),
                    torch.jit.trace(cell, (torch.randn(2, 3),))]
    x = torch.randn(6, 3)
    want = torch.utils._pytree.tree_leaves(cell(x))
    for c in compiled:
        for a, b in zip(torch.utils._pytree.tree_leaves(c(x)), want):
            torch.testing.assert_close(a, b, rtol=1e-6, atol=1e-7)
