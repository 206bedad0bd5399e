"""Trainer: BPTT strategies against independent references, unbiasedness of randomized
truncation, exact resume, non-finite recovery, clipping, schedules, stopping rules."""
from __future__ import annotations

import copy
import json
import math
import threading

import pytest
import torch
import torch.nn.functional as F

from rnncore import data as D
from rnncore.model import CharRNN, ModelConfig
from rnncore.trainer import (EvalRecord, StepRecord, TrainConfig, TrainConfigError, Trainer,
                             draw_keep_factors, evaluate_model, lr_factor, make_optimizer,
                             window_loss)

V = 12  # vocabulary of the synthetic gradient tests


@pytest.fixture(scope="module")
def prepared():
    """Eight bundled poems: 7 train / 1 val (an epoch is a handful of steps)."""
    return D.prepare_data(D.DataConfig(max_poems=8, val_fraction=0.125))


def tiny_model(cell="lstm", layers=2, engine="bptt", hidden=5, seed=0) -> CharRNN:
    torch.manual_seed(seed)
    cfg = ModelConfig(cell=cell, vocab_size=V, embedding_dim=4, hidden_size=hidden,
                      num_layers=layers, engine=engine)
    return CharRNN(cfg).double()


def grads_of(model, fn) -> dict[str, torch.Tensor]:
    model.zero_grad(set_to_none=True)
    fn().backward()
    return {n: p.grad.clone() for n, p in model.named_parameters()}


def assert_grads_close(a, b, atol=1e-10):
    assert a.keys() == b.keys()
    for name in a:
        torch.testing.assert_close(a[name], b[name], atol=atol, rtol=1e-8, msg=name)


def random_state(model, batch, gen):
    h = torch.randn(model.cfg.num_layers, batch, model.cfg.hidden_size, generator=gen,
                    dtype=torch.float64)
    return (h, torch.randn(h.shape, generator=gen, dtype=torch.float64)) \
        if model.cfg.cell == "lstm" else h


def copy_with_engine(model, engine):
    other = copy.deepcopy(model)
    other.engine = engine
    return other


# ----------------------------------------------------------------------------- config

@pytest.mark.parametrize("kwargs, words", [
    ({"strategy": "tbptt"}, "unknown strategy"),
    ({"truncation_len": 8, "update_interval": 9}, "cannot exceed"),
    ({"lr": -1.0}, "lr must be"),
    ({"lr_schedule": "cosine", "max_steps": None, "max_minutes": 1.0}, "needs max_steps"),
    ({"max_steps": None}, "never stops"),
    ({"randomized_keep_prob": 0.0}, "randomized_keep_prob"),
    ({"batch_size": 0}, "batch_size"),
    ({"device": "tpu"}, "unknown device"),
    ({"clip_norm": -1.0}, "clip_norm"),
])
def test_train_config_rejects_bad_values(kwargs, words):
    with pytest.raises(TrainConfigError, match=words) as info:
        TrainConfig(**kwargs)
    assert isinstance(info.value, ValueError) and "\n" not in str(info.value)


def test_train_config_defaults_and_round_trip():
    cfg = TrainConfig(truncation_len=24)
    assert cfg.update_interval == 24  # k1 defaults to k2
    assert TrainConfig.from_dict(cfg.to_dict()) == cfg
    with pytest.raises(TrainConfigError, match="unknown TrainConfig field"):
        TrainConfig.from_dict({"k2": 3})


def test_lr_schedules_match_torch_schedulers():
    """Cosine and step factors against torch.optim.lr_scheduler, warm-up by formula."""
    for sched, kw in (("cosine", {"min_lr_ratio": 0.1}), ("step", {"lr_step_size": 7,
                                                                   "lr_gamma": 0.3})):
        cfg = TrainConfig(lr=0.5, lr_schedule=sched, max_steps=40, **kw)
        opt = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=0.5)
        ref = (torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=40, eta_min=0.05)
               if sched == "cosine" else torch.optim.lr_scheduler.StepLR(opt, 7, 0.3))
        for step in range(45):
            expected = opt.param_groups[0]["lr"] if step <= 40 or sched == "step" else 0.05
            assert 0.5 * lr_factor(cfg, step) == pytest.approx(expected, rel=1e-9, abs=1e-12)
            opt.step()
            ref.step()
    warm = TrainConfig(warmup_steps=4)
    assert [lr_factor(warm, s) for s in range(6)] == [0.25, 0.5, 0.75, 1.0, 1.0, 1.0]


