"""Gradient-flow probes against independent references: autograd (retain_grad, jacobian),
finite differences in float64, numpy's eigenvalues, and the textbook BPTT recursion."""
from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from rnncore import cells
from rnncore import gradflow as gf


def make_probe(cell="lstm", hidden=8, layers=1, seq_len=10, seed=0, **kw):
    cfg = gf.GradFlowConfig(cell=cell, hidden_size=hidden, num_layers=layers,
                            embedding_dim=6, seq_source="random", vocab_size=12,
                            seq_len=seq_len, seed=seed, **kw)
    return gf.prepare(cfg)


CELLS = ["rnn", "lstm", "gru"]


# ------------------------------------------------------------------------- config / input
def test_config_rejects_bad_values():
    for kw in ({"cell": "tcn"}, {"rho": 2.0}, {"rho": 0.1}, {"seq_len": 1},
               {"seq_source": "file"}, {"hidden_size": 0}, {"init": "xavier"},
               {"truncation_probs": (0.0,)}, {"jacobian_method": "svd"}):
        with pytest.raises(ValueError):
            gf.GradFlowConfig(**kw)
    with pytest.raises(gf.GradFlowError):
        gf.GradFlowConfig.from_dict({"cell": "rnn", "bogus": 1})
    cfg = gf.GradFlowConfig(cell="gru", rho=1.25)
    assert gf.GradFlowConfig.from_dict(cfg.to_dict()) == cfg


def test_poem_source_uses_the_poem_characters():
    from rnncore.data import load_corpus

    probe = gf.prepare(gf.GradFlowConfig(cell="rnn", hidden_size=4, embedding_dim=4,
                                         seq_len=20))
    poem = load_corpus("tang").poems[0].text
    assert probe.chars[0] == "<bos>"
    assert "".join(probe.chars[1:]) == poem[:19]
    assert probe.inputs.shape == probe.targets.shape == (1, 20)
    assert torch.equal(probe.inputs[0, 1:], probe.targets[0, :-1])


@pytest.mark.parametrize("cell", CELLS)
def test_unroll_matches_the_model_forward(cell):
    probe = make_probe(cell, layers=2)
    logits, _ = gf.unroll(probe.model, probe.inputs)
    for engine in ("native", "bptt"):
        probe.model.rnn.engine = engine
        ref, _ = probe.model(probe.inputs)
        torch.testing.assert_close(logits, ref, rtol=1e-10, atol=1e-12)


# ------------------------------------------------------------------------- 1. dL/dh_t
@pytest.mark.parametrize("cell", CELLS)
@pytest.mark.parametrize("loss", gf.LOSSES)
def test_recorded_hidden_grads_match_autograd(cell, loss):
    probe = make_probe(cell, layers=2)
    bptt = gf.hidden_grads(probe, loss)
    ref = gf.hidden_grads_autograd(probe, loss)
    assert bptt.shape == (2, probe.seq_len, probe.hidden_size)
    np.testing.assert_allclose(bptt, ref, rtol=1e-9, atol=1e-12)
    assert np.abs(ref).max() > 1e-3
    if loss == "last":   # loss on the last step only: nothing reaches h_t from later outputs
        frame = gf.hidden_grad_norms(probe, ["last"])
        assert list(frame.columns) == ["loss", "layer", "t", "char", "grad_norm"]
        assert len(frame) == 2 * probe.seq_len


def test_rnn_hidden_grads_follow_the_bptt_recursion():
    """dL/dh_t = W^T (dL/dh_{t+1} * (1 - h_{t+1}^2)) + V^T dL/do_t, on the real model."""
    probe = make_probe("rnn", hidden=10, seq_len=12)
    grads = gf.hidden_grads(probe, "sum")[0]
    with torch.no_grad():
        _, traces = gf.unroll(probe.model, probe.inputs)
        h = torch.stack(traces[0].h)[:, 0].numpy()
        logits, _ = probe.model(probe.inputs)
        d_out = (F.softmax(logits[0], -1) - F.one_hot(probe.targets[0], logits.shape[-1]))
    W = probe.model.rnn.weight_hh_l0.detach().numpy()
    V = probe.model.head.weight.detach().numpy()
    direct = d_out.numpy() @ V
    expected = direct[-1]
    np.testing.assert_allclose(grads[-1], expected, rtol=1e-9, atol=1e-12)
    for t in range(probe.seq_len - 2, -1, -1):
        expected = W.T @ (grads[t + 1] * (1 - h[t + 1] ** 2)) + direct[t]
        np.testing.assert_allclose(grads[t], expected, rtol=1e-9, atol=1e-12)


