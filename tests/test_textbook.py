"""The textbook experiments (rnncore.textbook): leaky units against autograd and by hand,
their lag curves against gradflow's Jacobians, the tree against a hand-written chain rule,
the exposure-bias scores against teacher-forced recomputation."""
import math

import numpy as np
import pytest
import torch
from torch.nn.utils.rnn import pack_padded_sequence

from rnncore.gradflow.leaky import lag_norms, leaky_sweep, step_jacobians
from rnncore.gradflow.tree import chain_root, leaf_grad_norms, path_lengths, tree_vs_chain
from rnncore.textbook.leaky import LeakyRNN, leaky_cell_step

pd = pytest.importorskip("pandas")


def _grads(m, x, h0):
    out, h = m(x, h0)
    loss = out.sin().sum() + (h ** 2).sum()
    return [out, h, *torch.autograd.grad(loss, [x, h0, *m.parameters()])]


@pytest.mark.parametrize("alpha", [0.0, 0.5, 0.99])
@pytest.mark.parametrize("batch_first", [False, True])
def test_leaky_bptt_matches_autograd_float64(alpha, batch_first):
    torch.manual_seed(0)
    m = LeakyRNN(3, 5, num_layers=2, alpha=alpha, batch_first=batch_first).double()
    shape = (4, 7, 3) if batch_first else (7, 4, 3)        # B = 4, T = 7
    x = torch.randn(*shape, dtype=torch.double, requires_grad=True)
    h0 = torch.randn(2, 4, 5, dtype=torch.double, requires_grad=True)
    ours = _grads(m, x, h0)
    m.engine = "autograd"
    ref = _grads(m, x, h0)
    for a, b in zip(ours, ref):
        assert torch.allclose(a, b, atol=1e-12, rtol=0), (a - b).abs().max()


def test_leaky_gradcheck_packed():
    torch.manual_seed(1)
    m = LeakyRNN(2, 3, alpha=0.7).double()
    lengths = torch.tensor([5, 2, 4])

    def f(x, h0, w_hh):  # w_hh is the layer's own Parameter: gradcheck perturbs it in place
        pk = pack_padded_sequence(x, lengths, batch_first=True, enforce_sorted=False)
        out, h = m(pk, h0)
        return out.data, h

    x = torch.randn(3, 5, 2, dtype=torch.double, requires_grad=True)
    h0 = torch.randn(1, 3, 3, dtype=torch.double, requires_grad=True)
    assert torch.autograd.gradcheck(f, (x, h0, m.weight_hh_l0))
    # packed equals each sequence run alone
    out, h = m(pack_padded_sequence(x, lengths, batch_first=True, enforce_sorted=False), h0)
    for b, n in enumerate(lengths.tolist()):
        _, hb = m(x[b:b + 1, :n].transpose(0, 1), h0[:, b:b + 1])
        assert torch.allclose(h[:, b], hb[:, 0], atol=1e-13)


def test_leaky_alpha_zero_is_the_tanh_rnn():
    torch.manual_seed(2)
    ref = torch.nn.RNN(3, 4, num_layers=2).double()
    m = LeakyRNN(3, 4, num_layers=2, alpha=0.0).double()
    m.load_state_dict(ref.state_dict())
    x = torch.randn(6, 2, 3, dtype=torch.double)
    assert torch.allclose(m(x)[0], ref(x)[0], atol=1e-14)


def test_leaky_by_hand():
    """One unit, two steps, numbers worked out on paper."""
    m = LeakyRNN(1, 1, alpha=0.5, bias=False).double()
    with torch.no_grad():
        m.weight_ih_l0.fill_(1.0)
        m.weight_hh_l0.fill_(2.0)
    x = torch.tensor([[[0.5]], [[-1.0]]], dtype=torch.double, requires_grad=True)
    out, h = m(x)
    h1 = 0.5 * math.tanh(0.5)                       # 0.5 * 0 + 0.5 * tanh(0.5)
    h2 = 0.5 * h1 + 0.5 * math.tanh(2 * h1 - 1.0)
    assert out[:, 0, 0].tolist() == pytest.approx([h1, h2], abs=1e-15)
    (dx,) = torch.autograd.grad(h.sum(), [x])
    u2 = math.tanh(2 * h1 - 1.0)
    dh1 = 0.5 + 0.5 * (1 - u2 ** 2) * 2.0            # alpha + (1 - alpha) tanh' W_hh
    assert dx[1, 0, 0].item() == pytest.approx(0.5 * (1 - u2 ** 2), abs=1e-15)
    assert dx[0, 0, 0].item() == pytest.approx(dh1 * 0.5 * (1 - math.tanh(0.5) ** 2),
                                               abs=1e-15)


def test_leaky_refuses_bad_settings():
    with pytest.raises(ValueError, match="alpha"):
        LeakyRNN(2, 2, alpha=1.5)
    with pytest.raises(ValueError, match="native"):
        LeakyRNN(2, 2, engine="native")


def test_lag_norms_without_recurrent_weights_are_alpha_to_the_lag():
    """W_hh = 0: J_t = alpha I exactly, so ||G_L|| = alpha^L."""
    H, T = 4, 10
    x_proj = torch.randn(T, H, dtype=torch.double)
    for alpha in (0.5, 0.9, 0.99):
        jac, _ = step_jacobians(leaky_cell_step(alpha), x_proj,
                                (torch.zeros(H, dtype=torch.double),),
                                torch.zeros(H, H, dtype=torch.double), None)
        assert np.allclose(lag_norms(jac, H), alpha ** np.arange(1, T + 1), rtol=1e-12)