@pytest.mark.parametrize("name,kw", [("adam", {"weight_decay": 0.01}),
                                     ("sgd", {"momentum": 0.9, "weight_decay": 0.01})])
def test_make_optimizer_is_fused_and_matches_torch_default(name, kw):
    """The trainer's optimizer uses torch's fused kernel on CPU and takes the same steps as
    torch's default (for-each) implementation, to float32 rounding."""
    torch.manual_seed(0)
    start = [torch.randn(7, 5), torch.randn(5)]
    ours = [p.clone().requires_grad_() for p in start]
    ref = [p.clone().requires_grad_() for p in start]
    opt = make_optimizer(ours, name, lr=0.05, **kw)
    cls = torch.optim.Adam if name == "adam" else torch.optim.SGD
    ref_opt = cls(ref, lr=0.05, **kw)
    assert opt.param_groups[0]["fused"] and not ref_opt.param_groups[0]["fused"]
    for _ in range(20):
        grads = [torch.randn_like(p) for p in start]
        for params, o in ((ours, opt), (ref, ref_opt)):
            for p, g in zip(params, grads):
                p.grad = g.clone()
            o.step()
    for a, b in zip(ours, ref):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)
    with pytest.raises(TrainConfigError, match="unknown optimizer"):
        make_optimizer(ours, "rmsprop")


# ----------------------------------------------------------------------------- gradients

@pytest.mark.parametrize("cell", ["rnn", "lstm", "gru"])
def test_window_loss_keeps_only_the_activations_bptt_needs(cell):
    """What a full-BPTT forward leaves allocated for its backward is the minimal bookkeeping
    (``analytic_activation_bytes``: per step and row E + the layer's saved floats + V) to
    within 3%: no transposing copies, no second logits-sized buffer."""
    from benchmarks.measure import memory_profile
    from benchmarks.measure_bptt import analytic_activation_bytes

    B, T, E, H, V_ = 8, 96, 32, 64, 128
    torch.manual_seed(0)
    model = CharRNN(ModelConfig(cell=cell, vocab_size=V_, embedding_dim=E, hidden_size=H,
                                num_layers=1))
    x = torch.randint(4, V_, (B, T))
    y = torch.randint(4, V_, (B, T))
    kept = memory_profile(lambda: window_loss(model, x, y, None), "cpu")["retained_bytes"]
    analytic = analytic_activation_bytes(cell, B, T, E, H, V_)["total_bytes"]
    assert 1.0 <= kept / analytic < 1.03


@pytest.mark.parametrize("cell", ["rnn", "lstm", "gru"])
@pytest.mark.parametrize("engine", ["bptt", "autograd"])
def test_full_bptt_gradient_equals_reference(cell, engine):
    """Padded whole poems, pad excluded: each engine == torch's own kernels + autograd,
    one unpadded poem at a time."""
    model = tiny_model(cell, engine=engine)
    ref = copy_with_engine(model, "native")
    seqs = [[2, 5, 6, 7, 8, 9, 3], [2, 10, 11, 3], [2, 4, 4, 5, 3]]
    batch = D.collate_poems(seqs)
    out = window_loss(model, batch.inputs, batch.targets, None)
    assert out.count == sum(len(s) - 1 for s in seqs)
    got = grads_of(model, lambda: out.loss_sum)

    def reference():
        total = 0.0
        for s in seqs:  # one poem at a time, no padding at all
            x = torch.tensor([s[:-1]])
            logits, _ = ref(x)
            total = total + F.cross_entropy(logits[0], torch.tensor(s[1:]), reduction="sum")
        return total

    assert_grads_close(got, grads_of(ref, reference))


