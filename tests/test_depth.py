"""Depth in three places (rnncore.textbook.depth): the shallow model against torch.nn.RNN,
each deep place against a hand-unrolled loop, the parameter counts, the training budget,
the small live run, the shipped result."""
import json

import pytest
import torch

from rnncore.data import DataConfig, prepare_data
from rnncore.textbook import depth as D
from rnncore.textbook import fit as FIT

V, E, H = 13, 6, 9


def _model(place, hidden=H):
    torch.manual_seed(len(place))
    return D.DeepRNNLM(V, E, hidden, place).double()


def _tokens():
    return torch.randint(0, V, (3, 8), generator=torch.Generator().manual_seed(0))


def test_shallow_equals_torch_nn_rnn():
    m = _model("shallow")
    ref = torch.nn.RNN(E, H, batch_first=True).double()
    with torch.no_grad():
        ref.weight_ih_l0.copy_(m.W.weight)
        ref.bias_ih_l0.copy_(m.W.bias)
        ref.weight_hh_l0.copy_(m.U)
        ref.bias_hh_l0.copy_(m.b_hh)
    x = _tokens()
    out, h = ref(m.embedding(x))
    logits, h_T = m(x)
    assert torch.allclose(logits, m.head(out), atol=1e-12)
    assert torch.allclose(h_T, h[0], atol=1e-12)


def _unrolled(m, tokens):
    """Pascanu et al.'s equations, one step at a time, with the weight matrices."""
    lin = lambda layer, v: v @ layer.weight.t() + layer.bias  # noqa: E731
    h = torch.zeros(tokens.shape[0], m.U.shape[0], dtype=torch.double)
    logits = []
    for t in range(tokens.shape[1]):
        e = m.embedding.weight[tokens[:, t]]
        if m.place == "input":
            e = torch.tanh(lin(m.deep_in, e))
        h = torch.tanh(lin(m.W, e) + h @ m.U.t() + m.b_hh)
        if m.place == "transition":
            h = torch.tanh(lin(m.deep_mid, h))
        o = torch.tanh(lin(m.deep_out, h)) if m.place == "output" else h
        logits.append(lin(m.head, o))
    return torch.stack(logits, 1)


@pytest.mark.parametrize("place", D.PLACES)
def test_every_place_equals_the_unrolled_equations(place):
    m, x = _model(place), _tokens()
    assert torch.allclose(m(x)[0], _unrolled(m, x), atol=1e-12)
    if place == "transition":      # h_(t-1) -> h_t now crosses two tanh layers
        assert m.deep_mid is not None and m.deep_in is None and m.deep_out is None


@pytest.mark.parametrize("place", D.PLACES)
def test_parameter_counts_and_sizes(place):
    for hidden in (1, 9, 64):
        assert D.parameter_count_for(place, V, E, hidden) == FIT.parameter_count(
            _model(place, hidden))
    # the bundled vocabulary, the default sizes: every place within 1% of the reference
    target = D.parameter_count_for("shallow", 4953, 64, 128)
    size = D.size_for(place, 4953, 64, target)
    count = D.parameter_count_for(place, 4953, 64, size)
    assert abs(count / target - 1) < 0.01
    for other in (size - 1, size + 1):        # and no other width is closer
        assert abs(D.parameter_count_for(place, 4953, 64, other) - target) >= abs(
            count - target)


def test_small_live_run_and_round_trip():
    data = prepare_data(DataConfig())
    r = D.measure_depth(D.DepthConfig(places=("shallow", "transition"), steps=2,
                                      hidden_size=16, embedding_dim=8, val_poems=5), data)
    assert [m["place"] for m in r.models] == ["shallow", "transition"]
    assert all(m["fit"]["steps"] == 2 for m in r.models)
    assert r.models[0]["parameters"] == r.reference_parameters
    assert abs(r.models[1]["parameters"] / r.reference_parameters - 1) < 0.02
    assert "bits per character" in r.describe()
    again = D.DepthResult.from_dict(json.loads(json.dumps(r.to_dict())))
    assert again.describe() == r.describe()


def test_shipped_result():
    r = D.load_depth()
    cfg = D.DepthConfig.from_dict(r.config)
    assert r.poems == 362 and cfg.val_poems is None and cfg.places == D.PLACES
    assert "python -m rnncore.textbook.depth" in r.command
    for m in r.models:
        assert m["fit"]["steps"] == cfg.steps
        assert abs(m["parameters"] / r.reference_parameters - 1) < 0.02
        assert 3.0 < m["fit"]["val_bpc"] < 12.5
    assert "shallow (H = 64)" in r.describe()


def test_fit_takes_exactly_the_step_budget():
    data = prepare_data(DataConfig(max_poems=60))
    m = D.DeepRNNLM(len(data.vocab), 4, 8, "shallow")
    rec = FIT.fit(m, data.train, data.val, steps=3, batch_size=8, evals=2)
    assert rec.steps == 3 and [c[0] for c in rec.curve] == [1, 2, 3]
    assert rec.val_bpc == rec.curve[-1][2]


def test_bad_requests(tmp_path, capsys):
    with pytest.raises(D.DepthError, match="place"):
        D.DepthConfig(places=("sideways",))
    with pytest.raises(D.DepthError, match="steps"):
        D.DepthConfig(steps=0)
    with pytest.raises(D.DepthError, match="cannot read"):
        D.load_depth(tmp_path / "missing.json")
    with pytest.raises(FIT.FitError, match="exactly one"):
        FIT.check_budget(None, None)
    assert D.main(["--places", "nowhere"]) == 2
    assert capsys.readouterr().err.startswith("error: ")
