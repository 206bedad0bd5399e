"""The poem start state (rnncore.trainer.start_state, CharRNN.set_start_state): estimated
from the training poems, saved with the weights, used by evaluation and generation; checked
against per-poem references computed by hand."""
import math

import pytest
import torch
import torch.nn.functional as F

from rnncore import data as D
from rnncore.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from rnncore.generate.stepper import _LSTMStepper, _ModelEngine
from rnncore.model import CharRNN, ModelConfig
from rnncore.trainer import TrainConfig, Trainer, estimate_start_state, evaluate_model

VOCAB = D.Vocab.build(["床前明月光，疑是地上霜。舉頭望明月，低頭思故鄉。春眠不覺曉，處處聞啼鳥。"])
POEMS = [VOCAB.encode_poem(t) for t in
         ("床前明月光，疑是地上霜。", "舉頭望明月，", "低頭思故鄉。春眠不覺曉，", "處處聞啼鳥。",
          "春眠不覺曉，處處聞啼鳥。", "明月光，")]


def model_of(cell: str, hidden: int = 64, seed: int = 0) -> CharRNN:
    torch.manual_seed(seed)
    return CharRNN(ModelConfig(cell=cell, vocab_size=len(VOCAB), embedding_dim=6,
                               hidden_size=hidden, num_layers=2)).eval()


@pytest.mark.parametrize("cell", ["rnn", "lstm", "gru"])
def test_estimate_is_the_mean_final_state_of_the_sampled_poems(cell):
    model = model_of(cell, hidden=9).double()
    got = estimate_start_state(model, POEMS, num=len(POEMS))
    finals = [model(torch.tensor([p]))[1] for p in POEMS]    # one poem at a time, no padding
    if cell == "lstm":
        for part in range(2):
            want = torch.stack([f[part] for f in finals]).mean(0)
            torch.testing.assert_close(got[part].double(), want, atol=1e-6, rtol=0)
    else:
        torch.testing.assert_close(got.double(), torch.stack(finals).mean(0), atol=1e-6, rtol=0)
    # a seeded sample: the same draw twice, another seed another draw
    def h_of(state):
        return state[0] if isinstance(state, tuple) else state

    two = h_of(estimate_start_state(model, POEMS, num=2, seed=1))
    assert torch.equal(two, h_of(estimate_start_state(model, POEMS, num=2, seed=1)))
    assert any(not torch.equal(two, h_of(estimate_start_state(model, POEMS, num=2, seed=s)))
               for s in range(2, 6))
    assert estimate_start_state(model, []) is None


@pytest.mark.parametrize("from_start", [True, False])
def test_evaluation_reads_every_poem_from_the_start_state(from_start):
    model = model_of("lstm", hidden=9)
    state = estimate_start_state(model, POEMS)
    model.set_start_state(state)
    nats, count = 0.0, 0
    with torch.no_grad():
        for p in POEMS:                                       # by hand, one poem at a time
            logits, _ = model(torch.tensor([p[:-1]]), state if from_start else None)
            nats += float(F.cross_entropy(logits[0], torch.tensor(p[1:]), reduction="sum"))
            count += len(p) - 1
    got = evaluate_model(model, POEMS, batch_size=4, from_start_state=from_start)
    assert got["characters"] == count
    assert math.isclose(got["bpc"], nats / count / math.log(2), rel_tol=1e-5)
    model.set_start_state(None)
    zero = evaluate_model(model, POEMS, batch_size=4)
    assert (zero["bpc"] == got["bpc"]) is (not from_start)


