"""The rest of the textbook chapter, computed (issue #18): each claim measured on a model.

    LeakyRNN, leaky_step      leaky units, h_t = a h_{t-1} + (1 - a) tanh(...)  (textbook.leaky)
    leaky_sweep, LeakySweep   ||dh_T/dh_(T-L)|| vs L for leaky units and LSTMs (gradflow.leaky)
    tree_vs_chain, TreeResult ||d root/d x_i||: chain vs balanced tree          (gradflow.tree)
    measure_exposure, load_result, ExposureConfig, ExposureResult
                              teacher forcing vs free running                   (exposure)
    measure_readers, load_reader_result, ReaderConfig, ReaderResult
                              sequence to one: bidirectional, forward, bag      (textbook.reader)
    measure_stopping, load_stopping_result, StoppingConfig, StoppingResult
                              <eos>, stop unit, predicted length               (textbook.stopping)
    measure_couplets, load_couplets_result, CoupletsConfig, CoupletsResult
                              encoder-decoder: fixed c vs attention on couplets
                                                                     (textbook.couplets)
    match_line, MatchConfig   the 下句 for a 上句 under the verse rules  (textbook.duiju)
    Seq2Seq, Seq2SeqConfig, attend   the encoder-decoder              (textbook.seq2seq)
    OutputRecurrentLM, measure_patterns, load_patterns, PatternsConfig, PatternsResult
                              design patterns 1 and 2 at equal CPU time (textbook.patterns)
    DeepRNNLM, measure_depth, load_depth, DepthConfig, DepthResult, PLACES
                              depth in three places at equal parameters    (textbook.depth)

Loaded lazily (``rnncore.textbook.leaky`` needs torch only; the probes need pandas).
"""
from __future__ import annotations

import importlib

_HOMES = {
    "LeakyRNN": "rnncore.textbook.leaky", "leaky_step": "rnncore.textbook.leaky",
    "leaky_cell_step": "rnncore.textbook.leaky",
    "leaky_sweep": "rnncore.gradflow.leaky", "LeakySweep": "rnncore.gradflow.leaky",
    "ALPHAS": "rnncore.gradflow.leaky",
    "tree_vs_chain": "rnncore.gradflow.tree", "TreeResult": "rnncore.gradflow.tree",
    "measure_exposure": "rnncore.exposure", "load_result": "rnncore.exposure",
    "ExposureConfig": "rnncore.exposure", "ExposureResult": "rnncore.exposure",
    "ExposureError": "rnncore.exposure",
    **dict.fromkeys(("measure_readers", "load_reader_result", "ReaderConfig", "ReaderResult",
                     "ReaderError"), "rnncore.textbook.reader"),
    **dict.fromkeys(("measure_stopping", "load_stopping_result", "StoppingConfig",
                     "StoppingResult", "StoppingError"), "rnncore.textbook.stopping"),
    **{name: "rnncore.textbook.couplets" for name in (
        "measure_couplets", "load_couplets_result", "CoupletsConfig", "CoupletsResult",
        "CoupletError", "poem_couplets")},
    **{name: "rnncore.textbook.duiju" for name in (
        "match_line", "MatchConfig", "CoupletMatch", "check_first_line", "couplet_checks")},
    **{name: "rnncore.textbook.seq2seq" for name in (
        "Seq2Seq", "Seq2SeqConfig", "Seq2SeqError", "attend")},
    "OutputRecurrentLM": "rnncore.textbook.patterns",
    "measure_patterns": "rnncore.textbook.patterns",
    "PatternsConfig": "rnncore.textbook.patterns",
    "PatternsResult": "rnncore.textbook.patterns",
    "PatternsError": "rnncore.textbook.patterns",
    "load_patterns": "rnncore.textbook.patterns",
    "DeepRNNLM": "rnncore.textbook.depth", "measure_depth": "rnncore.textbook.depth",
    "DepthConfig": "rnncore.textbook.depth", "DepthResult": "rnncore.textbook.depth",
    "DepthError": "rnncore.textbook.depth", "load_depth": "rnncore.textbook.depth",
    "PLACES": "rnncore.textbook.depth",
}
__all__ = sorted(_HOMES)


def __getattr__(name: str):
    if name not in _HOMES:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(_HOMES[name]), name)


def __dir__() -> list[str]:
    return __all__
