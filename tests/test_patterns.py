"""Design patterns 1 and 2 (rnncore.textbook.patterns): pattern 2's forward in both
feedback modes against a hand-unrolled loop over one-hot outputs, the windowed-context loss
against a poem-by-poem recomputation, the small live run, the shipped result."""
import json

import pytest
import torch
import torch.nn.functional as F

from rnncore.data import DataConfig, prepare_data
from rnncore.model import CharRNN, ModelConfig
from rnncore.textbook import fit as FIT
from rnncore.textbook import patterns as P

V, E, H = 11, 5, 7


@pytest.fixture(scope="module")
def data():
    return prepare_data(DataConfig())


def _pattern2(order):
    torch.manual_seed(order)
    return P.OutputRecurrentLM(V, E, H, order).double()


def _reference(model, tokens, feedback):
    """h_t = tanh(U e(x_t) + b + sum_j W_j y_(t-j)), W_j (H, V) times a V-vector: the
    one-hot of x_(t-j+1) (teacher) or softmax(o_(t-j)) (own); zero before the poem."""
    B, T = tokens.shape
    Ws = [t.weight.t() for t in model.W]                        # (H, V) each
    outs = []
    for t in range(T):
        a = model.embedding(tokens[:, t]) @ model.U.weight.t() + model.U.bias
        for j, W in enumerate(Ws, start=1):
            if t - j < 0:
                continue
            y = (F.one_hot(tokens[:, t - j + 1], V).double() if feedback == "teacher"
                 else torch.softmax(outs[t - j], -1))
            a = a + y @ W.t()
        outs.append(torch.tanh(a) @ model.head.weight.t() + model.head.bias)
    return torch.stack(outs, 1)


@pytest.mark.parametrize("order", [1, 3])
@pytest.mark.parametrize("feedback", ["teacher", "own"])
def test_pattern2_forward_equals_the_unrolled_loop(order, feedback):
    model = _pattern2(order)
    tokens = torch.randint(0, V, (4, 9), generator=torch.Generator().manual_seed(1))
    got = model(tokens, feedback=feedback)[0]
    assert torch.allclose(got, _reference(model, tokens, feedback), atol=1e-12)


def test_teacher_forced_pattern2_reads_a_window_of_k_true_characters():
    """Under teacher forcing, step t depends on x_(t-k+1) .. x_t and on nothing older:
    since y_(t-1) = x_t the fed-back outputs are the last k inputs."""
    k, model = 3, _pattern2(3)
    tokens = torch.randint(4, V, (1, 10), generator=torch.Generator().manual_seed(2))
    base = model(tokens)[0][0, 7]
    for s, changes in [(4, False), (5, True), (7, True)]:   # 7 - k + 1 = 5
        other = tokens.clone()
        other[0, s] = 4 + (int(tokens[0, s]) - 3) % (V - 4)
        assert (not torch.allclose(model(other)[0][0, 7], base)) == changes, s


def test_context_bits_equal_a_poem_by_poem_recomputation():
    torch.manual_seed(0)
    rnn = CharRNN(ModelConfig(cell="rnn", vocab_size=V, embedding_dim=E, hidden_size=H,
                              num_layers=1)).double().eval()
    gen = torch.Generator().manual_seed(3)
    poems = [[2] + torch.randint(4, V, (n,), generator=gen).tolist() + [3]
             for n in (9, 6, 12)]
    contexts = (1, 2, 4, 20)
    got, full = P.context_bits(rnn, poems, contexts, chunk=5)
    want, total = {c: 0.0 for c in contexts}, 0
    full_sum = 0.0
    with torch.no_grad():
        for p in poems:
            for t in range(len(p) - 1):
                def bits(hist):
                    logp = F.log_softmax(rnn(torch.tensor([hist]))[0][0, -1], -1)
                    return -float(logp[p[t + 1]]) / FIT.LN2
                full_sum += bits(p[:t + 1])
                for c in contexts:          # the start token, then the last c inputs
                    want[c] += bits(p[:t + 1] if t <= c else [p[0]] + p[t - c + 1:t + 1])
            total += len(p) - 1
    assert full == pytest.approx(full_sum / total, abs=1e-9)
    for c in contexts:
        assert got[c] == pytest.approx(want[c] / total, abs=1e-9), c
    assert got[20] == pytest.approx(full, abs=1e-12)          # longer than every poem
    # pattern 2 with window k: exactly the whole-poem loss from c = k on
    p2 = _pattern2(2)
    got2, full2 = P.context_bits(p2, poems, (1, 2, 3))
    assert got2[2] == pytest.approx(full2, abs=1e-12) == got2[3]
    assert got2[1] != pytest.approx(full2, abs=1e-6)
    assert P.usable_history(got2, full2, 1e-9) == 2


