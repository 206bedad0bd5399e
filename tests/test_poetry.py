"""Rhyme/tone tables, templates, form checks and novelty metrics (rnncore.poetry)."""
import random
import subprocess
import sys
from pathlib import Path

import pytest

from rnncore import poetry as P

JINGYESI = "床前明月光，疑是地上霜。舉頭望明月，低頭思故鄉。"
BAIDI = "朝辭白帝彩雲間，千里江陵一日還。兩岸猿聲啼不住，輕舟已過萬重山。"
GUANQUELOU = "白日依山盡，黃河入海流。欲窮千里目，更上一層樓。"


@pytest.fixture(scope="module")
def table():
    return P.rhyme_table()


def test_known_characters(table):
    assert table.tones("東") == {P.PING} and table.rhyme_groups("東") == {"上平聲一東"}
    assert table.tones("月") == {P.ZE} and "入聲六月" in table.info("月").groups
    assert table.rhyme_groups("月") == frozenset()
    # 看 is a polyphone: 平 (十四寒) and 仄 (十五翰)
    assert table.tones("看") == {P.PING, P.ZE}
    assert table.rhyme_groups("看") == {"上平聲十四寒"}
    assert table.can_be("看", P.PING) and table.can_be("看", P.ZE)
    assert table.tones("一") == {P.ZE}  # entering tone counts as 仄
    assert table.rhyme_groups("山") == {"上平聲十五刪"}
    assert len(table.ping_groups) == 30


def test_simplified_lookups(table):
    assert table.info("东") == table.info("東")
    assert table.info("风") == table.info("風")
    assert table.info("发").tones == table.info("發").tones | table.info("髮").tones
    assert not table.info("a").known and not table.info("，").known


def test_templates_follow_nian_dui():
    for key, form in P.FORMS.items():
        templates = P.tone_templates(key)
        assert len(templates) == 4
        second = 1  # 0-based index of the line's 2nd character
        for tmpl in templates:
            strict = tmpl.strict_lines
            assert len(strict) == form.num_lines
            assert all(len(line) == form.line_length for line in strict)
            for i in range(1, form.num_lines):
                # 對 within a couplet, 粘 across couplets
                if i % 2 == 1:
                    assert strict[i][second] != strict[i - 1][second]
                else:
                    assert strict[i][second] == strict[i - 1][second]
                assert strict[i][-1] == (P.PING if i % 2 == 1 else P.ZE) or i == 0
            assert strict[0][-1] == (P.PING if tmpl.first_line_rhymes else P.ZE)
            assert strict[0][second] == tmpl.start_tone
            # each strict line is one of the four canonical line types
            core = {"仄仄平平仄", "平平仄仄平", "平平平仄仄", "仄仄仄平平"}
            for line in strict:
                assert line[-5:] in core
                if len(line) == 7:  # 2-character head opposite to the core's start
                    assert line[0] == line[1] != line[2]
            free = (0,) if form.line_length == 5 else (0, 2)
            for line, strict_line in zip(tmpl.lines, strict):
                for j, (t, s) in enumerate(zip(line, strict_line)):
                    assert t == (P.FREE if j in free else s)


def test_textbook_qijue_template():
    tmpl = {t.name: t for t in P.tone_templates("qijue")}["平起首句入韻"]
    assert tmpl.strict_lines == ("平平仄仄仄平平", "仄仄平平仄仄平", "仄仄平平平仄仄", "平平仄仄仄平平")


def test_famous_poems():
    m = P.poem_metrics(BAIDI)
    assert m["form"] == "qijue" and m["form_valid"]
    assert m["rhyme_valid"] and m["rhyme_groups"] == ["上平聲十五刪"] and m["first_line_rhymes"]
    m = P.poem_metrics(JINGYESI)
    assert m["form_valid"] and m["rhyme_valid"] and m["rhyme_groups"] == ["下平聲七陽"]
    # 登鸛雀樓 is a textbook 仄起首句不入韻 五絕
    m = P.poem_metrics(GUANQUELOU)
    assert m["rhyme_valid"] and not m["first_line_rhymes"]
    assert m["tone_match"] == 1.0 and m["tone_template"] == "仄起首句不入韻"


def test_broken_poems():
    assert not P.check_form(P.split_poem(BAIDI.replace("。", "，", 1)), "qijue")
    assert not P.check_form(P.split_poem(BAIDI), "qilv")
    assert not P.check_form(P.split_poem(BAIDI.replace("間", "a")), "qijue")
    # even lines ending 月 / 日 (仄) cannot rhyme
    m = P.poem_metrics("床前明月光，疑是地上月。舉頭望明月，低頭思故日。")
    assert m["form_valid"] and not m["rhyme_valid"]
    # a level-only first-line ending outside the rhyme group breaks the rhyme
    m = P.poem_metrics("床前明月東，疑是地上霜。舉頭望明月，低頭思故鄉。")
    assert not m["rhyme_valid"]


def test_get_form_errors():
    assert P.get_form("七言律詩").key == "qilv"
    with pytest.raises(P.PoetryError, match="unknown form"):
        P.get_form("sonnet")


def _brute_longest(text, poems):
    best = ""
    for i in range(len(text)):
        for j in range(i + 1, len(text) + 1):
            if j - i > len(best) and any(text[i:j] in p for p in poems):
                best = text[i:j]
    return best


def test_corpus_index_against_brute_force():
    rng = random.Random(0)
    alphabet = "山水月風花，。"
    poems = ["".join(rng.choice(alphabet) for _ in range(rng.randint(5, 30))) for _ in range(40)]
    index = P.CorpusIndex(poems)
    for _ in range(200):
        text = "".join(rng.choice(alphabet) for _ in range(rng.randint(1, 24)))
        assert len(index.longest_copied_run(text)) == len(_brute_longest(text, poems))
        grams = [text[i : i + 4] for i in range(len(text) - 3)]
        want = sum(any(g in p for p in poems) for g in grams) / len(grams) if grams else 0.0
        assert index.ngram_share(text) == pytest.approx(want)


def test_novelty_metrics_and_cache():
    poems = [BAIDI, JINGYESI]
    index = P.corpus_index(poems)
    assert P.corpus_index(poems) is index  # cached by identity
    m = P.poem_metrics(BAIDI, index=index)
    assert m["longest_copied_run"] == 28 and m["seen_4gram_share"] == 1.0
    m = P.poem_metrics(GUANQUELOU, index=index)
    assert m["longest_copied_run"] <= 2 and m["seen_4gram_share"] == 0.0
    assert index.main_form().key in ("qijue", "wujue")


def test_poetry_never_imports_torch():
    """rnncore.poetry, the rhyme data and OpenCC load without torch (``rnncore/__init__``
    loads the layers lazily)."""
    code = (
        "import sys\n"
        "sys.path.insert(0, sys.argv[1])\n"
        "import rnncore.poetry as P\n"
        "assert P.poem_metrics(sys.argv[2], index=P.corpus_index([sys.argv[2]]))['form_valid']\n"
        "assert P.to_simplified('詩') == '诗'\n"
        "assert 'torch' not in sys.modules, 'rnncore.poetry imported torch'\n"
    )
    package_dir = str(Path(P.__file__).resolve().parents[1])
    proc = subprocess.run([sys.executable, "-c", code, package_dir, JINGYESI],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