def test_hidden_grad_matches_finite_difference():
    """dL/dh_t from the recorder vs a central difference on h_t itself (float64)."""
    probe = make_probe("gru", hidden=6, seq_len=8)
    grads = gf.hidden_grads(probe, "sum")[0]
    model, t, unit, eps = probe.model, 3, 2, 1e-6

    def loss_with_bump(bump):
        rnn = model.rnn
        w_ih, w_hh, b_ih, b_hh = gf.layer_weights(rnn, 0)
        x = F.linear(model.embedding(probe.inputs)[0], w_ih, b_ih)
        h = torch.zeros(1, 6, dtype=torch.float64)
        hs = []
        for s in range(probe.seq_len):
            h, _ = cells.gru_cell(x[s:s + 1], h, w_hh, b_hh)
            if s == t:
                h = h + bump
            hs.append(h)
        logits = model.head(torch.cat(hs))
        return float(F.cross_entropy(logits, probe.targets[0], reduction="sum"))

    bump = torch.zeros(1, 6, dtype=torch.float64)
    bump[0, unit] = eps
    with torch.no_grad():
        fd = (loss_with_bump(bump) - loss_with_bump(-bump)) / (2 * eps)
    assert fd == pytest.approx(grads[t, unit], rel=1e-6, abs=1e-9)


# ------------------------------------------------------------------------- 2. Jacobians
@pytest.mark.parametrize("cell", CELLS)
def test_step_linearization_matches_autograd_jacobian(cell):
    probe = make_probe(cell, hidden=7, layers=2, seq_len=6)
    for layer in (0, 1):
        lin = gf.linearize(probe, layer)
        torch.testing.assert_close(lin.dense(), gf.step_jacobians_autograd(lin),
                                   rtol=1e-10, atol=1e-12)
        # one step through torch.autograd.functional.jacobian as well
        fn = gf._step_fn(cell, "tanh", lin.w_hh, lin.b_hh)
        J3 = torch.autograd.functional.jacobian(
            lambda s: fn(s[None], lin.x_proj[3][None])[0], lin.prev[3])
        torch.testing.assert_close(lin.dense()[3], J3, rtol=1e-10, atol=1e-12)


def _reference_lag_norm(probe, lag):
    """||dh_{T-1}/dh_{T-1-lag}||_2 by torch.autograd.functional.jacobian of the composed
    map (c held fixed for LSTM), no linearization involved."""
    lin = gf.linearize(probe)
    H, T = probe.hidden_size, probe.seq_len
    fn = gf._step_fn(probe.cell, "tanh", lin.w_hh, lin.b_hh)
    start = lin.prev[T - lag]

    def compose(h):
        s = torch.cat([h, start[H:]])[None]
        for t in range(T - lag, T):
            s = fn(s, lin.x_proj[t][None])
        return s[0, :H]

    J = torch.autograd.functional.jacobian(compose, start[:H].clone())
    return float(torch.linalg.matrix_norm(J, ord=2))


@pytest.mark.parametrize("cell", CELLS)
def test_jacobian_norms_exact_and_power_match_composed_autograd(cell):
    probe = make_probe(cell, hidden=6, seq_len=9)
    exact = gf.jacobian_norms(probe, method="exact")
    power = gf.jacobian_norms(probe, method="power", iters=400)
    assert list(exact.frame.lag) == list(range(1, 10))
    for lag in (1, 2, 5, 9):
        ref = _reference_lag_norm(probe, lag)
        assert exact.frame.norm[lag - 1] == pytest.approx(ref, rel=1e-9)
    np.testing.assert_allclose(power.frame.norm, exact.frame.norm, rtol=1e-4)
    assert exact.method == "exact" and power.method == "power"


def test_slope_and_vanish_lag_summary():
    norms = 0.5 ** np.arange(1, 21)
    slope, vanish = gf._summarise_norms(norms)
    assert slope == pytest.approx(math.log(0.5))
    assert vanish == 11                 # 0.5**10 < 1e-3 <= 0.5**9 (relative to lag 1)
    assert gf._summarise_norms(np.ones(5))[1] is None


# ------------------------------------------------------------------------- 3. spectral radius
@pytest.mark.parametrize("cell", CELLS)
def test_spectral_radii_and_rescaling(cell):
    probe = make_probe(cell, hidden=9, layers=2)
    radii = gf.spectral_radii(probe.model)
    assert len(radii) == 2 * {"rnn": 1, "lstm": 4, "gru": 3}[cell]
    w = probe.model.rnn.weight_hh_l1.detach().numpy()[:9]
    assert radii.spectral_radius[len(radii) // 2] == pytest.approx(
        np.abs(np.linalg.eigvals(w)).max(), rel=1e-10)
    assert radii.spectral_norm[0] == pytest.approx(
        np.linalg.norm(probe.model.rnn.weight_hh_l0.detach().numpy()[:9], 2), rel=1e-10)
    gf.rescale_recurrent_(probe.model, 1.3)
    np.testing.assert_allclose(gf.spectral_radii(probe.model).spectral_radius, 1.3, rtol=1e-9)


