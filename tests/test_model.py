"""CharRNN and ModelConfig (rnncore/model.py), checked against a torch.nn reference."""
from __future__ import annotations

import pytest
import torch
from torch import nn

from rnncore.model import CELLS, ENGINES, CharRNN, ModelConfig, detach_state

V, E, H, L = 11, 6, 8, 2


def make(cell="lstm", engine="bptt", **kw):
    torch.manual_seed(0)
    return CharRNN(ModelConfig(cell=cell, vocab_size=V, embedding_dim=E, hidden_size=H,
                               num_layers=L, engine=engine, **kw))


def reference_logits(model: CharRNN, tokens: torch.Tensor) -> torch.Tensor:
    """The same network assembled from torch.nn modules with the model's weights."""
    cls = {"rnn": nn.RNN, "lstm": nn.LSTM, "gru": nn.GRU}[model.cfg.cell]
    rnn = cls(E, H, num_layers=L, batch_first=True)
    rnn.load_state_dict(model.rnn.state_dict())
    out, _ = rnn(nn.functional.embedding(tokens, model.embedding.weight))
    return nn.functional.linear(out, model.head.weight, model.head.bias)


@pytest.mark.parametrize("cell", CELLS)
@pytest.mark.parametrize("engine", ENGINES)
def test_shapes_and_match_torch_nn(cell, engine):
    model = make(cell, engine)
    tokens = torch.randint(0, V, (3, 5))
    logits, state = model(tokens)
    assert logits.shape == (3, 5, V)
    states = state if isinstance(state, tuple) else (state,)
    assert len(states) == (2 if cell == "lstm" else 1)
    assert all(s.shape == (L, 3, H) for s in states)
    torch.testing.assert_close(logits, reference_logits(model, tokens), rtol=1e-5, atol=1e-5)
    init = model.init_state(3)
    init = init if isinstance(init, tuple) else (init,)
    assert [s.shape for s in init] == [s.shape for s in states]
    assert all(float(s.abs().sum()) == 0.0 for s in init)


@pytest.mark.parametrize("cell", CELLS)
def test_carried_state_equals_one_long_forward(cell):
    model = make(cell)
    tokens = torch.randint(0, V, (2, 9))
    full, _ = model(tokens)
    first, state = model(tokens[:, :4])
    second, _ = model(tokens[:, 4:], detach_state(state))
    torch.testing.assert_close(torch.cat([first, second], 1), full, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("cell", CELLS)
def test_step_matches_forward(cell):
    model = make(cell).eval()
    tokens = torch.randint(0, V, (2, 6))
    full, _ = model(tokens)
    state = None
    for t in range(6):
        logits, state = model.step(tokens[:, t], state)
        assert logits.shape == (2, V) and not logits.requires_grad
        torch.testing.assert_close(logits, full[:, t], rtol=1e-5, atol=1e-6)


def test_bptt_gradients_match_native():
    tokens = torch.randint(0, V, (2, 7))
    targets = torch.randint(0, V, (2, 7))
    grads = {}
    for engine in ("bptt", "native"):
        model = make("lstm", engine)
        logits, _ = model(tokens)
        nn.functional.cross_entropy(logits.reshape(-1, V), targets.reshape(-1)).backward()
        grads[engine] = {n: p.grad.clone() for n, p in model.named_parameters()}
    for name, grad in grads["native"].items():
        torch.testing.assert_close(grads["bptt"][name], grad, rtol=1e-4, atol=1e-6)


def test_num_parameters_counts_like_torch_nn():
    model = make("gru")
    gru_ref = sum(p.numel() for p in nn.GRU(E, H, num_layers=L).parameters())
    expected = V * E + gru_ref + H * V + V
    assert model.num_parameters() == expected
    model.embedding.weight.requires_grad_(False)
    assert model.num_parameters(trainable_only=True) == expected - V * E


def test_engine_switch_and_dropout():
    model = make("rnn", dropout=0.5)
    tokens = torch.randint(0, V, (2, 5))
    model.engine = "native"
    assert model.rnn.engine == "native" and model.cfg.engine == "native"
    with pytest.raises(ValueError, match="engine"):
        model.engine = "cuda"
    model.eval()
    torch.testing.assert_close(model(tokens)[0], model(tokens)[0])
    model.train()
    assert not torch.equal(model(tokens)[0], model(tokens)[0])  # dropout is active


def test_padding_embedding_is_zero_and_untrained():
    model = make()
    assert float(model.embedding.weight.detach()[0].abs().sum()) == 0.0
    logits, _ = model(torch.zeros(1, 3, dtype=torch.long))
    logits.sum().backward()
    assert float(model.embedding.weight.grad[0].abs().sum()) == 0.0


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"cell": "transformer"}, "unknown cell"),
        ({"engine": "fast"}, "unknown engine"),
        ({"hidden_size": 0}, "hidden_size"),
        ({"embedding_dim": -3}, "embedding_dim"),
        ({"num_layers": 0}, "num_layers"),
        ({"num_layers": 1.5}, "num_layers"),
        ({"vocab_size": 3}, "vocab_size"),
        ({"dropout": 1.0}, "dropout"),
    ],
)
def test_config_validation(kwargs, message):
    base = {"vocab_size": V}
    base.update(kwargs)
    with pytest.raises(ValueError, match=message):
        ModelConfig(**base)


def test_config_round_trip_and_bad_input():
    cfg = ModelConfig(cell="gru", vocab_size=20, hidden_size=4)
    assert ModelConfig.from_dict(cfg.to_dict()) == cfg
    with pytest.raises(ValueError, match="unknown"):
        ModelConfig.from_dict({**cfg.to_dict(), "extra": 1})
    with pytest.raises(ValueError):
        make()(torch.zeros(3, dtype=torch.long))  # tokens must be (B, T)