def test_usable_history():
    assert P.usable_history({1: 3.0, 2: 2.5, 4: 2.01, 8: 2.0}, 2.0, 0.02) == 4
    assert P.usable_history({1: 2.0, 2: 2.5, 4: 2.01, 8: 2.0}, 2.0, 0.02) == 4
    assert P.usable_history({1: 1.9, 2: 2.0}, 2.0, 0.02) == 2     # "better" is not usable
    assert P.usable_history({1: 3.0, 2: 2.5}, 2.0, 0.02) is None


def test_small_live_run_and_round_trip(data):
    cfg = P.PatternsConfig(seconds=1.0, orders=(1,), val_poems=6, contexts=(1, 2, 4),
                           hidden_size=16, embedding_dim=8)
    r = P.measure_patterns(cfg, data=data)
    assert [m["name"] for m in r.models] == ["pattern 1", "pattern 2, k=1"]
    for m in r.models:
        assert m["fit"]["cpu_seconds"] >= 1.0 and m["fit"]["steps"] >= 1
        assert set(m["context"]) == {1, 2, 4}
        assert m["fit"]["val_bpc"] == pytest.approx(m["full_bits"], rel=1e-4)
    p2 = r.model("pattern 2, k=1")
    assert p2["usable"] == 1 and p2["own_bpc"] is not None
    assert "pattern 1, the tanh RNN" in r.describe() and "k = 1" in r.describe()
    again = P.PatternsResult.from_dict(json.loads(json.dumps(r.to_dict())))
    assert again.describe() == r.describe()


def test_shipped_result():
    r = P.load_patterns()
    cfg = P.PatternsConfig.from_dict(r.config)
    assert r.poems == 362 and cfg.val_poems is None
    assert "python -m rnncore.textbook.patterns" in r.command
    names = [m["name"] for m in r.models]
    assert names[0] == "pattern 1" and all(n.startswith("pattern 2") for n in names[1:])
    for m in r.models:                      # the same CPU budget for every model
        assert cfg.seconds <= m["fit"]["cpu_seconds"] < cfg.seconds + 5
    for m in r.models[1:]:                  # a k-window cannot use more than k characters
        assert m["usable"] is not None and m["usable"] <= m["order"]
        assert m["context"][max(m["context"])] == pytest.approx(m["full_bits"], abs=1e-5)
    assert "bits per character" in r.describe()


def test_bad_requests(tmp_path, capsys):
    with pytest.raises(P.PatternsError, match="seconds"):
        P.PatternsConfig(seconds=0)
    with pytest.raises(P.PatternsError, match="orders"):
        P.PatternsConfig(orders=(0,))
    with pytest.raises(P.PatternsError, match="order"):
        P.OutputRecurrentLM(V, E, H, 0)
    with pytest.raises(P.PatternsError, match="feedback"):
        _pattern2(1)(torch.zeros(1, 2, dtype=torch.long), feedback="oracle")
    with pytest.raises(P.PatternsError, match="cannot read"):
        P.load_patterns(tmp_path / "missing.json")
    with pytest.raises(FIT.FitError, match="exactly one"):
        FIT.check_budget(3, 2.0)
    assert P.main(["--seconds", "-1"]) == 2
    assert capsys.readouterr().err.startswith("error: ")