@pytest.mark.parametrize("cell", ["rnn", "lstm", "gru"])
@pytest.mark.parametrize("engine", ["bptt", "autograd"])
def test_truncated_window_gradient_equals_reference(cell, engine):
    """TBPTT(k1=3, k2=7): forward 7 tokens from the detached start state, loss on the last
    3; the carried state is the state after the first 4 tokens. Reference: one plain
    forward with torch's kernels."""
    gen = torch.Generator().manual_seed(1)
    model = tiny_model(cell, engine=engine)
    ref = copy_with_engine(model, "native")
    x = torch.randint(4, V, (3, 7), generator=gen)
    y = torch.randint(4, V, (3, 7), generator=gen)
    state = random_state(model, 3, gen)
    out = window_loss(model, x, y, state, loss_len=3, carry_at=4)
    got = grads_of(model, lambda: out.loss_sum)

    def reference():
        logits, _ = ref(x, state)
        return F.cross_entropy(logits[:, 4:].reshape(-1, V), y[:, 4:].reshape(-1),
                               reduction="sum")

    assert_grads_close(got, grads_of(ref, reference))
    _, expected_carry = ref(x[:, :4], state)
    for a, b in zip(out.carry if cell == "lstm" else (out.carry,),
                    expected_carry if cell == "lstm" else (expected_carry,)):
        torch.testing.assert_close(a, b, atol=1e-12, rtol=0)
        assert not a.requires_grad


def _window_setup(cell="lstm", engine="bptt", batch=2, width=6, seed=2):
    gen = torch.Generator().manual_seed(seed)
    model = tiny_model(cell, engine=engine)
    x = torch.randint(4, V, (batch, width), generator=gen)
    y = torch.randint(4, V, (batch, width), generator=gen)
    return model, x, y, random_state(model, batch, gen)


@pytest.mark.parametrize("cell", ["rnn", "lstm", "gru"])
def test_randomized_window_with_fixed_factors(cell):
    """With xi fixed: all ones == truncated; a factor c on one edge gives
    g_cut + c * (g_full - g_cut) (the gradient is linear in that edge's scale); bptt and
    autograd engines agree on a random draw."""
    model, x, y, state = _window_setup(cell)
    W = x.size(1)
    g_full = grads_of(model, lambda: window_loss(model, x, y, state).loss_sum)
    ones = torch.ones(W, 2, dtype=torch.float64)
    g_ones = grads_of(model, lambda: window_loss(model, x, y, state,
                                                 keep_factors=ones).loss_sum)
    assert_grads_close(g_ones, g_full)

    edge, c = 3, torch.tensor([2.5, 0.0], dtype=torch.float64)  # per row: scale, cut

    def cut_reference():  # the state entering step `edge` detached, row by row
        total = 0.0
        for b in range(2):
            sb = tuple(s[:, b:b + 1] for s in state) if cell == "lstm" else state[:, b:b + 1]
            logits1, mid = model(x[b:b + 1, :edge], sb)
            mid = tuple(m.detach() for m in mid) if cell == "lstm" else mid.detach()
            logits2, _ = model(x[b:b + 1, edge:], mid)
            logits = torch.cat([logits1, logits2], dim=1)
            total = total + F.cross_entropy(logits[0], y[b], reduction="sum")
        return total

    def row_full():
        total = 0.0
        for b in range(2):
            sb = tuple(s[:, b:b + 1] for s in state) if cell == "lstm" else state[:, b:b + 1]
            total = total + window_loss(model, x[b:b + 1], y[b:b + 1], sb).loss_sum * c[b]
        return total

    g_cut = grads_of(model, cut_reference)
    factors = ones.clone()
    factors[edge] = c
    g_scaled = grads_of(model, lambda: window_loss(model, x, y, state,
                                                   keep_factors=factors).loss_sum)
    g_row_full_scaled = grads_of(model, row_full)  # sum_b c_b * g_full_b

    def cut_scaled():
        total = 0.0
        for b in range(2):
            sb = tuple(s[:, b:b + 1] for s in state) if cell == "lstm" else state[:, b:b + 1]
            logits1, mid = model(x[b:b + 1, :edge], sb)
            mid = tuple(m.detach() for m in mid) if cell == "lstm" else mid.detach()
            logits2, _ = model(x[b:b + 1, edge:], mid)
            total = total + F.cross_entropy(torch.cat([logits1, logits2], 1)[0], y[b],
                                            reduction="sum") * c[b]
        return total

    g_cut_scaled = grads_of(model, cut_scaled)  # sum_b c_b * g_cut_b
    expected = {n: g_cut[n] + g_row_full_scaled[n] - g_cut_scaled[n] for n in g_cut}
    assert_grads_close(g_scaled, expected)

    draw = draw_keep_factors(W, 2, 0.6, torch.Generator().manual_seed(5))
    assert (draw == 0).any() and (draw > 1).any()
    other = copy_with_engine(model, "autograd")
    g_bptt = grads_of(model, lambda: window_loss(model, x, y, state,
                                                 keep_factors=draw).loss_sum)
    g_auto = grads_of(other, lambda: window_loss(other, x, y, state,
                                                 keep_factors=draw).loss_sum)
    assert_grads_close(g_bptt, g_auto)