@pytest.mark.parametrize("cell", ["gru", "lstm"])
def test_the_start_state_is_saved_and_loaded_with_the_weights(tmp_path, cell):
    model = model_of(cell)
    save_checkpoint(tmp_path / "zero", model, VOCAB, model.cfg)
    assert load_checkpoint(tmp_path / "zero").model.poem_start_state(2) is None
    model.set_start_state(estimate_start_state(model, POEMS))
    save_checkpoint(tmp_path / "set", model, VOCAB, model.cfg)
    back = load_checkpoint(tmp_path / "set").model
    want, got = model.poem_start_state(3), back.poem_start_state(3)
    for w, g in zip(*(x if isinstance(x, tuple) else (x,) for x in (want, got))):
        assert g.shape == (2, 3, 64) and torch.equal(w, g)
    fresh = model_of(cell)                     # a model without one takes it, and drops it
    fresh.load_state_dict(back.state_dict())
    assert torch.equal(fresh.start_h, back.start_h)
    fresh.load_state_dict(model_of(cell).state_dict())
    assert fresh.start_h is None


def test_a_start_state_of_the_wrong_shape_is_refused(tmp_path):
    model = model_of("lstm")
    model.set_start_state((torch.zeros(2, 1, 5), torch.zeros(2, 1, 5)))
    save_checkpoint(tmp_path / "bad", model, VOCAB, model.cfg)
    with pytest.raises(CheckpointError, match="start_[hc] has shape"):
        load_checkpoint(tmp_path / "bad")


def test_generation_starts_from_it():
    """Both decoding engines feed the priming tokens from the start state: their state
    after the start token equals the model's own forward from it."""
    model = model_of("lstm")
    model.set_start_state(estimate_start_state(model, POEMS))
    ids = [VOCAB.bos_id]
    with torch.no_grad():
        _, (h, c) = model(torch.tensor([ids]), model.poem_start_state(1))
        _, (h0, _) = model(torch.tensor([ids]))
    for engine in (_ModelEngine(model), _LSTMStepper(model)):
        _, (hs, cs) = engine.start(ids, 2)
        hs = torch.stack(hs) if isinstance(hs, list) else hs        # (L, rows, H)
        cs = torch.stack(cs) if isinstance(cs, list) else cs
        for row in range(2):
            torch.testing.assert_close(hs[:, row], h[:, 0], atol=1e-5, rtol=0)
            torch.testing.assert_close(cs[:, row], c[:, 0], atol=1e-5, rtol=0)
        assert not torch.allclose(hs[:, 0], h0[:, 0], atol=1e-3)


@pytest.mark.parametrize("strategy,has_one", [("truncated", True), ("full", False)])
def test_the_trainer_estimates_it_when_it_trains_on_a_stream(tmp_path, strategy, has_one):
    prepared = D.prepare_data(D.DataConfig(max_poems=8, val_fraction=0.125))
    cfg = ModelConfig(cell="lstm", vocab_size=len(prepared.vocab), embedding_dim=8,
                      hidden_size=12, num_layers=2)
    trainer = Trainer(cfg, TrainConfig(strategy=strategy, truncation_len=16, batch_size=4,
                                       max_steps=3, eval_every=0, device="cpu", seed=3,
                                       out_dir=str(tmp_path / "run")), data=prepared)
    result = trainer.run()
    assert (trainer.model.start_h is not None) is has_one
    saved = load_checkpoint(result.checkpoint).model
    assert (saved.start_h is not None) is has_one
    assert math.isclose(evaluate_model(saved, prepared.val)["bpc"], result.final_eval.val_bpc,
                        rel_tol=1e-6)


def test_the_bundled_model_reads_held_out_poems_from_its_start_state():
    """The shipped model was trained on a stream of poems: from its start state the 362
    held-out 七律 cost at most 6.9 bits per character, from zeros over 7.3."""
    from rnncore.generate import load_default_model
    from rnncore.trainer import evaluate_by_form

    ck = load_default_model()
    model, vocab = ck.model, ck.vocab
    held = D.bundled_held_out()
    assert len(held) == 362
    with_start = evaluate_by_form(model, vocab, held)["qilv"]["bpc"]
    encoded = [vocab.encode_poem(p.text, p.form) for p in held]
    zero = evaluate_model(model, encoded, from_start_state=False)["bpc"]
    assert with_start <= 6.9 < 7.3 < zero
