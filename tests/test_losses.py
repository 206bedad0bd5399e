"""rnncore.losses.cross_entropy_sum against torch's cross-entropy, finite differences, and
the memory its backward is meant to save."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from benchmarks.measure import peak_memory
from rnncore.losses import cross_entropy_sum

IGNORE = -100


def batch(n=37, v=11, dtype=torch.float64, seed=0, ignored=(3, 4, 20)):
    g = torch.Generator().manual_seed(seed)
    logits = (3 * torch.randn(n, v, generator=g, dtype=dtype)).requires_grad_(True)
    targets = torch.randint(0, v, (n,), generator=g)
    targets[list(ignored)] = IGNORE
    return logits, targets


def test_value_and_gradient_match_torch():
    logits, targets = batch()
    ours = cross_entropy_sum(logits, targets, IGNORE)
    ref = F.cross_entropy(logits, targets, ignore_index=IGNORE, reduction="sum")
    torch.testing.assert_close(ours, ref, rtol=1e-12, atol=1e-12)
    g_ours, = torch.autograd.grad(ours * 0.7, logits)
    g_ref, = torch.autograd.grad(ref * 0.7, logits)
    torch.testing.assert_close(g_ours, g_ref, rtol=1e-12, atol=1e-12)
    assert g_ours[[3, 4, 20]].abs().max() == 0          # ignored rows get no gradient


def test_gradient_matches_finite_differences():
    # central differences in float64 (gradcheck cannot be used: it backpropagates one
    # graph twice, which this loss refuses by design)
    logits, targets = batch(n=6, v=5, ignored=(2,))
    grad, = torch.autograd.grad(cross_entropy_sum(logits, targets, IGNORE), logits)
    z, eps = logits.detach(), 1e-6
    numeric = torch.zeros_like(z)
    for idx in range(z.numel()):
        d = torch.zeros_like(z).view(-1)
        d[idx] = eps
        d = d.view_as(z)
        numeric.view(-1)[idx] = (cross_entropy_sum(z + d, targets, IGNORE)
                                 - cross_entropy_sum(z - d, targets, IGNORE)) / (2 * eps)
    torch.testing.assert_close(grad, numeric, rtol=1e-7, atol=1e-8)


def test_float32_matches_torch():
    logits, targets = batch(n=200, v=300, dtype=torch.float32)
    ours = cross_entropy_sum(logits, targets, IGNORE)
    ref = F.cross_entropy(logits, targets, ignore_index=IGNORE, reduction="sum")
    torch.testing.assert_close(ours, ref, rtol=1e-5, atol=1e-4)
    torch.testing.assert_close(torch.autograd.grad(ours, logits)[0],
                               torch.autograd.grad(ref, logits)[0], rtol=1e-5, atol=1e-6)


def test_all_ignored_is_zero_with_zero_gradient():
    logits, targets = batch(n=4, v=3, ignored=(0, 1, 2, 3))
    loss = cross_entropy_sum(logits, targets, IGNORE)
    assert float(loss.detach()) == 0.0
    assert torch.autograd.grad(loss, logits)[0].abs().max() == 0


def test_bad_shapes_and_targets_raise():
    logits, targets = batch(n=4, v=3, ignored=())
    with pytest.raises(ValueError, match="logits"):
        cross_entropy_sum(logits[None], targets)
    bad = targets.clone()
    bad[1] = 3
    with pytest.raises(ValueError, match=r"\[0, 3\)"):
        cross_entropy_sum(logits, bad, IGNORE)


def test_second_backward_is_refused():
    # the backward turns the saved log-probabilities into the gradient in place
    logits, targets = batch()
    loss = cross_entropy_sum(logits, targets, IGNORE)
    loss.backward(retain_graph=True)
    with pytest.raises(RuntimeError, match="inplace"):
        loss.backward()


def test_backward_holds_one_logits_sized_buffer():
    n, v = 512, 1024
    size = n * v * 4
    logits, targets = batch(n=n, v=v, dtype=torch.float32, ignored=())

    def backward_peak(loss_fn):
        z = logits.detach().clone().requires_grad_(True)
        loss = loss_fn(z)
        return peak_memory(lambda: loss.backward(), "cpu")

    ours = backward_peak(lambda z: cross_entropy_sum(z, targets, IGNORE))
    torch_ = backward_peak(lambda z: F.cross_entropy(z, targets, ignore_index=IGNORE,
                                                     reduction="sum"))
    # ours: the gradient is the saved buffer (plus small per-row vectors); torch: NLL's
    # dense gradient and log-softmax's gradient, two new (N, V) tensors
    assert ours < 0.1 * size
    assert torch_ >= 2 * size
