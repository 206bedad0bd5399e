"""One model for every form: form start tokens in the vocab, the data, training and decoding."""
from __future__ import annotations

import json
import random

import torch

from rnncore import data as D
from rnncore.data import Vocab
from rnncore.generate import GenerationConfig, generate
from rnncore.trainer import TrainConfig, Trainer
from rnncore.model import ModelConfig

CHARS = "山水風雲花月江天日夜人君白青長明春秋松竹"


def _poem(rng, width):
    return [("".join(rng.choice(CHARS) for _ in range(width)) + ("，" if i % 2 == 0 else "。"))
            for i in range(4)]


def _corpus_file(tmp_path, n=160):
    rng = random.Random(0)
    records = [{"title": f"t{i}", "author": "a", "lines": _poem(rng, 5 if i % 2 else 7)}
               for i in range(n)]
    path = tmp_path / "poems.json"
    path.write_text(json.dumps(records, ensure_ascii=False), encoding="utf-8")
    return path


def test_vocab_start_tokens_round_trip():
    plain = Vocab.build(["春風。"])
    forms = Vocab.build(["春風。"], forms=True)
    assert not plain.has_forms and plain.start_id("qilv") == plain.bos_id
    assert forms.has_forms and forms.itos[4:9] == list(Vocab.FORM_STARTS)
    start = forms.start_id("wujue")
    assert forms.itos[start] == "<bos:wujue>"
    assert forms.start_id("other") != forms.start_id("qilv") != forms.bos_id
    ids = forms.encode_poem("春風。", "wujue")
    assert ids[0] == start and ids[-1] == forms.eos_id
    assert forms.decode(ids) == "春風。"            # start tokens are not characters
    assert "<bos:wujue>" not in forms and "春" in forms
    assert Vocab.from_dict(forms.to_dict()) == forms


def test_prepared_data_starts_each_poem_with_its_form(tmp_path):
    cfg = D.DataConfig(corpus=str(_corpus_file(tmp_path)), form_tokens=True)
    data = D.prepare_data(cfg)
    for poem, ids in zip(data.train_poems + data.val_poems, data.train + data.val):
        assert ids[0] == data.vocab.start_id(poem.form)
    assert {p.form for p in data.train_poems} == {"wujue", "qijue"}
    plain = D.prepare_data(D.DataConfig(corpus=cfg.corpus))
    assert all(ids[0] == Vocab.bos_id for ids in plain.train)


def test_the_form_token_changes_what_the_model_predicts(tmp_path):
    """Trained on 五絕 and 七絕 of random characters, the model can tell where a line ends
    only from the form token: after five characters it puts "，" first for 五絕 and a
    character for 七絕."""
    torch.manual_seed(0)
    trainer = Trainer(ModelConfig(cell="lstm", vocab_size=100, embedding_dim=16, hidden_size=48,
                                  num_layers=1),
                      TrainConfig(strategy="full", batch_size=16, lr=1e-2, max_steps=150,
                                  eval_every=0, device="cpu"),
                      D.DataConfig(corpus=str(_corpus_file(tmp_path)), form_tokens=True))
    trainer.run()
    model, vocab = trainer.model.eval(), trainer.vocab
    comma = vocab.stoi["，"]
    line = vocab.encode("山水風雲花")
    p_comma = {}
    with torch.no_grad():
        for form in ("wujue", "qijue"):
            logits, _ = model(torch.tensor([[vocab.start_id(form)] + line]))
            p_comma[form] = float(torch.softmax(logits[0, -1], -1)[comma])
    assert p_comma["wujue"] > 0.5 > 0.1 > p_comma["qijue"], p_comma
    # the decoder primes with the form's start token
    (poem,) = generate(model, vocab, GenerationConfig(form="wujue", seed=0))
    assert len(poem.lines) == 4 and all(len(line) == 6 for line in poem.lines)
