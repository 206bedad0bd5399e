"""Sequence to one (rnncore.textbook.reader): the bidirectional reader's pooled output and
gradients against torch.nn run on each poem alone, the bag against a hand computation, the
two tasks' examples (the Song loader on a synthetic tarball), a small live run, the
shipped results."""
import io
import json
import tarfile

import pytest
import torch

from rnncore.data import tang
from rnncore.poetry import check_rhyme
from rnncore.textbook import reader as R


def _cfg(cell="gru", **kw):
    return R.ReaderConfig(cell=cell, embedding_dim=6, hidden_size=5, **kw)


@pytest.mark.parametrize("cell", ["gru", "lstm"])
def test_pooled_state_equals_torch_nn_on_each_poem_alone(cell):
    """z = [h→_T ; h←_1] of a padded, packed batch equals torch.nn's h_n on each unpadded
    row (float64), and so do the gradients of every weight."""
    torch.manual_seed(0)
    model = R.RecurrentReader(11, 3, _cfg(cell), bidirectional=True).double()
    ref = getattr(torch.nn, cell.upper())(6, 5, batch_first=True, bidirectional=True).double()
    ref.load_state_dict(model.rnn.state_dict())
    lengths = torch.tensor([4, 7, 2])
    tokens = torch.randint(1, 11, (3, 7))
    tokens[0, 4:] = tokens[2, 2:] = 0
    z = model.pooled(tokens, lengths)
    x = model.embedding(tokens).detach()
    rows = []
    for b, n in enumerate(lengths.tolist()):
        out, state = ref(x[b : b + 1, :n])
        h_n = state[0] if cell == "lstm" else state
        assert torch.allclose(h_n[0, 0], out[0, -1, :5]) and torch.allclose(h_n[1, 0],
                                                                             out[0, 0, 5:])
        rows.append(torch.cat([h_n[0, 0], h_n[1, 0]]))
    expected = torch.stack(rows)
    assert z.shape == (3, 10)
    torch.testing.assert_close(z, expected, rtol=1e-10, atol=1e-12)
    weights = torch.randn(3, 10, dtype=torch.float64)
    (z * weights).sum().backward()
    (expected * weights).sum().backward()
    for name, p in model.rnn.named_parameters():
        torch.testing.assert_close(p.grad, dict(ref.named_parameters())[name].grad,
                                   rtol=1e-9, atol=1e-11)


def test_forward_reader_pools_the_last_state_only():
    torch.manual_seed(0)
    model = R.RecurrentReader(11, 3, _cfg(), bidirectional=False)
    tokens, lengths = torch.tensor([[3, 4, 5, 0]]), torch.tensor([3])
    out, _ = model.rnn(model.embedding(tokens[:, :3]))
    torch.testing.assert_close(model.pooled(tokens, lengths), out[:, -1])
    assert model.out.in_features == 5


def test_bag_is_logistic_regression_on_character_frequencies():
    torch.manual_seed(0)
    bag = R.BagReader(6, 2)
    tokens, lengths = torch.tensor([[4, 4, 5, 0, 0]]), torch.tensor([3])
    W = bag.bag.weight.detach()  # (V, C)
    expected = (2 * W[4] + W[5]) / 3 + bag.bias.detach()
    torch.testing.assert_close(bag(tokens, lengths)[0], expected)


def test_rhyme_examples_mask_line_two_and_label_the_poem():
    cfg = R.ReaderConfig(max_poems=400, min_group=10)
    ex = R.rhyme_examples(cfg)
    assert len(ex.classes) >= 2 and len(ex.texts) == len(ex.labels) > 200
    from rnncore.data import load_corpus

    by_start = {p.lines[0]: p for p in load_corpus("tang").poems[:400]}
    for text, label in list(zip(ex.texts, ex.labels))[:50]:
        assert len(text) == 16 and text[14] == R.MASK and text.count(R.MASK) == 1
        poem = by_start[text[:8]]
        assert text[8:14] == poem.lines[1][:6]
        assert check_rhyme(poem.lines).groups == (ex.classes[label],)
    assert 0.5 < ex.controls["first_line_rhymes"] <= 1.0
    with pytest.raises(R.ReaderError, match="fewer than 2 rhyme groups"):
        R.rhyme_examples(R.ReaderConfig(max_poems=20, min_group=100))


def _rec(lines, author="某"):
    return {"author": author, "title": "題", "paragraphs": lines, "id": "x"}


def _tar(path, files):
    with tarfile.open(path, "w:gz") as archive:
        for name, records in files.items():
            data = json.dumps(records, ensure_ascii=False).encode()
            info = tarfile.TarInfo(f"package/dist/quantangshi/{name}")
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))


