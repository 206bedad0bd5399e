"""The decoder's repetition rules: no rhyme character twice, no 3-character sequence twice.

Checked on poems of the bundled model (every form, sampling, greedy and beam) and on a
degenerate model that, left alone, writes the same characters over and over.
"""
from __future__ import annotations

import pytest
import torch

from rnncore.generate import GenerationConfig, generate, load_default_model
from rnncore.model import CharRNN, ModelConfig
from rnncore.poetry import FORMS


def faults(poem, form) -> list[str]:
    """The repetition faults of one poem, found from its text alone."""
    W = FORMS[form].line_length
    bodies = [line[:W] for line in poem.lines]
    ends = [bodies[0][-1]] + [bodies[i][-1] for i in range(1, len(bodies), 2)]
    grams = [b[i:i + 3] for b in bodies for i in range(W - 2)]
    out = []
    if len(set(ends)) < len(ends):
        out.append(f"rhyme character repeated: {ends}")
    if len(set(grams)) < len(grams):
        out.append("3-character sequence repeated")
    if len(set(bodies)) < len(bodies):
        out.append("line repeated")
    return out


@pytest.fixture(scope="module")
def bundled():
    ckpt = load_default_model()
    return ckpt.model, ckpt.vocab


@pytest.mark.slow
@pytest.mark.parametrize("form", sorted(FORMS))
def test_500_sampled_poems_never_repeat(bundled, form):
    model, vocab = bundled
    poems = []
    for seed in (1, 2):
        poems += generate(model, vocab, GenerationConfig(form=form, num=250, seed=seed,
                                                         rhyme=True, tones=True))
    bad = [(p.text, f) for p in poems if (f := faults(p, form))]
    assert len(poems) == 500 and not bad, bad[:3]


@pytest.mark.slow
@pytest.mark.parametrize("strategy", ["greedy", "beam"])
@pytest.mark.parametrize("form", sorted(FORMS))
def test_greedy_and_beam_do_not_loop(bundled, form, strategy):
    """Greedy and beam search are deterministic: different first characters give
    different poems."""
    model, vocab = bundled
    starts = "春秋山水風雲花月江天日夜人君白青長明一不"
    bad = []
    for ch in starts:
        (poem,) = generate(model, vocab, GenerationConfig(
            form=form, strategy=strategy, prefix=ch, rhyme=True, tones=True, beam_width=3))
        if faults(poem, form):
            bad.append((poem.text, faults(poem, form)))
    assert not bad, bad[:3]


def _looping_model(vocab):
    """A model whose head prefers 不, 知, 何, 處 over everything else at every step, so
    unconstrained greedy decoding writes 不不不... again and again."""
    torch.manual_seed(0)
    model = CharRNN(ModelConfig(cell="gru", vocab_size=len(vocab), embedding_dim=8,
                                hidden_size=8, num_layers=1))
    with torch.no_grad():
        model.head.weight.zero_()
        model.head.bias.fill_(-5.0)
        for rank, ch in enumerate("不知何處"):
            model.head.bias[vocab.stoi[ch]] = 5.0 - 0.1 * rank
    return model.eval()


@pytest.mark.parametrize("strategy", ["greedy", "beam", "sample"])
@pytest.mark.parametrize("form", ["wujue", "qilv"])
def test_a_looping_model_is_kept_from_looping(bundled, form, strategy):
    _, vocab = bundled
    model = _looping_model(vocab)
    (poem,) = generate(model, vocab, GenerationConfig(form=form, strategy=strategy, seed=3))
    assert not faults(poem, form), poem.text


def test_beam_honours_top_k_and_temperature(bundled):
    model, vocab = bundled
    cfg = dict(form="wujue", rhyme=True, tones=True, beam_width=4)
    greedy = generate(model, vocab, GenerationConfig(strategy="greedy", **cfg))[0]
    # top_k = 1 leaves each beam one expansion: every beam follows the greedy path
    narrow = generate(model, vocab, GenerationConfig(strategy="beam", top_k=1, **cfg))[0]
    assert narrow.text == greedy.text
    wide = generate(model, vocab, GenerationConfig(strategy="beam", **cfg))[0]
    cold = generate(model, vocab, GenerationConfig(strategy="beam", temperature=0.3, **cfg))[0]
    # temperature reshapes the search, and the reported log-probs are still the model's own
    # (T = 1), as a teacher-forced pass over the written tokens gives them
    assert cold.text != wide.text
    for poem in (wide, cold):
        tokens = torch.tensor([[vocab.start_id("wujue")] + vocab.encode("".join(poem.chars))])
        with torch.no_grad():
            # from the model's poem start state, as the decoder begins every poem
            own = torch.log_softmax(model.eval()(tokens[:, :-1], model.poem_start_state(1))[0][0]
                                    .double(), -1)
        expected = own.gather(1, tokens[0, 1:, None])[:, 0]
        assert torch.allclose(torch.tensor(poem.logprobs, dtype=torch.double), expected,
                              atol=1e-4)
        assert poem.score == pytest.approx(sum(poem.logprobs))