@pytest.mark.parametrize("cell", ["rnn", "lstm"])
def test_lag_norms_match_gradflow_jacobians(cell):
    """autograd's full Jacobians (here) vs gradflow's structured linearization."""
    from rnncore import gradflow as G
    from rnncore.cells import cell_step
    from rnncore.gradflow.unroll import unroll

    probe = G.prepare(G.GradFlowConfig(cell=cell, hidden_size=8, seq_len=12,
                                       seq_source="random"))
    with torch.no_grad():
        _, traces = unroll(probe.model, probe.inputs)
    tr = traces[0]
    _, w_hh, _, b_hh = G.layer_weights(probe.model.rnn, 0)
    jac, _ = step_jacobians(cell_step(cell), tr.x_proj[:, 0].detach(),
                            tuple(s[0] for s in tr.init), w_hh.detach(), b_hh.detach())
    ref = G.jacobian_norms(probe, method="exact").frame["norm"].to_numpy()
    assert np.allclose(lag_norms(jac, 8), ref, rtol=1e-10, atol=1e-300)


def test_leaky_sweep_alpha_zero_is_the_rnn_and_alpha_keeps_gradient():
    from rnncore import gradflow as G

    sweep = leaky_sweep((0.0, 0.99), hidden_size=8, embedding_dim=8, seq_len=16,
                        trained_lstm=False)
    rnn = G.prepare(G.GradFlowConfig(cell="rnn", hidden_size=8, embedding_dim=8, seq_len=16))
    ref = G.jacobian_norms(rnn, method="exact").frame["norm"].to_numpy()
    got = sweep.lags[sweep.lags.model == "leaky α=0"].sort_values("lag").norm.to_numpy()
    assert np.allclose(got, ref, rtol=1e-10)
    assert sweep.far_norm("leaky α=0.99") > 100 * sweep.far_norm("leaky α=0")
    assert set(sweep.lags.model) == {"leaky α=0", "leaky α=0.99", "fresh LSTM"}
    text = sweep.describe()
    assert "After 16 characters" in text and "forget gate" in text
    f = sweep.retention[sweep.retention.model == "fresh LSTM"]
    assert len(f) == 16 and ((f.low <= f["mean"]) & (f["mean"] <= f.high)).all()


def test_tree_path_lengths():
    assert path_lengths(5, "chain") == [5, 4, 3, 2, 1]
    assert path_lengths(8, "tree") == [3] * 8
    assert path_lengths(5, "tree") == [2, 2, 2, 3, 3]     # ((0 1) (2 (3 4)))
    assert max(path_lengths(64, "tree")) == 6


def _hand_leaf_norms(leaves, w_l, w_r, b, structure):
    """Forward in NumPy, then d root/d x_i = prod over the path of diag(1 - n^2) W_side."""
    leaves, w_l, w_r, b = (t.numpy() for t in (leaves, w_l, w_r, b))
    T, H = leaves.shape
    paths = {i: [] for i in range(T)}      # (node value, side matrix) from leaf to root

    def comb(l, r):
        return np.tanh(w_l @ l + w_r @ r + b)

    if structure == "chain":
        n = np.zeros(H)
        for t in range(T):
            n = comb(n, leaves[t])
            for i in range(t + 1):
                paths[i].append((n, w_r if i == t else w_l))
    else:
        def node(i, j):
            if i == j:
                return leaves[i]
            m = (i + j + 1) // 2
            v = comb(node(i, m - 1), node(m, j))
            for k in range(i, j + 1):
                paths[k].append((v, w_l if k < m else w_r))
            return v
        node(0, T - 1)
    out = []
    for i in range(T):
        J = np.eye(H)
        for v, w in paths[i]:
            J = np.diag(1 - v ** 2) @ w @ J
        out.append(np.linalg.norm(J, 2))
    return np.array(out)


@pytest.mark.parametrize("structure", ["chain", "tree"])
def test_leaf_gradients_match_the_chain_rule_by_hand(structure):
    gen = torch.Generator().manual_seed(3)
    leaves, w_l, w_r = (torch.randn(*s, generator=gen, dtype=torch.double)
                        for s in ((7, 3), (3, 3), (3, 3)))
    b = torch.randn(3, generator=gen, dtype=torch.double)
    got = leaf_grad_norms(leaves, w_l, w_r, b, structure)
    assert np.allclose(got, _hand_leaf_norms(leaves, w_l, w_r, b, structure), rtol=1e-10)


def test_chain_is_the_rnn_and_the_tree_keeps_gradient():
    from rnncore import gradflow as G

    probe = G.prepare(G.GradFlowConfig(cell="rnn", hidden_size=8, embedding_dim=8, seq_len=9))
    w_ih, w_hh, b_ih, b_hh = (p.detach() for p in G.layer_weights(probe.model.rnn, 0))
    x = probe.model.embedding(probe.inputs)[0].detach()
    out, _ = probe.model.rnn(x[None])
    assert torch.allclose(chain_root(x, w_hh, w_ih, b_ih + b_hh), out[0, -1], atol=1e-14)
    r = tree_vs_chain(hidden_size=8, seq_len=32)
    chain, tree = (r.frame[r.frame.structure == s].sort_values("leaf") for s in ("chain", "tree"))
    assert tree.norm.min() > 1e3 * chain.norm.min()
    assert tree.path.max() == 5 and chain.path.max() == 32
    assert "depth 5 instead of 32" in r.describe()
