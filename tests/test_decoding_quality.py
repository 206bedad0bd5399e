"""The poem-set measures behind the decoding defaults, on hand-counted cases."""
from __future__ import annotations

import pytest

from rnncore.generate.quality import closest_to, decoding_sweep, poem_set_quality
from rnncore.poetry import CorpusIndex

TRAIN = ["白日依山盡，黃河入海流。欲窮千里目，更上一層樓。"]


def test_poem_set_quality_by_hand():
    index = CorpusIndex(TRAIN)
    poem = "白日依山盡，黃河出海雲。春風千里草，夜月一層冰。"
    q = poem_set_quality([poem, poem], index)
    # attested: 白日 日依 依山 山盡 黃河 千里 一層 of 16 pairs
    assert q["attested_pair_share"] == pytest.approx(7 / 16)
    assert q["distinct_pairs"] == pytest.approx(16 / 32)         # the two poems are equal
    assert q["copied_run_p50"] == 7                              # 白日依山盡，黃河 (marks not counted)
    assert q["rhyme_repeat_share"] == 0.0
    again = "白日依山盡，黃河入海盡。欲窮千里盡，更上一層盡。"
    assert poem_set_quality([again], index)["rhyme_repeat_share"] == 1.0
    assert CorpusIndex(TRAIN).attested_pair_share(TRAIN[0]) == 1.0


def test_closest_to_prefers_poem_like_novelty():
    ref = {"attested_pair_share": 0.64}
    rows = [{"attested_pair_share": 0.64, "copied_run_p95": 9, "seen_4gram_share": 0.3},
            {"attested_pair_share": 0.55, "copied_run_p95": 4, "seen_4gram_share": 0.02},
            {"attested_pair_share": 0.40, "copied_run_p95": 3, "seen_4gram_share": 0.0}]
    assert closest_to(rows, ref) is rows[1]


def test_sweep_rows_cover_the_grid():
    from rnncore.generate import load_default_model

    ck = load_default_model()
    rows = decoding_sweep(ck.model, ck.vocab, CorpusIndex(TRAIN), form="wujue",
                          temperatures=(0.7, 1.0), top_ps=(0.9,), num=3)
    assert [(r["temperature"], r["top_p"]) for r in rows] == [(0.7, 0.9), (1.0, 0.9)]
    assert all(r["poems"] == 3 and 0 <= r["attested_pair_share"] <= 1 for r in rows)


def test_quality_table_is_one_row_per_result_in_column_order():
    from rnncore.generate.quality import QUALITY_COLUMNS, quality_table

    r = {c: i / 8 for i, c in enumerate(QUALITY_COLUMNS)} | {"copied_run_p95": 6}
    head, rule, row = quality_table("poems", [("real (3)", r)])
    assert head.split(" | ")[1:-1] == list(QUALITY_COLUMNS[:-1])
    assert rule == "|---" * 7 + "|"
    assert row == "| real (3) | 0.000 | 0.125 | 0.250 | 6 | 0.500 | 0.625 |"


def test_each_form_has_its_measured_temperature():
    """The defaults are the newest committed decoding report's choices (a rerun of
    scripts/decoding_sweep.py that picks otherwise must update FORM_TEMPERATURE), and the
    CLI and the page take them from GenerationConfig."""
    from pathlib import Path

    from benchmarks.report import load_results
    from benchmarks.summary import reports_by_kind, what_to_choose
    from rnncore.generate import (DEFAULT_TOP_P, FORM_TEMPERATURE, GenerationConfig,
                                  default_temperature)
    from rnncore.poetry import FORMS

    results = Path(__file__).resolve().parents[1] / "benchmarks" / "results"
    by_kind = reports_by_kind(results)
    newest = load_results(by_kind["decoding"][0])["decoding"]
    assert newest["chosen_top_p"] == DEFAULT_TOP_P
    assert {f: d["chosen"]["temperature"] for f, d in newest["forms"].items()} \
        == FORM_TEMPERATURE
    assert set(FORM_TEMPERATURE) == set(FORMS)
    # the chosen settings sit within 0.04 of the real poems' attested-pair share (issue #15)
    for d in newest["forms"].values():
        assert abs(d["chosen"]["attested_pair_share"]
                   - d["real"]["attested_pair_share"]) <= 0.04, d["form_name"]
    for form, t in FORM_TEMPERATURE.items():
        assert GenerationConfig(form=form).temperature == t == default_temperature(form)
        assert GenerationConfig(form=FORMS[form].name).temperature == t
    assert GenerationConfig(form="qilv", temperature=1.3).temperature == 1.3
    assert GenerationConfig().top_p == DEFAULT_TOP_P
    found = [c for c in what_to_choose(results, by_kind) if c.kind == "decoding"]
    assert len(found) == 1 and "五言絕句 0.85 (0.850 against 0.833)" in found[0].text


def test_decoding_figure_draws_every_form():
    from rnncore.plots import decoding_figure

    q = {"attested_pair_share": 0.8, "distinct_pairs": 0.9, "seen_4gram_share": 0.05}
    rows = [dict(q, temperature=t, top_p=p) for t in (0.7, 0.9) for p in (0.8, 0.9)]
    record = {"chosen_top_p": 0.9, "forms": {
        f: {"real": q, "rows": rows, "chosen": rows[1]} for f in ("wujue", "qilv")}}
    fig = decoding_figure(record)
    legend = [t.name for t in fig.data if t.showlegend is not False]
    assert len(legend) == 4 and any("五絕" in n for n in legend)
    assert len(fig.data) == 2 * 2 * 4            # forms x panels x (line, others, real, chosen)
