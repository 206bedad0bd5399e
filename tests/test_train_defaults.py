"""What new runs default to: the "auto" head (adaptive from AUTO_ADAPTIVE_MIN_VOCAB characters
on, saved as the head it chose; old checkpoints stay full), and a time budget that counts
training only (evaluation and checkpoints are not training)."""
from __future__ import annotations

import json
import time

import pytest

from cli_helpers import TINY, run_cli
from rnncore import data as D
from rnncore.kinds import AUTO_ADAPTIVE_MIN_VOCAB, DEFAULT_HEAD, resolve_head
from rnncore.model import CharRNN, ModelConfig, parameter_shapes
from rnncore.trainer import TrainConfig, Trainer


def test_auto_head_rule():
    n = AUTO_ADAPTIVE_MIN_VOCAB
    assert DEFAULT_HEAD == "auto"
    assert [resolve_head("auto", v) for v in (5, n - 1, n, 4953)] == \
        ["full", "full", "adaptive", "adaptive"]
    assert [resolve_head(h, 4953) for h in ("full", "adaptive")] == ["full", "adaptive"]
    assert [resolve_head(h, 10) for h in ("full", "adaptive")] == ["full", "adaptive"]
    with pytest.raises(ValueError, match="unknown head"):
        resolve_head("hierarchical", 10)
    assert ModelConfig(vocab_size=9).head == "full"  # no head field in a checkpoint: full
    for v, kind in ((n - 1, "full"), (n, "adaptive")):
        cfg = ModelConfig(vocab_size=v, head="auto", embedding_dim=4, hidden_size=8,
                          num_layers=1)
        made = {k: tuple(p.shape) for k, p in CharRNN(cfg).state_dict().items()}
        assert made == parameter_shapes(cfg)
        assert made == parameter_shapes(ModelConfig(**{**cfg.to_dict(), "head": kind}))


def _trainer(data, **train):
    cfg = ModelConfig(vocab_size=5, head="auto", embedding_dim=4, hidden_size=8, num_layers=1)
    kw = dict(batch_size=2, truncation_len=8, max_steps=1, eval_every=0, device="cpu")
    return Trainer(cfg, TrainConfig(**{**kw, **train}), data=data)


def test_trainer_saves_the_head_auto_chose(tmp_path):
    from rnncore.checkpoint import load_checkpoint

    small = D.prepare_data(D.DataConfig(max_poems=8, val_fraction=0.25))
    large = D.prepare_data(D.DataConfig(max_poems=400))
    assert len(small.vocab) < AUTO_ADAPTIVE_MIN_VOCAB <= len(large.vocab)
    for data, kind in ((small, "full"), (large, "adaptive")):
        trainer = _trainer(data, out_dir=str(tmp_path / kind))
        assert trainer.model_config.head == kind
        trainer.run()
        assert load_checkpoint(tmp_path / kind).model_config.head == kind


def test_cli_defaults_to_auto(capsys, tmp_path):
    from rnncore.checkpoint import load_checkpoint

    code, out, _ = run_cli(capsys, "train", *TINY, "--max-steps", "1", "--out",
                           str(tmp_path / "run"), "--json")
    assert code == 0
    ck = load_checkpoint(tmp_path / "run")
    assert ck.model_config.head == resolve_head("auto", len(ck.vocab)) == "full"
    code, out, _ = run_cli(capsys, "train", *TINY, "--max-steps", "1", "--head", "adaptive",
                           "--out", str(tmp_path / "ada"), "--json")
    assert code == 0 and load_checkpoint(tmp_path / "ada").model_config.head == "adaptive"
    assert [e["step"] for e in json.loads(out)["evals"]] == [1]  # the curve is in the summary


def test_time_budget_counts_training_only(monkeypatch):
    """Each evaluation sleeps 0.3 s and each checkpoint 0.2 s: a 0.6 s budget still trains
    0.6 s, and the wall clock holds the training plus all of that."""
    data = D.prepare_data(D.DataConfig(max_poems=8, val_fraction=0.25))
    trainer = _trainer(data, max_steps=None, max_minutes=0.01, eval_every=1)
    slept = []
    evaluate = trainer.evaluate

    def slow_evaluate():
        time.sleep(0.3)
        slept.append(0.3)
        return evaluate()

    def slow_save():
        time.sleep(0.2)
        slept.append(0.2)

    monkeypatch.setattr(trainer, "evaluate", slow_evaluate)
    monkeypatch.setattr(trainer, "save_checkpoint", slow_save)
    monkeypatch.setattr(trainer, "_checkpoint_due", lambda: True)
    t0 = time.perf_counter()
    result = trainer.run()
    wall = time.perf_counter() - t0
    assert result.stop_reason == "time_budget" and len(slept) >= 4
    assert 0.6 <= result.elapsed_s < 0.6 + 1.0
    assert wall >= result.elapsed_s + sum(slept)  # the untimed work was not counted
    assert trainer.state.elapsed_s == pytest.approx(result.elapsed_s)
    evals = [e.elapsed_s for e in result.evals]
    assert evals == sorted(evals) and evals[-1] == pytest.approx(result.elapsed_s, abs=0.05)
    assert result.tokens_per_s == pytest.approx(
        sum(r.tokens for r in result.history) / result.elapsed_s)