def _randomized_draws(model, x, y, state, keep_prob, draws, rescale=True, seed=0):
    """Per-draw gradients (flattened); each draw averages the rows of the batch."""
    gen = torch.Generator().manual_seed(seed)
    W, B = x.size(1), x.size(0)
    out = []
    for _ in range(draws):
        xi = draw_keep_factors(W, B, keep_prob, gen)
        if not rescale:
            xi = (xi > 0).to(xi.dtype)  # truncation without the 1/p compensation
        g = grads_of(model, lambda: window_loss(model, x, y, state, loss_len=4,
                                                keep_factors=xi).loss_sum / B)
        out.append(torch.cat([v.reshape(-1) for v in g.values()]))
    return torch.stack(out)


def test_randomized_truncation_is_unbiased():
    """Mean of the randomized gradient over many draws == the exact window gradient
    (float64), every coordinate within 4.5 standard errors; without the 1/p compensation
    the same test fails clearly (so it has the power to detect a bias)."""
    model, x0, y0, s0 = _window_setup("lstm", batch=1, width=7, seed=3)
    B = 16  # one sequence, 16 independent xi rows per draw
    x, y = x0.expand(B, -1).contiguous(), y0.expand(B, -1).contiguous()
    state = tuple(s.expand(-1, B, -1).contiguous() for s in s0)
    exact = grads_of(model, lambda: window_loss(model, x, y, state, loss_len=4).loss_sum / B)
    exact = torch.cat([v.reshape(-1) for v in exact.values()])
    draws = _randomized_draws(model, x, y, state, keep_prob=0.5, draws=150)
    mean, se = draws.mean(0), draws.std(0) / math.sqrt(draws.size(0))
    random_part = se > 1e-12
    assert random_part.sum() > 50  # most coordinates really are random
    # coordinates the xi never touch (head, last step's input path) are exact every draw
    torch.testing.assert_close(mean[~random_part], exact[~random_part], atol=1e-12, rtol=0)
    z = (mean - exact)[random_part] / se[random_part]
    assert z.abs().max() < 4.5, float(z.abs().max())
    assert z.pow(2).mean() < 1.5  # chi^2 / dof near 1
    biased = _randomized_draws(model, x, y, state, keep_prob=0.5, draws=150, rescale=False)
    zb = (biased.mean(0) - exact)[random_part] / (biased.std(0) / math.sqrt(150))[random_part]
    assert zb.abs().max() > 8


# ----------------------------------------------------------------------------- training

def make_trainer(prepared, **overrides):
    model_cfg = ModelConfig(cell=overrides.pop("cell", "lstm"), vocab_size=len(prepared.vocab),
                            embedding_dim=8, hidden_size=overrides.pop("hidden", 12),
                            num_layers=2, dropout=overrides.pop("dropout", 0.0))
    kw = dict(strategy="truncated", truncation_len=16, batch_size=4, max_steps=6,
              eval_every=0, device="cpu", seed=3, lr=5e-3)
    kw.update(overrides)
    return Trainer(model_cfg, TrainConfig(**kw), data=prepared)


def losses(result):
    return [r.loss for r in result.history]


