"""Output heads (rnncore.heads): the adaptive softmax against its formula written out here
and against autograd through its own full distribution; the model, evaluation,
checkpoints, training and generation with either head."""
from __future__ import annotations

import json
import math

import pytest
import torch
import torch.nn.functional as F

from rnncore import data as D
from rnncore.checkpoint import load_checkpoint, save_checkpoint
from rnncore.generate import GenerationConfig, generate
from rnncore.generate.stepper import _LSTMStepper
from rnncore.heads import AdaptiveHead, FullHead, clamp_cutoffs
from rnncore.model import CharRNN, ModelConfig, ModelConfigError
from rnncore.trainer import TrainConfig, Trainer, evaluate_model, window_loss

IGNORE = D.IGNORE_INDEX


def _adaptive(H=16, V=50, cutoffs=(10, 30), div=2.0, seed=0):
    torch.manual_seed(seed)
    return AdaptiveHead(H, V, cutoffs, div).double()


@pytest.mark.parametrize("H, V, cutoffs, div", [(16, 50, (10, 30), 2.0),
                                                 (64, 200, (20, 60, 120), 4.0),
                                                 (8, 40, (39,), 1.0)])
def test_adaptive_log_prob_is_the_formula_and_normalizes(H, V, cutoffs, div):
    """log p(v) = s[v] (shortlist), s[c_0 + i] + log_softmax(U_i P_i x)[v - c_{i-1}]
    (cluster i), s = log_softmax(W_h x + b_h), from the weights by name."""
    head = _adaptive(H, V, cutoffs, div)
    w = head.state_dict()
    x = torch.randn(37, H, dtype=torch.float64)
    s = torch.log_softmax(x @ w["head.weight"].T + w["head.bias"], -1)
    bounds = (*cutoffs, V)
    want = [s[:, :cutoffs[0]]]
    for i in range(len(cutoffs)):
        d = int(H // div ** (i + 1))
        assert w[f"tail.{i}.0.weight"].shape == (d, H)
        assert w[f"tail.{i}.1.weight"].shape == (bounds[i + 1] - bounds[i], d)
        z = x @ w[f"tail.{i}.0.weight"].T @ w[f"tail.{i}.1.weight"].T
        want.append(torch.log_softmax(z, -1) + s[:, cutoffs[0] + i, None])
    logp = head.log_prob(x)
    assert logp.shape == (37, V)
    torch.testing.assert_close(logp, torch.cat(want, 1), rtol=0, atol=1e-12)
    torch.testing.assert_close(logp.logsumexp(1), torch.zeros(37, dtype=torch.float64),
                               rtol=0, atol=1e-12)
    # the module call is log_prob over any leading shape (the model's "logits")
    torch.testing.assert_close(head(x.view(1, 37, H))[0], logp)


def test_adaptive_loss_sum_and_gradient_equal_log_prob_gathered():
    """loss_sum = -sum log_prob[y] over non-ignored rows, and its gradients (input and
    every parameter) equal autograd's through the full (N, V) log_prob."""
    head = _adaptive(V=60, cutoffs=(8, 25))
    x = torch.randn(50, 16, dtype=torch.float64, requires_grad=True)
    y = torch.randint(0, 60, (50,))
    y[::7] = IGNORE
    y[:3] = torch.tensor([0, 7, 59])  # both ends of the shortlist and the last cluster
    keep = y != IGNORE

    def reference():
        return -head.log_prob(x)[keep].gather(1, y[keep, None]).sum()

    def grads(fn):
        head.zero_grad(set_to_none=True)
        x.grad = None
        loss = fn()
        loss.backward()
        return loss.detach(), [x.grad.clone()] + [p.grad.clone() for p in head.parameters()]

    loss, g = grads(lambda: head.loss_sum(x, y))
    loss_ref, g_ref = grads(reference)
    torch.testing.assert_close(loss, loss_ref, rtol=1e-13, atol=0)
    for a, b in zip(g, g_ref):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12)
    # every target ignored: zero loss
    with torch.no_grad():
        assert float(head.loss_sum(x, torch.full((50,), IGNORE))) == 0.0


def test_adaptive_refuses_out_of_range_targets():
    head = _adaptive()
    x = torch.randn(3, 16, dtype=torch.float64)
    for bad in (50, 51, -1):
        with pytest.raises(RuntimeError, match="Target values"):
            head.loss_sum(x, torch.tensor([0, bad, 3]))


