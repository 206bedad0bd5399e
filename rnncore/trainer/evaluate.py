"""Validation: ``evaluate_model`` over whole poems (``evaluate_by_form`` per form), and the
metrics of summed losses (``metrics_from_sums``, which the data-parallel trainer applies to
all ranks' sums)."""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from rnncore import data as D
from rnncore.model import CharRNN

LN2 = math.log(2.0)


@torch.no_grad()
def evaluate_model(model: CharRNN, encoded_poems: list[list[int]], batch_size: int = 64,
                   device: torch.device | str | None = None, *,
                   from_start_state: bool = True) -> dict:
    """Validation metrics over whole poems, each from the model's poem start state
    (``CharRNN.poem_start_state``; the zero state for a model without one, or with
    ``from_start_state`` false).

    Returns ``loss_sum`` (nats), ``characters`` (predicted symbols, ``<eos>`` included, pad
    excluded), ``loss = loss_sum / characters``, ``bpc = loss / ln 2``,
    ``perplexity = exp(loss)``. The model's train/eval mode is restored afterwards.
    Exact over the full vocabulary for every head: the cross-entropy takes log_softmax of
    the model's logits, and the adaptive head's logits are its log-probabilities already
    (log_softmax leaves them as they are).
    """
    if not encoded_poems:
        raise ValueError("no validation poems to evaluate on")
    was_training = model.training
    model.eval()
    device = device or next(model.parameters()).device
    total, count = 0.0, 0
    try:
        for batch in D.poem_batches(encoded_poems, batch_size, shuffle=False):
            inputs = batch.inputs.to(device)
            # models other than CharRNN (the textbook's variants) start from zeros
            start_of = getattr(model, "poem_start_state", None) if from_start_state else None
            start = start_of(inputs.shape[0]) if start_of is not None else None
            logits, _ = model(inputs, start)
            # at least float32 (a half model's logits), float64 kept
            logits = logits.to(torch.promote_types(logits.dtype, torch.float32))
            loss = F.cross_entropy(logits.reshape(-1, logits.size(-1)),
                                   batch.targets.to(device).reshape(-1),
                                   ignore_index=D.IGNORE_INDEX, reduction="sum")
            total += float(loss)
            count += int(batch.mask.sum())
    finally:
        model.train(was_training)
    return metrics_from_sums(total, count)


def metrics_from_sums(loss_sum: float, characters: int) -> dict:
    """``loss_sum`` nats over ``characters`` predicted symbols -> the dict of
    ``evaluate_model``."""
    # exp overflows a float past ~709 nats: a diverged model gets a huge perplexity, not inf
    loss = loss_sum / max(characters, 1)
    return {"loss_sum": loss_sum, "characters": characters, "loss": loss, "bpc": loss / LN2,
            "perplexity": math.exp(min(loss, 700.0))}


def evaluate_by_form(model, vocab, poems, batch_size: int = 64,
                     device: torch.device | str | None = None) -> dict[str, dict]:
    """``evaluate_model`` per ``Poem.form``: each poem encoded with its form's start token
    (``Vocab.encode_poem``), as training saw it. Returns {form: metrics}."""
    by_form: dict[str, list] = {}
    for poem in poems:
        by_form.setdefault(poem.form, []).append(vocab.encode_poem(poem.text, poem.form))
    return {form: evaluate_model(model, encoded, batch_size, device)
            for form, encoded in by_form.items()}