@pytest.mark.parametrize("strategy, extra", [
    ("full", {}),
    ("truncated", {"truncation_len": 12, "update_interval": 5}),
    ("randomized", {"truncation_len": 10, "update_interval": 7, "randomized_keep_prob": 0.7}),
])
def test_resume_reproduces_uninterrupted_run(prepared, tmp_path, strategy, extra):
    """2N steps in one go == N steps, checkpoint, resume, N steps (losses and weights),
    with dropout on (RNG states restored) and an epoch boundary crossed."""
    n = 12 if strategy != "full" else 3
    common = dict(strategy=strategy, dropout=0.2, eval_every=4, **extra)
    whole = make_trainer(prepared, max_steps=2 * n, **common)
    full_losses = losses(whole.run())
    assert whole.epoch >= 1  # crossed an epoch (stream rebuilt, state reset)

    first = make_trainer(prepared, max_steps=n, out_dir=str(tmp_path / "run"), **common)
    part1 = losses(first.run())
    resumed = Trainer.resume(tmp_path / "run", {"max_steps": 2 * n}, data=prepared)
    assert resumed.step == n
    part2 = losses(resumed.run())
    assert part1 + part2 == full_losses  # bit-exact
    for a, b in zip(whole.model.state_dict().values(), resumed.model.state_dict().values()):
        assert torch.equal(a, b)


def test_resume_from_a_checkpoint_of_the_old_layout(prepared, tmp_path):
    """Checkpoints written before ``meta["trainer_state"]`` kept it in ``extra.trainer`` (the
    bundled model does): they resume exactly, like the new layout."""
    from rnncore.checkpoint import latest_checkpoint, load_checkpoint, read_meta

    common = dict(strategy="randomized", truncation_len=10, update_interval=7,
                  randomized_keep_prob=0.7, dropout=0.2, eval_every=4)
    full_losses = losses(make_trainer(prepared, max_steps=16, **common).run())
    first = make_trainer(prepared, max_steps=8, out_dir=str(tmp_path / "run"), **common)
    part1 = losses(first.run())
    saved = load_checkpoint(tmp_path / "run").trainer_state
    assert saved.data_config == first.data_config and saved.epoch == first.epoch
    assert (saved.best_val_loss, saved.bad_evals, saved.tokens_seen) == \
        (first.best_val_loss, first.bad_evals, first.tokens_seen)
    ckpt = latest_checkpoint(tmp_path / "run")
    meta = read_meta(ckpt)
    meta["extra"] = {"trainer": meta.pop("trainer_state")}
    (ckpt / "meta.json").write_text(json.dumps(meta))
    resumed = Trainer.resume(tmp_path / "run", {"max_steps": 16}, data=prepared)
    assert (resumed.best_val_loss, resumed.bad_evals, resumed.tokens_seen, resumed.lr_scale,
            resumed.elapsed_before) == (saved.best_val_loss, saved.bad_evals, saved.tokens_seen,
                                        saved.lr_scale, saved.elapsed_s)
    assert part1 + losses(resumed.run()) == full_losses  # bit-exact


def test_step_log_survives_resume(prepared, tmp_path):
    """steps.jsonl holds one line per step, with the pre-clip norm, across a resume."""
    from rnncore.gradflow import load_step_records

    run = tmp_path / "run"
    first = make_trainer(prepared, max_steps=4, out_dir=str(run), clip_norm=0.05)
    recorded = first.run().history
    with open(run / "steps.jsonl", "a") as f:   # a tail no checkpoint kept (as after a kill)
        f.write('{"step": 5, "grad_norm": 1.0, "clipped": true}\n')
    Trainer.resume(run, {"max_steps": 6}, data=prepared).run()
    df = load_step_records(run)
    assert list(df["step"]) == [1, 2, 3, 4, 5, 6]
    assert list(df["grad_norm"])[:4] == [r.grad_norm for r in recorded]
    assert df["clipped"].all()                  # threshold 0.05 is below every norm


def test_resume_refuses_changed_settings(prepared, tmp_path):
    make_trainer(prepared, max_steps=2, out_dir=str(tmp_path / "r")).run()
    with pytest.raises(TrainConfigError, match="cannot change lr"):
        Trainer.resume(tmp_path / "r", {"lr": 1.0}, data=prepared)