def test_rho_sweep_reports_measurements_and_restores_weights():
    probe = make_probe("rnn", hidden=16, seq_len=20)
    before = probe.model.rnn.weight_hh_l0.detach().clone()
    sweep = gf.rho_sweep(probe, (0.5, 1.0, 1.5))
    torch.testing.assert_close(probe.model.rnn.weight_hh_l0.detach(), before)
    np.testing.assert_allclose(sweep.measured_rho, [0.5, 1.0, 1.5], rtol=1e-9)
    assert list(sweep.textbook) == ["vanish", "flat", "explode"]
    for _, row in sweep.iterrows():
        assert row.observed == gf._verdict(row.slope)
        assert row.agrees == (row.observed == row.textbook)
    # larger rho keeps more gradient at long lags on the same sequence
    assert sweep.jac_lag_max.is_monotonic_increasing
    assert sweep.slope[0] < math.log(0.5) + 1e-9   # tanh' <= 1 only shrinks the rho<1 case


# ------------------------------------------------------------------------- 4. gate paths
def test_lstm_cell_path_is_diag_forget_gate():
    probe = make_probe("lstm", hidden=8, seq_len=8)
    check = gf.gate_path_check(probe)
    assert check.err_diag_gate.max() < 1e-14
    assert check.offdiag_max.max() == 0.0
    assert check.err_diag_one_minus.min() > 1e-3
    # finite differences on c_{t-1} with h_{t-1} fixed
    J, f = gf.gate_path_jacobians(probe)
    lin = gf.linearize(probe)
    t, j, eps = 4, 3, 1e-6
    h, c = lin.prev[t, :8][None], lin.prev[t, 8:][None].clone()
    bump = torch.zeros_like(c)
    bump[0, j] = eps
    w_hh, b_hh = probe.model.rnn.weight_hh_l0.detach(), probe.model.rnn.bias_hh_l0.detach()
    plus = cells.lstm_cell(lin.x_proj[t][None], h, c + bump, w_hh, b_hh)[0][1]
    minus = cells.lstm_cell(lin.x_proj[t][None], h, c - bump, w_hh, b_hh)[0][1]
    fd = ((plus - minus) / (2 * eps))[0]
    expected = torch.zeros(8, dtype=torch.float64)
    expected[j] = f[t, j]
    torch.testing.assert_close(fd, expected, rtol=1e-7, atol=1e-9)


def test_gru_direct_path_is_diag_z_in_torch_convention():
    probe = make_probe("gru", hidden=8, seq_len=8)
    check = gf.gate_path_check(probe)
    assert (check.gate == "z").all()
    assert check.err_diag_gate.max() < 1e-14          # h' = (1 - z) n + z h
    assert check.err_diag_one_minus.min() > 1e-3       # not h' = (1 - z) h + z n
    # and torch.nn.GRU agrees with that convention: same output as the cell
    gru = torch.nn.GRU(3, 4, dtype=torch.float64)
    x = torch.randn(1, 1, 3, dtype=torch.float64)
    h0 = torch.randn(1, 1, 4, dtype=torch.float64)
    ref = gru(x, h0)[1][0]
    xp = F.linear(x[0], gru.weight_ih_l0, gru.bias_ih_l0)
    torch.testing.assert_close(cells.gru_cell(xp, h0[0], gru.weight_hh_l0, gru.bias_hh_l0)[0],
                               ref)


def test_gate_stats_and_rnn_rejection():
    probe = make_probe("lstm", hidden=8, seq_len=8)
    stats = gf.gate_stats(probe)
    acts = gf.activations(probe).values["f"]
    np.testing.assert_allclose(stats["mean"], acts.mean(1))
    np.testing.assert_allclose(stats["q50"], np.median(acts, 1))
    assert (stats.q10 <= stats.q50).all() and (stats.q50 <= stats.q90).all()
    assert stats.retention.iloc[-1] == 1.0
    assert stats.retention.iloc[-2] == pytest.approx(stats["mean"].iloc[-1])
    with pytest.raises(gf.GradFlowError):
        gf.gate_stats(make_probe("rnn"))
    with pytest.raises(gf.GradFlowError):
        gf.gate_stats(probe, gate="z")


