"""Poem generation from a ``CharRNN``: sampling, greedy, beam search, constrained decoding.

Decoding writes the form's ``L * (W + 1)`` tokens (``L`` lines of ``W`` characters, each
followed by its mark) one position at a time, carrying the recurrent state with
``model.step(tokens (B,), state) -> (logits (B, V), state)``; many poems are one batch
(``B = num``, or ``num * locked_candidates`` with locked lines, or the beam width).

The package, one concern a module:

* ``config``: ``GenerationConfig`` (the checked request), ``GeneratedPoem``, the errors;
* ``tables``: per-vocab masks (structure, 平仄, rhyme groups) and per-form template codes;
* ``stepper``: the decoding engines, the fused (and float16-packed) LSTM step;
* ``sampling``: top-k, nucleus (top-p) and inverse-CDF draws from a seeded generator;
* ``decoder``: the scores and masks at each position, greedy / sample / beam search;
* here: ``generate`` (rows, candidates for locked lines, the returned poems) and the
  bundled model.

Reported per character: ``probs`` / ``logprobs`` = the model's own distribution
(temperature 1, no constraints) at the chosen token -- how natural the model found it;
``relative`` = that probability over the best the rules allowed there (1 = the model's first
choice, None for a forced token), which varies where ``probs`` is small everywhere. Where
the token is forced (line-end marks, fixed characters) sampling skips the head during
decoding and computes these log-probs for all forced positions in one product afterwards.

Cost (bundled model, V = 4,953, one 七言律詩 = 64 positions, 56 free): per free position one
head product (H x V), one log-softmax, one softmax, one cumsum and a rejection test per draw
(two passes over V); per position one LSTM step. See ``benchmarks/test_bench_generate.py``.
"""
from __future__ import annotations

import contextlib
import copy
import functools
import importlib.resources
import math
from pathlib import Path

import torch

from rnncore.generate.config import (
    CONSTRAINTS,
    DEFAULT_TOP_P,
    FORM_TEMPERATURE,
    MAX_NUM,
    STRATEGIES,
    DefaultModelMissing,
    GeneratedPoem,
    GenerationConfig,
    GenerationError,
    default_temperature,
)
from rnncore.generate.decoder import _Decoder
# the private names below are re-exported for the tests, which reach them as ``G._name``
from rnncore.generate.sampling import (
    NUCLEUS_ROUNDS,
    _filter_top_k,
    _nucleus_keep,
    _sample_nucleus,
    _sample_probs,
)
from rnncore.generate.stepper import _FUSED_CACHE, _LSTMStepper
from rnncore.poetry import corpus_index, get_form, poem_metrics, to_simplified, to_traditional

__all__ = [
    "CONSTRAINTS", "DEFAULT_TOP_P", "FORM_TEMPERATURE", "MAX_NUM", "NUCLEUS_ROUNDS",
    "STRATEGIES", "DefaultModelMissing", "GeneratedPoem", "GenerationConfig",
    "GenerationError", "default_model_path", "default_temperature",
    "form_outside_training", "generate", "load_default_model", "load_model",
]

_DEFAULT_MODEL_DIR = ("assets", "tang_default")


def _style_ids(style: str, vocab, notes: list[str]) -> list[int]:
    ids, dropped = [], []
    for c in "".join(style.split()):
        for variant in (c, to_simplified(c), to_traditional(c)):
            if len(variant) == 1 and variant in vocab:
                ids.append(vocab.stoi[variant])
                break
        else:
            dropped.append(c)
    if style.strip() and not ids:
        raise GenerationError("none of the style text's characters is in the model's vocabulary")
    if dropped:
        notes.append(f"style characters outside the vocabulary were skipped: {''.join(dropped)}")
    return ids


def _needs_rescoring(cfg: GenerationConfig) -> bool:
    """Locked lines after a free line: sample candidates and keep the one under which the
    locked lines are most likely (the free lines cannot see them causally)."""
    if not cfg.locked_lines or cfg.strategy != "sample":
        return False
    free = [i for i in range(cfg.poem_form.num_lines) if i not in cfg.locked_lines]
    return bool(free) and min(free) < max(cfg.locked_lines)


@contextlib.contextmanager
def _eval_mode(model):
    """Decode in eval mode (no dropout), then put the model back as it was."""
    was_training = model.training
    model.eval()
    try:
        yield
    finally:
        model.train(was_training)