def test_dynasty_examples_balance_forms_and_drop_shared_texts(tmp_path, monkeypatch):
    """A synthetic tarball: Tang 3 wujue + 1 qijue, Song 2 wujue (one also in Tang) +
    2 qijue + 1 qilv -> 1 wujue and 1 qijue of each, the shared poem in neither."""
    wujue = [["床前明月光，疑是地上霜。", "舉頭望明月，低頭思故鄉。"],
             ["白日依山盡，黃河入海流。", "欲窮千里目，更上一層樓。"],
             ["千山鳥飛絕，萬徑人蹤滅。", "孤舟蓑笠翁，獨釣寒江雪。"]]
    qijue = [["朝辭白帝彩雲間，千里江陵一日還。", "兩岸猿聲啼不住，輕舟已過萬重山。"],
             ["橫看成嶺側成峰，遠近高低各不同。", "不識廬山真面目，只緣身在此山中。"],
             ["水光瀲灩晴方好，山色空濛雨亦奇。", "欲把西湖比西子，淡妝濃抹總相宜。"]]
    qilv = ["風急天高猿嘯哀，渚清沙白鳥飛迴。", "無邊落木蕭蕭下，不盡長江滾滾來。",
            "萬里悲秋常作客，百年多病獨登臺。", "艱難苦恨繁霜鬢，潦倒新停濁酒杯。"]
    monkeypatch.setenv("RNNCORE_CACHE", str(tmp_path))
    _tar(tmp_path / tang.TARBALL, {
        "poet.tang.0.json": [_rec(w) for w in wujue] + [_rec(qijue[0])],
        "poet.song.0.json": [_rec(wujue[2]), _rec(["春眠不覺曉，處處聞啼鳥。",
                                                   "夜來風雨聲，花落知多少。"]),
                             _rec(qijue[1]), _rec(qijue[2]), _rec(qilv)]})
    monkeypatch.setattr(tang, "INTEGRITY",
                        tang.integrity_of(tang.file_sha512(tmp_path / tang.TARBALL)))
    ex = R.dynasty_examples(R.ReaderConfig(task="dynasty"))
    assert ex.classes == ["Tang", "Song"]
    assert ex.controls["shared_texts_removed"] == 1
    assert ex.controls["per_form_each"] == {"wujue": 1, "qijue": 1, "wulv": 0, "qilv": 0}
    assert sorted(ex.labels) == [0, 0, 1, 1]
    assert "".join(wujue[2]) not in ex.texts
    song_texts = [t for t, y in zip(ex.texts, ex.labels) if y == 1]
    assert "".join(qilv) not in song_texts  # no Tang qilv to balance it


def test_small_live_run_is_consistent():
    cfg = R.ReaderConfig(epochs=2, embedding_dim=8, hidden_size=16, max_poems=1200,
                         min_group=40)
    result = R.measure_readers(cfg)
    for a in R.READERS:
        assert len(result.accuracy[a]) == 2 and 0 <= result.final(a) <= 1
        for b in R.READERS:
            if a != b:  # acc_a - acc_b = (right_a wrong_b - right_b wrong_a) / n
                diff = (result.discordant[a][b] - result.discordant[b][a]) / result.n_test
                assert result.final(a) - result.final(b) == pytest.approx(diff)
    assert result.parameters["bidirectional"] > result.parameters["forward"]
    again = R.ReaderResult.from_dict(json.loads(json.dumps(result.to_dict())))
    assert again.describe() == result.describe()
    assert f"on {result.n_test} held-out poems" in result.describe()


@pytest.mark.parametrize("task", R.TASKS)
def test_shipped_results_load(task):
    result = R.load_reader_result(task)
    assert result.task == task and result.config["task"] == task
    assert result.command.startswith("python -m rnncore.textbook.reader --task " + task)
    assert result.n_test > 500
    text = result.describe()
    assert f"{result.final('bidirectional'):.1%}" in text


def test_bad_requests_are_one_line_errors(tmp_path):
    with pytest.raises(R.ReaderError, match="task must be one of"):
        R.ReaderConfig(task="ci")
    with pytest.raises(R.ReaderError, match="hidden_size must be a positive integer"):
        R.ReaderConfig(hidden_size=0)
    with pytest.raises(R.ReaderError, match="val_fraction"):
        R.ReaderConfig(val_fraction=1.0)
    (tmp_path / "x.json").write_text("{")
    with pytest.raises(R.ReaderError, match="cannot read the reader result"):
        R.load_reader_result("rhyme", tmp_path / "x.json")


def _result(discordant, accuracy):
    return R.ReaderResult(config={}, task="dynasty", classes=["Tang", "Song"], n_train=10,
                          n_test=100, majority=0.5, accuracy={k: [v] for k, v in
                                                               accuracy.items()},
                          discordant=discordant, parameters={}, seconds={}, controls={})


@pytest.mark.parametrize("bag_vs_bi, phrase", [
    ((5, 30), "Order matters: the bidirectional reader beats the bag"),
    ((30, 5), "The bag of characters beats even the bidirectional reader"),
    ((10, 12), "Order adds nothing measurable"),
])
def test_describe_follows_the_counts(bag_vs_bi, phrase):
    """McNemar z = (b - c) / sqrt(b + c) decides each sentence."""
    bag_right, bi_right = bag_vs_bi
    d = {"bag": {"forward": 10, "bidirectional": bag_right},
         "forward": {"bag": 10, "bidirectional": 2},
         "bidirectional": {"bag": bi_right, "forward": 20}}
    acc = {"bag": 0.7, "forward": 0.72, "bidirectional": 0.9}
    result = _result(d, acc)
    assert result.mcnemar("bidirectional", "forward") == pytest.approx(18 / 22 ** 0.5)
    text = result.describe()
    assert "the backward pass helps" in text and phrase in text