def test_cutoffs_are_clamped_to_the_vocab():
    assert clamp_cutoffs((1000, 3000), 4953) == (1000, 3000)
    assert clamp_cutoffs((1000, 3000), 2000) == (1000,)
    assert clamp_cutoffs((1000, 3000), 500) == (250,)  # none left: the rarer half
    head = AdaptiveHead(8, 500, (1000, 3000)).double()
    assert head.cutoffs == [250, 500] and len(head.tail) == 1


def test_full_head_is_the_linear_softmax():
    torch.manual_seed(0)
    head = FullHead(8, 30).double()
    assert isinstance(head, torch.nn.Linear)
    x = torch.randn(9, 8, dtype=torch.float64)
    y = torch.randint(0, 30, (9,))
    y[2] = IGNORE
    torch.testing.assert_close(head.log_prob(x), torch.log_softmax(x @ head.weight.T
                                                                   + head.bias, -1))
    torch.testing.assert_close(head.loss_sum(x, y), F.cross_entropy(
        head(x), y, ignore_index=IGNORE, reduction="sum"))


# ----------------------------------------------------------------------------- the model

def test_config_head_fields_and_old_configs():
    old = ModelConfig(vocab_size=40).to_dict()
    for name in ("head", "head_cutoffs", "head_div_value"):
        old.pop(name)
    cfg = ModelConfig.from_dict(old)  # a checkpoint from before the head fields
    assert cfg.head == "full"
    assert [n for n, _ in CharRNN(cfg).head.named_parameters()] == ["weight", "bias"]
    ada = ModelConfig(vocab_size=40, head="adaptive", head_cutoffs=[10, 20])
    assert ada.head_cutoffs == (10, 20)
    assert ModelConfig.from_dict(ada.to_dict()) == ada
    for bad in ({"head": "hierarchical"}, {"head_cutoffs": (20, 10)}, {"head_cutoffs": ()},
                {"head_cutoffs": (2, 10)}, {"head_cutoffs": "10"},
                {"head_div_value": 0.5}):
        with pytest.raises(ModelConfigError):
            ModelConfig(vocab_size=40, **bad)


@pytest.fixture(scope="module")
def prepared():
    return D.prepare_data(D.DataConfig(max_poems=60, val_fraction=0.2))


def _model(vocab_size, head="adaptive", seed=0, layers=1, hidden=24):
    torch.manual_seed(seed)
    return CharRNN(ModelConfig(vocab_size=vocab_size, embedding_dim=16, hidden_size=hidden,
                               num_layers=layers, head=head, head_cutoffs=(30, 120)))


@pytest.mark.parametrize("head", ["full", "adaptive"])
def test_bpc_and_window_loss_are_the_full_vocabulary_computation(prepared, head):
    """evaluate_model's bpc (float64) and window_loss's sum equal -sum log p[y] from the
    head's full (N, V) log_prob, computed here from the layer's outputs."""
    V = len(prepared.vocab)
    model = _model(V, head, layers=2).double().eval()
    total, count = 0.0, 0
    for batch in D.poem_batches(prepared.val, 16, shuffle=False):
        with torch.no_grad():
            out, _ = model.rnn(model.embedding(batch.inputs))
            logp = model.head.log_prob(out.reshape(-1, out.shape[-1]))
        y = batch.targets.reshape(-1)
        keep = y != IGNORE
        total -= float(logp[keep].gather(1, y[keep, None]).sum())
        count += int(keep.sum())
        win = window_loss(model, batch.inputs, batch.targets, None)
        assert float(win.loss_sum.detach()) == pytest.approx(
            -float(logp[keep].gather(1, y[keep, None]).sum()), rel=1e-12)
    metrics = evaluate_model(model, prepared.val, batch_size=16)
    assert metrics["characters"] == count
    assert abs(metrics["bpc"] - total / count / math.log(2)) < 1e-6


def test_checkpoint_round_trip_with_the_adaptive_head(prepared, tmp_path):
    model = _model(len(prepared.vocab)).eval()
    save_checkpoint(tmp_path / "ck", model, prepared.vocab, model.cfg)
    back = load_checkpoint(tmp_path / "ck", load_optimizer=False)
    assert back.model_config == model.cfg and isinstance(back.model.head, AdaptiveHead)
    x = torch.tensor([[prepared.vocab.bos_id, 9, 40, 200]])
    torch.testing.assert_close(back.model.eval()(x)[0], model(x)[0])