def generate(model, vocab, cfg: GenerationConfig, training_corpus=None) -> list[GeneratedPoem]:
    """Write ``cfg.num`` poems of ``cfg.form`` (see ``decoder`` for the decoding).

    ``training_corpus`` (a ``Corpus``, list of poems / texts or ``poetry.CorpusIndex``)
    adds novelty metrics and a note when the form is rare in it.

    Locked lines: every character of a locked line is forced, so the state flows through it
    and later lines are conditioned on it. Lines *before* a locked line cannot see it in a
    left-to-right model, so with sampling ``locked_candidates`` candidates are drawn per
    poem and the one maximising ``log p(locked lines | everything before them)`` is kept
    (rescoring by the likelihood of the locked continuation); the tone and rhyme state also
    starts from the locked characters, so earlier free lines follow their template and rhyme
    group. Beam search scores forced characters too, which is the same rescoring.
    """
    if not isinstance(cfg, GenerationConfig):
        raise TypeError("generate expects a GenerationConfig")
    param = next(model.parameters(), None)
    if param is not None and param.device.type != "cpu":
        # Decoding is one token at a time over a few rows: launch latency, not arithmetic,
        # dominates on a GPU, so a model trained there is sampled from a CPU copy.
        model = copy.deepcopy(model).cpu()
    form = cfg.poem_form
    common: list[str] = []
    style_ids = _style_ids(cfg.style, vocab, common) if cfg.style else []
    index = corpus_index(training_corpus) if training_corpus is not None else None
    if index is not None and index.shapes and index.shape_share(form) < 0.05:
        main = index.main_form()
        trained = main.name if main else "other shapes"
        common.append(f"form outside the training data (the model was trained on {trained})")

    candidates = cfg.locked_candidates if _needs_rescoring(cfg) else 1
    if cfg.strategy == "beam":
        rows = max(cfg.beam_width, cfg.num)
    else:
        rows = cfg.num * candidates
    seed = cfg.seed if cfg.seed is not None else int(torch.randint(0, 2**62, ()).item())
    generator = torch.Generator().manual_seed(seed)

    with torch.inference_mode(), _eval_mode(model):
        decoder = _Decoder(model, vocab, cfg, rows)
        tokens, logprobs, locked, beam_score, relative = decoder.run(style_ids, generator)

    if cfg.strategy == "beam":
        picks = torch.argsort(beam_score, descending=True)[: cfg.num].tolist()
    elif candidates > 1:
        per_poem = locked.reshape(cfg.num, candidates)
        picks = (per_poem.argmax(1) + torch.arange(cfg.num) * candidates).tolist()
    else:
        picks = list(range(cfg.num))

    poems = []
    for r in picks:
        ids = tokens[r].tolist()
        chars = [vocab.itos[i] for i in ids]
        model_text = "".join(chars)
        lp = logprobs[r].tolist()
        rel = [None if math.isnan(x) else math.exp(x) for x in relative[r].tolist()]
        metrics = poem_metrics(model_text, form, index)
        # the model's own (temperature-1, unconstrained) log-probability per character
        metrics["mean_logprob"] = float(sum(lp) / len(lp)) if lp else 0.0
        notes = list(common) + decoder.notes[r]
        if candidates > 1:
            notes.append(f"best of {candidates} candidates by the likelihood of the locked lines")
        out_chars = chars
        if cfg.simplified:
            converted = to_simplified(model_text)
            out_chars = list(converted) if len(converted) == len(chars) else \
                [to_simplified(c)[:1] or c for c in chars]
        text = "".join(out_chars)
        W = form.line_length + 1
        lines = [text[i : i + W] for i in range(0, len(text), W)]
        poems.append(GeneratedPoem(
            text=text, lines=lines, chars=out_chars, probs=[math.exp(x) for x in lp],
            logprobs=lp, score=float(sum(lp)), metrics=metrics, notes=notes,
            relative=rel))
    return poems


BUNDLED_CORPUS_FORM = "qilv"  # the bundled corpus ("tang") holds 七言律詩 only


def form_outside_training(checkpoint, form: str) -> str | None:
    """A warning when ``checkpoint`` was trained on the bundled corpus only (七言律詩) and
    ``form`` is another form; None otherwise, or when the checkpoint does not say."""
    state = getattr(checkpoint, "trainer_state", None)
    target = get_form(form)
    if state is None or state.data_config.corpus != "tang" or target.key == BUNDLED_CORPUS_FORM:
        return None
    trained = get_form(BUNDLED_CORPUS_FORM).name
    if target.line_length != get_form(BUNDLED_CORPUS_FORM).line_length:
        return (f"This model was trained only on {trained} (lines of 7 characters): a "
                f"{target.name} is outside its training data. The form is enforced, but it "
                f"never learned to end a line after {target.line_length} characters, so "
                f"expect weaker lines.")
    return (f"This model was trained only on {trained} (8 lines): a {target.name} of "
            f"{target.num_lines} lines is outside its training data (it is the first half "
            f"of what the model learned, so its ending is abrupt).")


def default_model_path() -> Path:
    """Where the bundled checkpoint lives (``rnncore/assets/tang_default``)."""
    return Path(str(importlib.resources.files("rnncore").joinpath(*_DEFAULT_MODEL_DIR)))


@functools.lru_cache(maxsize=1)
def load_default_model():
    """The bundled checkpoint (a ``Checkpoint``), loaded once per process."""
    from rnncore.checkpoint import is_checkpoint_dir, load_checkpoint

    path = default_model_path()
    if not is_checkpoint_dir(path):
        raise DefaultModelMissing(
            f"the bundled model is missing ({path}); train one with `python -m rnncore train` "
            "and pass its checkpoint")
    return load_checkpoint(path, map_location="cpu", load_optimizer=False)


def load_model(checkpoint=None):
    """The checkpoint at ``checkpoint`` (a checkpoint or run directory, weights only, on the
    CPU), or the bundled model when it is None or empty."""
    if not checkpoint:
        return load_default_model()
    from rnncore.checkpoint import load_checkpoint

    return load_checkpoint(checkpoint, map_location="cpu", load_optimizer=False)