# ------------------------------------------------------------------------- 5. tied weights
@pytest.mark.parametrize("cell", CELLS)
def test_tied_weight_contributions_sum_to_autograd(cell):
    probe = make_probe(cell, hidden=6, layers=2, seq_len=8)
    tied = gf.tied_weight_grads(probe, layer=0, keep_contributions=True)
    for engine in ("native", "autograd"):
        probe.model.rnn.engine = engine
        logits, _ = probe.model(probe.inputs)
        (ref,) = torch.autograd.grad(gf.sequence_loss(logits, probe.targets),
                                     [probe.model.rnn.weight_hh_l0])
        np.testing.assert_allclose(tied.total, ref.numpy(), rtol=1e-9, atol=1e-13)
    assert tied.max_abs_err < 1e-12
    # each term equals the gradient of a per-step copy of W_hh
    logits, traces = gf.unroll(probe.model, probe.inputs, perturb_layers=(0,),
                               weight_copies=True)
    per_step = torch.autograd.grad(gf.sequence_loss(logits, probe.targets),
                                   traces[0].w_copies)
    np.testing.assert_allclose(tied.contributions, torch.stack(per_step).numpy(),
                               rtol=1e-9, atol=1e-13)
    assert tied.per_step.cumulative.iloc[-1] == pytest.approx(1.0)
    assert not tied.contributions[0].any()            # h_{-1} = 0: step 0 adds nothing
    assert tied.contributions[1:].any()


# ------------------------------------------------------------------------- 6. truncation
@pytest.mark.parametrize("cell", CELLS)
def test_batched_gradients_match_one_at_a_time(cell):
    probe = make_probe(cell, hidden=5, layers=2, seq_len=7)
    scales = [gf.regular_truncation_scale(7, 3), [1.0] * 7, [1, 0.5, 2.0, 0, 4, 1, 0]]
    batched = gf.batched_param_grads(probe, torch.tensor(scales, dtype=torch.float64).T)
    for row, scale in zip(batched, scales):
        torch.testing.assert_close(row, gf.rnn_param_grad(probe, scale), rtol=1e-9,
                                   atol=1e-13)


def test_regular_truncation_bias_vs_k():
    probe = make_probe("rnn", hidden=8, seq_len=16)
    frame = gf.truncation_bias(probe, probs=(0.5,), draws=8)
    regular = frame[frame.scheme == "regular"]
    assert list(regular.truncation_len) == [1, 2, 4, 8, 16]
    full = regular[regular.truncation_len == 16].iloc[0]
    assert full.cosine == pytest.approx(1.0) and full.rel_error == pytest.approx(0.0, abs=1e-12)
    assert regular.rel_error.iloc[0] > 0.01          # k = 1 drops every recurrent path
    assert gf.regular_truncation_scale(8, 3) == [1, 1, 1, 0, 1, 1, 0, 1]
    with pytest.raises(gf.GradFlowError):
        gf.truncation_bias(probe, truncation_lens=[0])


def test_randomized_truncation_is_unbiased():
    """Mean over many draws within a few standard errors of the full gradient; the same
    scheme without the 1/p reweighting is detectably biased (so the test can fail)."""
    probe = make_probe("lstm", hidden=4, seq_len=8, seed=3)
    full = gf.rnn_param_grad(probe)
    draws, p = 3000, 0.5
    grads = gf.randomized_truncation_grads(probe, p, draws, seed=1)
    gen = torch.Generator().manual_seed(7)
    directions = torch.randn(5, full.numel(), generator=gen, dtype=torch.float64)
    proj, target = grads @ directions.T, directions @ full
    z = (proj.mean(0) - target) / (proj.std(0) / math.sqrt(draws))
    assert z.abs().max() < 4.5, z
    assert proj.std(0).min() > 0                      # it is random
    unscaled = gf.batched_param_grads(
        probe, gf.randomized_truncation_scale(8, p, draws, torch.Generator().manual_seed(1))
        * p) @ directions.T
    z_bad = (unscaled.mean(0) - target) / (unscaled.std(0) / math.sqrt(draws))
    assert z_bad.abs().max() > 10