def test_training_with_the_adaptive_head_lowers_held_out_loss(prepared):
    cfg = ModelConfig(vocab_size=len(prepared.vocab), embedding_dim=16, hidden_size=32,
                      num_layers=1, head="adaptive", head_cutoffs=(30, 120))
    trainer = Trainer(cfg, TrainConfig(strategy="truncated", truncation_len=16, batch_size=8,
                                       max_steps=60, eval_every=0, device="cpu", seed=0,
                                       lr=1e-2), data=prepared)
    before = evaluate_model(trainer.model, prepared.val)["loss"]
    trainer.run()
    after = evaluate_model(trainer.model, prepared.val)["loss"]
    assert after < before - 0.5, (before, after)


@pytest.mark.parametrize("opts", [{"rhyme": True, "tones": True, "num": 2},
                                  {"rhyme": True, "tones": True, "strategy": "beam",
                                   "beam_width": 3}])
def test_generation_with_the_adaptive_head(opts):
    """Constraints hold and the reported log-probs are the model's exact ones (teacher
    forcing over the poem, through the fused LSTM stepper with the adaptive head)."""
    corpus = D.load_corpus("tang")
    vocab = D.Vocab.build(p.text for p in corpus.poems[:400])
    model = _model(len(vocab), seed=2).eval()
    assert _LSTMStepper.supports(model)
    poems = generate(model, vocab, GenerationConfig(form="qijue", seed=1, **opts))
    for poem in poems:
        assert poem.metrics["form_valid"] and poem.metrics["rhyme_valid"], poem.text
        assert poem.metrics["tone_match"] == 1.0, poem.text
        ids = [vocab.bos_id] + [vocab.stoi[c] for c in poem.chars]
        with torch.no_grad():
            logp, _ = model(torch.tensor([ids[:-1]]))
        want = logp[0].double().gather(1, torch.tensor(ids[1:])[:, None])[:, 0]
        assert poem.logprobs == pytest.approx(want.tolist(), abs=1e-4)


def test_head_measurement_runs_at_tiny_size(tmp_path):
    """benchmarks/measure_head.py end to end at tiny sizes: both heads timed per V, the
    parts are the step, and both trained at once and scored."""
    from benchmarks import measure_head as mh

    assert mh.main(["--quick", "--seconds", "1", "--repeats", "1", "--out", str(tmp_path)]) == 0
    result = json.loads((tmp_path / "head.json").read_text())
    steps = {(r["vocab_size"], r["head"]): r for r in result["steps"]}
    assert {h for _, h in steps} == set(mh.HEADS) and len(steps) == 4
    for (V, head), r in steps.items():
        assert r["step_s"] > 0 and r["head_s"] > 0 and r["grad_relative_error"] < 1e-5
        assert steps[(V, "full")]["speedup"] == 1.0
    assert [q["head"] for q in result["quality"]] == list(mh.HEADS)
    assert all(q["steps"] > 0 and math.isfinite(q["val_bpc"]) for q in result["quality"])
    assert "speed-up vs full" in (tmp_path / "head.md").read_text()


@pytest.mark.parametrize("hidden, fp16_values", [(24, False), (64, False), (64, True)])
def test_decoder_step_buffers_and_adaptive_head_keep_the_bits(hidden, fp16_values):
    """The decoder's adaptive head is torch's ``log_prob`` op for op, and its LSTM step with
    reused buffers (H a multiple of 64) is the plain fused step: equal bit for bit, for one
    row and several, float16-packed weights or not."""
    model = _model(300, layers=2, hidden=hidden, seed=3).eval()
    if fp16_values:
        with torch.no_grad():
            for p in model.parameters():
                p.copy_(p.half().float())
    fast, plain = _LSTMStepper(model), _LSTMStepper(model)
    assert (fast.scratch is not None) == (hidden % 64 == 0)
    plain.scratch = None
    with torch.no_grad():
        for rows in (1, 3):
            top = torch.randn(rows, hidden)
            assert torch.equal(fast.head(top), model.head(top))
            zero = [torch.zeros(rows, hidden)] * 2
            a = b = (zero, zero)
            for tokens in torch.randint(4, 300, (4, rows)):
                top_a, a = fast.advance(tokens, a)
                top_b, b = plain.advance(tokens, b)
                assert torch.equal(top_a, top_b)
                assert all(torch.equal(x, y) for x, y in zip(a[0] + a[1], b[0] + b[1]))
                assert torch.equal(fast.head(top_a), model.head(top_b))
