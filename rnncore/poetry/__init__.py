"""Tang-poetry rules without torch: Chinese text (ideographs, marks, scripts), the
regulated-verse forms, 平水韻 rhyme groups, 平仄 tone templates and poem metrics.

The generator (``rnncore.generate``) turns these tables into vocab masks; the corpus loader
(``rnncore.data``) validates poems with the text rules.

=========== ==========================================================================
text        ideographs, line-end marks, split_poem / line_bodies, OpenCC conversion
forms       PoemForm, FORMS, get_form, form_of_shape, check_form
rhyme       PING / ZE / FREE, RhymeTable (rhyme_table()), check_rhyme
tones       tone_templates, tone_match
metrics     CorpusIndex (corpus_index()), poem_metrics
=========== ==========================================================================
"""
from rnncore.poetry.forms import (FORMS, OTHER_FORM, PoemForm, check_form, form_of_shape,
                                  get_form)
from rnncore.poetry.metrics import CorpusIndex, corpus_index, poem_metrics
from rnncore.poetry.rhyme import (
    FREE,
    PING,
    ZE,
    CharInfo,
    RhymeCheck,
    RhymeTable,
    check_rhyme,
    rhyme_table,
)
from rnncore.poetry.text import (
    ASCII_MARKS,
    END_MARKS,
    IDEOGRAPH_CLASS,
    IDEOGRAPH_RANGES,
    LACUNA,
    MARK_ALIASES,
    PAUSE_MARK,
    PAUSE_MARKS,
    STOP_MARK,
    STOP_MARKS,
    PoetryError,
    is_ideograph,
    line_bodies,
    split_poem,
    to_simplified,
    to_traditional,
)
from rnncore.poetry.tones import ToneTemplate, tone_match, tone_templates

__all__ = [
    "OTHER_FORM",
    "ASCII_MARKS", "END_MARKS", "IDEOGRAPH_CLASS", "IDEOGRAPH_RANGES", "LACUNA", "MARK_ALIASES",
    "PAUSE_MARK", "PAUSE_MARKS", "STOP_MARK", "STOP_MARKS", "PoetryError", "is_ideograph",
    "line_bodies", "split_poem", "to_simplified", "to_traditional",
    "FORMS", "PoemForm", "check_form", "form_of_shape", "get_form",
    "FREE", "PING", "ZE", "CharInfo", "RhymeCheck", "RhymeTable", "check_rhyme", "rhyme_table",
    "ToneTemplate", "tone_match", "tone_templates",
    "CorpusIndex", "corpus_index", "poem_metrics",
]
