"""The loops' per-step GEMM (rnncore/functional/stepgemm.py): MKL's packed form where it
serves (float32, CPU, more than one thread), the plain GEMM elsewhere, both against x w^T
and whole layers against torch.nn."""
import pytest
import torch

import rnncore
from rnncore.functional import stepgemm
from rnncore.functional.stepgemm import StepGemm

needs_packing = pytest.mark.skipif(not stepgemm._PACKING, reason="torch without MKL packing")


@pytest.fixture
def two_threads(monkeypatch):
    monkeypatch.delenv("RNNCORE_PACKED", raising=False)
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    yield
    torch.set_num_threads(before)


@needs_packing
def test_packed_products_match_the_plain_gemm(two_threads):
    torch.manual_seed(0)
    w = torch.randn(24, 8)                  # (out_features, in_features)
    gemm = StepGemm(w, rows=5, steps=64)
    assert gemm.packed is not None
    for rows in (5, 3):                     # 3: another row count takes the plain GEMM
        x, out = torch.randn(rows, 8), torch.randn(rows, 24)
        want = out + x @ w.t()
        torch.testing.assert_close(gemm.add_to(out, x), want, rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(gemm.into(torch.empty(rows, 24), x), x @ w.t(),
                                   rtol=1e-5, atol=1e-5)


@needs_packing
def test_transposed_weight_is_packed_as_its_values(two_threads):
    """The backward packs W_hh^T (a transposed view): its products are dA W_hh."""
    torch.manual_seed(1)
    w_hh = torch.randn(12, 3)
    gemm = StepGemm(w_hh.t(), rows=4, steps=64)
    da = torch.randn(4, 12)
    torch.testing.assert_close(gemm.into(torch.empty(4, 3), da), da @ w_hh,
                               rtol=1e-5, atol=1e-5)


def test_when_the_packed_form_serves(monkeypatch):
    monkeypatch.delenv("RNNCORE_PACKED", raising=False)
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        assert not stepgemm.packs(torch.zeros(2, 2))          # one thread: no gain measured
        torch.set_num_threads(2)
        assert stepgemm.packs(torch.zeros(2, 2)) == stepgemm._PACKING
        assert not stepgemm.packs(torch.zeros(2, 2, dtype=torch.float64))
        monkeypatch.setenv("RNNCORE_PACKED", "0")
        assert not stepgemm.packs(torch.zeros(2, 2))
        monkeypatch.setattr(torch.compiler, "is_compiling", lambda: True)
        monkeypatch.delenv("RNNCORE_PACKED")
        assert not stepgemm.packs(torch.zeros(2, 2))
    finally:
        torch.set_num_threads(before)


@needs_packing
@pytest.mark.parametrize("mode", ["LSTM", "GRU", "RNN"])
def test_layers_with_packed_steps_match_torch_nn(two_threads, monkeypatch, mode):
    """A float32 layer on two threads (its loops then take the packed GEMMs, forward and
    backward) against torch.nn's: outputs, final states and every gradient."""
    packed = []                      # the loops' GEMMs (C++ or Python) that were packed
    init = StepGemm.__init__

    def spy(self, w, rows, steps):
        init(self, w, rows, steps)
        packed.append(self.packed is not None)

    monkeypatch.setattr(StepGemm, "__init__", spy)
    torch.manual_seed(2)
    ref = getattr(torch.nn, mode)(6, 16, num_layers=2, bidirectional=True)
    ours = getattr(rnncore, mode)(6, 16, num_layers=2, bidirectional=True)
    ours.load_state_dict(ref.state_dict())
    x = torch.randn(stepgemm.MIN_STEPS, 5, 6)
    results = []
    for layer in (ref, ours):
        xi = x.clone().requires_grad_(True)
        out, state = layer(xi)
        states = state if isinstance(state, tuple) else (state,)
        (out.sin().sum() + sum(s.cos().sum() for s in states)).backward()
        results.append([out, *states, xi.grad, *(p.grad for p in layer.parameters())])
    assert packed and all(packed), "the loops' GEMMs were not packed"
    for a, b in zip(*results):
        torch.testing.assert_close(b, a, rtol=1e-4, atol=1e-5)


def test_short_loops_use_the_weight_as_stored(two_threads):
    """A one-step call (a generated token) neither copies nor packs the weight."""
    w = torch.randn(8, 4)
    gemm = StepGemm(w, rows=3, steps=1)
    assert gemm.packed is None and gemm.wt.data_ptr() == w.data_ptr()
    x = torch.randn(3, 4)
    torch.testing.assert_close(gemm.into(torch.empty(3, 8), x), x @ w.t())


@pytest.mark.parametrize("steps", [1, stepgemm.MIN_STEPS + 3])
@pytest.mark.parametrize("mode", ["LSTM", "GRU", "RNN"])
def test_both_layouts_through_the_loops_match_torch_nn(monkeypatch, mode, steps):
    """float64 through the C++ loops (RNNCORE_FUSED=1), with the weight as stored (one step)
    and laid out (a long loop), against torch.nn within 1e-10."""
    monkeypatch.setenv("RNNCORE_FUSED", "1")
    torch.manual_seed(3)
    ref = getattr(torch.nn, mode)(4, 6, num_layers=2, bidirectional=True).double()
    ours = getattr(rnncore, mode)(4, 6, num_layers=2, bidirectional=True).double()
    ours.load_state_dict(ref.state_dict())
    x = torch.randn(steps, 3, 4, dtype=torch.float64)
    results = []
    for layer in (ref, ours):
        xi = x.clone().requires_grad_(True)
        out, _ = layer(xi)
        out.tanh().sum().backward()
        results.append([out, xi.grad, *(p.grad for p in layer.parameters())])
    for a, b in zip(*results):
        torch.testing.assert_close(b, a, rtol=1e-10, atol=1e-10)
