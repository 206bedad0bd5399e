"""The Song poems of the chinese-poetry tarball (``rnncore.data.tang`` with
``dynasty="song"``, the source ``quansongshi``), on the synthetic archives of
test_corpus_full (whose layout holds Song files beside the Tang ones)."""
from __future__ import annotations

import pytest

from rnncore.data import (CorpusError, DataConfig, Poem, Vocab, bundled_held_out, load_corpus,
                          prepare_data, split_lines)
from rnncore.data import corpus as C
from rnncore.data import tang
from rnncore.data.split import extra_training
from test_corpus_full import (EXPECTED_FORMS, FILE_SONG_1000, LAYOUT, OTHER, QIJUE,  # noqa: F401
                              QILV, SONG_QIJUE, WUJUE, WULV, cache, write_dir, write_tar)


def test_song_files_are_read_with_the_same_rules(tmp_path, cache, monkeypatch):
    path = write_tar(tmp_path / "cp.tgz", LAYOUT)
    song = tang.load_tang(path, dynasty="song")
    assert song.by_form and song.form_counts() == {"qijue": 1, "qilv": 1}
    assert song.skip_reasons == {"odd_line_count": 2}
    assert song.poems[0].author == "蘇軾" and song.poems[1].lines == split_lines("".join(QILV))
    # a checkout gives the same poems; the Tang corpus of the same archive is unchanged
    checkout = write_dir(tmp_path / "checkout", LAYOUT)
    assert tang.load_tang(checkout, dynasty="song").poems == song.poems
    assert load_corpus(path).form_counts() == EXPECTED_FORMS
    with pytest.raises(CorpusError, match="dynasty must be one of tang, song"):
        tang.load_tang(path, dynasty="ming")
    with pytest.raises(CorpusError, match="holds no poet.song.N.json"):
        tang.load_tang(write_tar(tmp_path / "t.tgz", {k: v for k, v in LAYOUT.items()
                                                       if "song" not in k}), dynasty="song")
    # the named source: its own parsed copy beside the Tang one, the same integrity check
    with pytest.raises(CorpusError, match="full Song corpus is not downloaded"):
        load_corpus("quansongshi")
    cache.mkdir(exist_ok=True)
    write_tar(cache / tang.TARBALL, LAYOUT)
    digest = tang.file_sha512(cache / tang.TARBALL)
    monkeypatch.setattr(tang, "INTEGRITY", tang.integrity_of(digest))
    named = load_corpus("quansongshi")
    assert named.source == "quansongshi" and named.poems == song.poems
    assert len(load_corpus("quantangshi")) == 5
    assert tang._cache_file(digest, False, "song").name.startswith("quansongshi-")
    assert tang._cache_file(digest, False, "song").is_file()
    assert tang._cache_file(digest, False, "tang").is_file()
    monkeypatch.setattr(tang, "_parse", lambda *a: pytest.fail("parsed again"))
    assert load_corpus("song-full").poems == song.poems
    with pytest.raises(CorpusError, match="holds song poems, not tang"):
        tang.load_tang("quansongshi", dynasty="tang")
    split = prepare_data(DataConfig(corpus="quansongshi", val_fraction=0.0))
    assert len(split.train_poems) == 2


def test_song_files_have_their_own_size_limit(tmp_path, cache, monkeypatch):
    path = write_dir(tmp_path / "checkout", LAYOUT)  # a checkout is parsed every time
    sizes = [len(v) for k, v in LAYOUT.items() if "/poet.song." in k]
    monkeypatch.setattr(C, "MAX_CORPUS_BYTES", max(sizes))  # each file fits, not the sum
    assert sum(sizes) > max(sizes) and tang.SONG_BYTES_FACTOR * max(sizes) >= sum(sizes)
    assert len(tang.load_tang(path, dynasty="song")) == 2
    monkeypatch.setattr(tang, "SONG_BYTES_FACTOR", 1)
    with pytest.raises(CorpusError, match="larger than"):
        tang.load_tang(path, dynasty="song")


def poem(lines) -> Poem:
    return Poem("題", "某", split_lines("".join(lines)))


def test_extra_training_admits_only_regulated_in_vocab_unseen_poems():
    held = bundled_held_out()[3]
    vocab = Vocab.build(["".join(p) for p in (QILV, WULV, WUJUE, QIJUE)] + [held.text])
    val = [poem(QILV)]
    extra = [poem(WULV), poem(OTHER), poem(SONG_QIJUE), held, poem(QILV), poem(WUJUE)]
    kept, dropped = extra_training(extra, vocab, val)
    assert kept == [poem(WULV), poem(WUJUE)]
    assert dropped == {"extra_other_form": 1, "extra_out_of_vocab": 1,
                       "extra_bundled_held_out": 1, "extra_own_held_out": 1}
    assert extra_training([], vocab, val) == ([], {})


def test_extra_train_adds_song_poems_to_training_only(tmp_path, cache, monkeypatch):
    cache.mkdir(exist_ok=True)
    write_tar(cache / tang.TARBALL, LAYOUT)
    monkeypatch.setattr(tang, "INTEGRITY", tang.integrity_of(tang.file_sha512(cache / tang.TARBALL)))
    plain = prepare_data(DataConfig(corpus="quantangshi", val_fraction=0.0))
    both = prepare_data(DataConfig(corpus="quantangshi", val_fraction=0.0, extra_train="quansongshi"))
    # 蘇軾's 題西林壁 uses characters the Tang poems lack; the Song copy of the 七律 joins
    assert both.extra == 1 and both.excluded == {"extra_out_of_vocab": 1}
    assert both.train_poems == plain.train_poems + [poem(QILV)]
    assert both.vocab == plain.vocab and both.val == plain.val and plain.extra == 0
    assert both.train[-1] == plain.vocab.encode_poem(poem(QILV).text, "qilv")
    with pytest.raises(CorpusError, match="extra_train must be"):
        DataConfig(extra_train=" ")
    assert DataConfig.from_dict(DataConfig(extra_train="quansongshi").to_dict()).extra_train == \
        "quansongshi"