def test_nonfinite_gradient_skips_update_and_lowers_lr(prepared):
    trainer = make_trainer(prepared, max_steps=5, clip_norm=1.0)
    weight = trainer.model.head.weight
    calls = {"n": 0}

    def poison(grad):
        calls["n"] += 1
        return grad * float("nan") if calls["n"] == 3 else grad

    weight.register_hook(poison)
    before = {}

    def on_step(rec: StepRecord):
        if rec.step == 2:
            before.update({k: v.clone() for k, v in trainer.model.state_dict().items()})
        if rec.step == 3:
            for k, v in trainer.model.state_dict().items():
                assert torch.equal(v, before[k]), k  # the bad update never happened

    result = trainer.run(callbacks={"on_step": on_step})
    rec = result.history[2]
    assert rec.skipped and "non-finite gradient" in rec.event and "weights untouched" in rec.event
    assert trainer.lr_scale == 0.5
    assert result.history[3].lr == pytest.approx(0.5 * result.history[1].lr)
    assert not any(r.skipped for i, r in enumerate(result.history) if i != 2)
    assert result.nonfinite_steps == 1 and result.stop_reason == "max_steps"


def test_corrupted_weights_are_restored_from_snapshot(prepared):
    trainer = make_trainer(prepared, max_steps=6, snapshot_every=2)
    snap = {}

    def on_step(rec):
        if rec.step == 4:  # snapshot was just taken at step 4
            snap.update({k: v.clone() for k, v in trainer.model.state_dict().items()})
            with torch.no_grad():
                trainer.model.embedding.weight.fill_(float("nan"))

    result = trainer.run(callbacks=[{"on_step": on_step}])
    bad = result.history[4]
    assert bad.skipped and "restored the snapshot of step 4" in bad.event
    assert math.isnan(bad.loss)
    assert all(torch.isfinite(p).all() for p in trainer.model.parameters())
    assert math.isfinite(result.history[5].loss) and not result.history[5].skipped


def test_repeated_nonfinite_stops_as_diverged(prepared):
    trainer = make_trainer(prepared, max_steps=50, max_nonfinite=3)
    trainer.model.head.bias.register_hook(lambda g: g * float("inf"))
    result = trainer.run()
    assert result.stop_reason == "diverged" and result.steps == 3
    assert trainer.lr_scale == 0.125


def test_clipping_records_and_update(prepared):
    """Recorded norm == the raw gradient's global norm (computed independently) and the SGD
    update equals -lr * g * clip / norm."""
    trainer = make_trainer(prepared, strategy="full", optimizer="sgd", lr=0.1, clip_norm=1e-3,
                           max_steps=1)
    start = {k: v.clone() for k, v in trainer.model.named_parameters()}
    ref = copy.deepcopy(trainer.model)
    order = D.epoch_order(len(prepared.train), 3, 0)[:4]
    batch = D.collate_poems([prepared.train[i] for i in order])
    logits, _ = ref(batch.inputs)
    F.cross_entropy(logits.reshape(-1, logits.size(-1)), batch.targets.reshape(-1)).backward()
    grads = {n: p.grad for n, p in ref.named_parameters()}
    norm = torch.sqrt(sum((g.double() ** 2).sum() for g in grads.values()))
    rec = trainer.train_step()
    assert rec.clipped and rec.grad_norm == pytest.approx(float(norm), rel=1e-5)
    for name, p in trainer.model.named_parameters():
        expected = start[name] - 0.1 * grads[name] * (1e-3 / float(norm))
        torch.testing.assert_close(p.detach(), expected, atol=1e-7, rtol=1e-5)
    loose = make_trainer(prepared, clip_norm=1e6, max_steps=2).run()
    assert not any(r.clipped for r in loose.history)
    assert all(r.grad_norm > 0 for r in loose.history)


