"""Generation latency on CPU (pytest-benchmark).

Targets (model of the bundled size, LSTM 2 x 512, embedding 256, ~5k vocab): p50 <= 50 ms
for one constrained 七言律詩 (rhyme + tones, hard), <= 300 ms for a batch of 16. Uses the
bundled model when it is installed, else a random model of that size (the decoding cost
does not depend on the weights). Under ``--benchmark-disable`` each case runs once, as a
smoke test.
"""
import pytest
import torch

from rnncore.generate import DefaultModelMissing, GenerationConfig, generate, load_default_model


@pytest.fixture(scope="module")
def model_and_vocab():
    try:
        ckpt = load_default_model()
        return ckpt.model, ckpt.vocab
    except DefaultModelMissing:
        from rnncore.data import Vocab, load_corpus
        from rnncore.model import CharRNN, ModelConfig

        vocab = Vocab.build(p.text for p in load_corpus("tang").poems)
        torch.manual_seed(0)
        cfg = ModelConfig(cell="lstm", vocab_size=len(vocab), embedding_dim=256,
                          hidden_size=512, num_layers=2)
        return CharRNN(cfg).eval(), vocab


@pytest.mark.parametrize("num", [1, 16])
def test_bench_constrained_qilv(benchmark, model_and_vocab, num):
    model, vocab = model_and_vocab
    cfg = GenerationConfig(form="qilv", rhyme=True, tones=True, num=num, seed=0, top_p=0.9)
    if not benchmark.disabled:
        generate(model, vocab, cfg)  # warm the vocab tables outside the timing
    benchmark.group = "generate qilv (rhyme + tones, hard)"
    benchmark.extra_info.update(num=num, target_p50_ms=50 if num == 1 else 300,
                                threads=torch.get_num_threads())
    poems = benchmark(generate, model, vocab, cfg)
    assert len(poems) == num and all(p.metrics["form_valid"] for p in poems)