# ------------------------------------------------------------------------- 7. clipping
def test_clipping_frame_from_trainer_records(tmp_path):
    from rnncore.trainer import StepRecord

    records = [StepRecord(step=i, epoch=0, loss=1.0, bpc=1.0, grad_norm=g, clipped=g > 1.0,
                          lr=1e-3, tokens=10, tokens_per_s=1.0, elapsed_s=0.1)
               for i, g in enumerate([0.5, 2.0, 3.0, 0.9])]
    frame = gf.clipping_frame(records, clip_threshold=1.0)
    assert list(frame.columns) == gf.CLIP_COLUMNS
    assert list(frame.clipped) == [False, True, True, False]
    assert gf.clip_rate(frame) == 0.5
    derived = gf.clipping_frame([{"step": 1, "grad_norm": 5.0}, {"step": 2, "grad_norm": 0.1}],
                                clip_threshold=1.0)
    assert list(derived.clipped) == [True, False]
    path = tmp_path / "steps.jsonl"
    path.write_text("\n".join(json.dumps({"step": i, "grad_norm": g, "clipped": g > 2})
                              for i, g in enumerate([1.0, 3.0])))
    loaded = gf.load_step_records(tmp_path, clip_threshold=2.0)
    assert list(loaded.clipped) == [False, True] and (loaded.clip_threshold == 2.0).all()
    (tmp_path / "bad.json").write_text("{")
    with pytest.raises(gf.GradFlowError):
        gf.load_step_records(tmp_path / "bad.json")
    with pytest.raises(gf.GradFlowError):
        gf.load_step_records(tmp_path / "missing.jsonl")
    assert math.isnan(gf.clip_rate(gf.clipping_frame([])))


# ------------------------------------------------------------------------- 8. activations
@pytest.mark.parametrize("cell,names", [("rnn", {"h", "a"}), ("lstm", {"h", "i", "f", "g", "o", "c"}),
                                        ("gru", {"h", "r", "z", "n"})])
def test_activations(cell, names):
    probe = make_probe(cell, hidden=5, seq_len=6)
    acts = gf.activations(probe)
    assert set(acts.values) == names
    assert all(v.shape == (6, 5) for v in acts.values.values())
    probe.model.rnn.engine = "native"
    out, _ = probe.model.rnn(probe.model.embedding(probe.inputs))
    np.testing.assert_allclose(acts.values["h"], out[0].detach().numpy(), rtol=1e-10)
    if cell == "lstm":
        np.testing.assert_allclose(acts.values["h"], acts.values["o"] * np.tanh(acts.values["c"]))
    frame = acts.frame("h")
    assert frame.shape == (5, 6) and frame.columns[0] == f"0:{probe.chars[0]}"
    assert len(acts.long_frame()) == len(names) * 30
    with pytest.raises(gf.GradFlowError):
        acts.frame("q")


# ------------------------------------------------------------------------- summary and CLI
def test_run_probes_summary_is_json_ready():
    cfg = gf.GradFlowConfig(cell="gru", hidden_size=6, embedding_dim=4, seq_source="random",
                            vocab_size=10, seq_len=8, truncation_draws=4, rho_values=(0.5, 1.5))
    out = gf.run_probes(cfg)
    json.dumps(out)
    assert out["tied_weights"]["max_abs_err"] < 1e-12
    assert out["gate_path"]["max_err_diag_gate"] < 1e-14
    assert len(out["jacobian"]["norms"]) == 8


def test_cli_gradflow(capsys):
    from rnncore.cli import main

    rc = main(["gradflow", "--cell", "rnn", "--hidden-size", "6", "--seq-len", "8",
               "--source", "random", "--draws", "4", "--json"])
    out = capsys.readouterr().out
    assert rc == 0
    data = json.loads(out)
    assert data["cell"] == "rnn" and data["seq_len"] == 8
    rc = main(["gradflow", "--cell", "rnn", "--hidden-size", "6", "--seq-len", "8",
               "--source", "random", "--draws", "4"])
    text = capsys.readouterr().out
    assert rc == 0 and "vanish" in text
    for bad in (["--rho", "3"], ["--seq-len", "1"], ["--checkpoint", "/nonexistent/ckpt"]):
        rc = main(["gradflow", "--cell", "rnn", *bad])
        err = capsys.readouterr().err
        assert rc == 2 and err.startswith("error: "), (bad, err)


# ------------------------------------------------------------------------- figures
def test_gradient_flow_figures_from_probe_outputs():
    from rnncore import plots

    probe = make_probe("lstm", hidden=6, layers=2, seq_len=8)
    acts = gf.activations(probe)
    fig = plots.activation_heatmap_figure(acts.values["f"], acts.chars, "f")
    assert np.asarray(fig.data[0].z).shape == (6, 8)
    jac = gf.jacobian_norms(probe)
    fig = plots.jacobian_lag_figure({"LSTM": (jac.frame.lag, jac.frame.norm)})
    assert fig.layout.yaxis.type == "log"
    fig = plots.truncation_bias_figure(gf.truncation_bias(probe, probs=(0.5,), draws=4))
    assert len(fig.data) == 3
