"""Deciding the length (rnncore.textbook.stopping): the three loss terms against a hand
computation, each decoder's stopping rule on a rigged model, the distances, the synthetic
corpus of varied lengths, a small live run, the shipped result."""
import json
import math

import numpy as np
import pytest
import torch

from rnncore.data import IGNORE_INDEX, Vocab, validate_lines
from rnncore.textbook import stopping as S


def test_loss_terms_equal_a_hand_computation():
    """float64, B = 2, T = 3, V = 5, K = 2; row 1 is padded after two targets."""
    gen = torch.Generator().manual_seed(0)
    logits = torch.randn(2, 3, 5, generator=gen, dtype=torch.float64)
    stop = torch.randn(2, 3, generator=gen, dtype=torch.float64)
    length = torch.randn(2, 2, generator=gen, dtype=torch.float64)
    eos = 3
    targets = torch.tensor([[4, 4, eos], [4, eos, IGNORE_INDEX]])
    lines = torch.tensor([4, 2])
    terms = S.stopping_loss(logits, stop, length, targets, lines, eos)
    ce, bce, n = 0.0, 0.0, 0
    for b in range(2):
        for t in range(3):
            y = int(targets[b, t])
            if y == IGNORE_INDEX:
                continue
            row = logits[b, t].tolist()
            ce += math.log(sum(math.exp(v) for v in row)) - row[y]
            s = 1 / (1 + math.exp(-float(stop[b, t])))
            bce -= math.log(s) if y == eos else math.log(1 - s)
            n += 1
    lk = [math.log(sum(math.exp(v) for v in length[b].tolist()))
          - float(length[b, int(lines[b]) // 2 - 1]) for b in range(2)]
    assert float(terms["char"]) == pytest.approx(ce / n, rel=1e-12)
    assert float(terms["stop"]) == pytest.approx(bce / n, rel=1e-12)
    assert float(terms["length"]) == pytest.approx(sum(lk) / 2, rel=1e-12)


def _rigged(vocab, max_lines=8):
    torch.manual_seed(0)
    cfg = S.StoppingConfig(corpus="synthetic", embedding_dim=4, hidden_size=8,
                           max_lines=max_lines)
    return S.StopLM(len(vocab), cfg)


VOCAB = Vocab(list(Vocab.SPECIALS) + list("山水，。"))


def test_length_decoder_writes_exactly_the_drawn_number_of_lines():
    model = _rigged(VOCAB)
    with torch.no_grad():
        model.length.bias[:] = torch.tensor([-50.0, -50.0, 50.0, -50.0])  # always 6 lines
        model.stop.bias.fill_(50.0)  # the other decoders' stop signals are ignored
        _head_bias(model)[VOCAB.eos_id] = 50.0
    texts, cut = S.sample_lengths(model, VOCAB, "length", 20, 400,
                                  torch.Generator().manual_seed(0))
    assert cut == 0 and [S.line_count(t) for t in texts] == [6] * 20
    assert all(t[-1] in "，。" for t in texts)


def _head_bias(model):
    head = model.lm.head
    return next(p for n, p in head.named_parameters() if n.endswith("bias"))


def test_stop_and_eos_decoders_follow_their_unit():
    model = _rigged(VOCAB)
    gen = torch.Generator().manual_seed(0)
    with torch.no_grad():
        model.stop.bias.fill_(50.0)  # always stop: empty poems, no <eos> needed
        _head_bias(model)[VOCAB.eos_id] = -50.0
    texts, cut = S.sample_lengths(model, VOCAB, "stop", 8, 30, gen)
    assert texts == [""] * 8 and cut == 0
    texts, cut = S.sample_lengths(model, VOCAB, "eos", 8, 30, gen)  # <eos> never drawn
    assert cut == 8 and all(len(t) == 30 for t in texts)
    with torch.no_grad():
        model.stop.bias.fill_(-50.0)  # never stop: all cut at the cap
        _head_bias(model)[VOCAB.eos_id] = 50.0
    texts, cut = S.sample_lengths(model, VOCAB, "stop", 8, 30, gen)
    assert cut == 8 and all(len(t) == 30 for t in texts)  # the softmax's <eos> is masked
    texts, cut = S.sample_lengths(model, VOCAB, "eos", 8, 30, gen)
    assert texts == [""] * 8 and cut == 0
    with pytest.raises(S.StoppingError, match="decoder must be one of"):
        S.sample_lengths(model, VOCAB, "beam", 2, 3, gen)


def test_distances_by_hand():
    assert S.wasserstein_1([2, 2], [4, 4]) == pytest.approx(2.0)
    rng = np.random.default_rng(0)
    a, b = rng.integers(2, 30, 200).tolist(), rng.integers(2, 30, 200).tolist()
    # equal sizes: W1 is the mean gap between sorted samples
    assert S.wasserstein_1(a, b) == pytest.approx(np.abs(np.sort(a) - np.sort(b)).mean())
    p, q = S.histogram([2, 2, 4, 6], [2, 4, 6]), S.histogram([4, 4, 4, 6], [2, 4, 6])
    assert p.tolist() == [0.5, 0.25, 0.25] and S.total_variation(p, q) == pytest.approx(0.5)


def test_synthetic_corpus_has_valid_poems_of_varied_lengths():
    poems = S.synthetic_poems(300, seed=1)
    counts = {len(p.lines) for p in poems}
    assert counts == {2, 4, 6, 8, 10, 12, 14, 16}
    assert all(validate_lines(p.lines) is None for p in poems)
    assert S.synthetic_poems(300, seed=1) == poems


def test_small_live_run_on_the_synthetic_corpus():
    cfg = S.StoppingConfig(corpus="synthetic", max_poems=120, epochs=1, embedding_dim=8,
                           hidden_size=16, samples=12, max_lines=16)
    result = S.measure_stopping(cfg)
    assert result.n_train + result.n_test == 120
    assert sorted(result.lines) == ["eos", "held-out", "length", "stop"]
    assert all(len(result.lines[k]) == 12 for k in S.DECODERS)
    # the length decoder never overshoots the largest class
    assert max(result.lines["length"]) <= 16
    assert set(result.history[0]) == {"char", "stop", "length"}
    d = result.distance("length")
    assert 0 <= d["tv"] <= 1 and d["w1"] >= 0
    again = S.StoppingResult.from_dict(json.loads(json.dumps(result.to_dict())))
    assert again.describe() == result.describe()
    assert f"{result.n_test} held-out poems" in result.describe()


def test_shipped_result_loads():
    result = S.load_stopping_result()
    assert result.config["corpus"] == "quantangshi" and result.n_test > 500
    assert result.command.startswith("python -m rnncore.textbook.stopping")
    for k in S.DECODERS:
        assert len(result.lines[k]) == result.config["samples"]
    assert "W1" in result.describe()


def test_bad_requests_are_one_line_errors(tmp_path):
    with pytest.raises(S.StoppingError, match="corpus must be one of"):
        S.StoppingConfig(corpus="tang")
    with pytest.raises(S.StoppingError, match="max_lines must be an even number"):
        S.StoppingConfig(max_lines=7)
    with pytest.raises(S.StoppingError, match="only 4 free-length poems"):
        S.free_length_poems(S.StoppingConfig(corpus="synthetic", max_poems=4))
    (tmp_path / "x.json").write_text("[]")
    with pytest.raises(S.StoppingError, match="cannot read the stopping result"):
        S.load_stopping_result(tmp_path / "x.json")