def test_evaluate_model_matches_per_poem_reference(prepared):
    """Loss per predicted symbol with pad excluded: batched == one poem at a time."""
    torch.manual_seed(0)
    model = CharRNN(ModelConfig(vocab_size=len(prepared.vocab), embedding_dim=6,
                                hidden_size=8, num_layers=1))
    poems = prepared.train[:5]
    poems = [poems[0][:20]] + poems[1:]  # ragged lengths -> padding in the batch
    m = evaluate_model(model, poems, batch_size=3)
    total, count = 0.0, 0
    with torch.no_grad():
        for p in poems:
            logits, _ = model(torch.tensor([p[:-1]]))
            total += float(-torch.log_softmax(logits[0], -1).gather(
                1, torch.tensor(p[1:]).unsqueeze(1)).sum())
            count += len(p) - 1
    assert m["characters"] == count
    assert m["loss"] == pytest.approx(total / count, rel=1e-6)
    assert m["bpc"] == pytest.approx(total / count / math.log(2), rel=1e-6)
    assert m["perplexity"] == pytest.approx(math.exp(total / count), rel=1e-6)


def test_early_stopping(prepared):
    """A learning rate that wrecks the model: validation never improves on its first value
    for `patience` evaluations, so training stops long before max_steps."""
    evals: list[EvalRecord] = []
    trainer = make_trainer(prepared, optimizer="sgd", lr=400.0, clip_norm=0.0, eval_every=1,
                           patience=2, max_steps=40)
    result = trainer.run(callbacks={"on_eval": evals.append})
    assert result.stop_reason == "early_stopping"
    assert result.steps < 40 and trainer.bad_evals == 2
    assert result.best_val_loss == min(e.val_loss for e in evals)
    assert [e.is_best for e in evals[-2:]] == [False, False]


def test_stop_event_and_time_budget(prepared):
    stop = threading.Event()
    trainer = make_trainer(prepared, max_steps=100)
    result = trainer.run(callbacks={"on_step": lambda r: r.step == 3 and stop.set()},
                         stop_event=stop)
    assert result.stop_reason == "stopped" and result.steps == 3
    budget = make_trainer(prepared, max_steps=None, max_minutes=0.0005).run()
    assert budget.stop_reason == "time_budget" and budget.steps >= 1
    assert budget.history[-1].elapsed_s >= 0.0005 * 60 * 0.5


def test_checkpoint_callback_and_cpu_tensors(prepared, tmp_path):
    from rnncore.checkpoint import load_checkpoint

    paths = []
    trainer = make_trainer(prepared, max_steps=4, checkpoint_every=2, keep_last=1,
                           out_dir=str(tmp_path / "run"))
    result = trainer.run(callbacks={"on_checkpoint": paths.append})
    assert [p.split("-")[-1] for p in paths] == ["000002", "000004"]
    ckpt = load_checkpoint(result.checkpoint)
    assert ckpt.step == 4 and ckpt.meta["data_position"]["layout"] == "stream"
    assert all(t.device.type == "cpu" for t in ckpt.model.state_dict().values())
    assert ckpt.meta["train_config"]["strategy"] == "truncated"


def test_step_records_count_characters(prepared):
    """Truncated: each step predicts batch * k1 characters (the last chunk of an epoch may
    be shorter); full: the real targets of the poem batch."""
    res = make_trainer(prepared, truncation_len=8, update_interval=4, max_steps=3).run()
    assert [r.tokens for r in res.history] == [16, 16, 16]
    full = make_trainer(prepared, strategy="full", max_steps=1).run()
    order = D.epoch_order(len(prepared.train), 3, 0)[:4]
    assert full.history[0].tokens == sum(len(prepared.train[i]) - 1 for i in order)


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_gpu_run_resumes_on_cpu(prepared, tmp_path):
    """device="auto" picks CUDA; its checkpoint holds CPU tensors, loads and resumes on CPU."""
    from rnncore.checkpoint import load_checkpoint

    trainer = make_trainer(prepared, device="auto", max_steps=3, out_dir=str(tmp_path / "g"))
    assert trainer.device.type == "cuda"
    trainer.run()
    ckpt = load_checkpoint(tmp_path / "g", map_location="cpu")
    assert all(t.device.type == "cpu" for t in ckpt.model.state_dict().values())
    resumed = Trainer.resume(tmp_path / "g", {"device": "cpu", "max_steps": 5}, data=prepared)
    result = resumed.run()
    assert resumed.device.type == "cpu" and result.steps == 5
    assert all(math.isfinite(r.loss) for r in result.history)
