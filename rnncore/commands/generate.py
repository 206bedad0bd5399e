"""``python -m rnncore generate``: write poems with a trained model (the bundled one by
default) and print them with their metrics.

Builds the same ``GenerationConfig`` the app does; a bad option prints ``error: ...`` and
exits 2 (through ``rnncore.cli``).
"""
from __future__ import annotations

import argparse
import re
import sys

from rnncore.commands import print_json


def register(subparsers) -> None:
    from rnncore.generate.config import FORM_TEMPERATURE, GenerationConfig

    defaults = GenerationConfig()  # the page and the CLI share these defaults
    p = subparsers.add_parser("generate", help="write Tang-style poems with a trained model",
                              description=__doc__.split("\n\n")[0])
    p.add_argument("--checkpoint", default=None,
                   help="checkpoint directory or run directory (default: the bundled model)")
    p.add_argument("--form", default="qijue",
                   help="qijue (七言絕句) | qilv (七言律詩) | wujue | wulv (default: qijue)")
    p.add_argument("--acrostic", default="",
                   help="one head character per line, e.g. 春夏秋冬 for a 絕句 (4 lines)")
    p.add_argument("--prefix", default="", help="the poem's first characters, continued")
    p.add_argument("--style", default="", help="text that primes the model (not printed)")
    p.add_argument("--lock", action="append", default=[], metavar="N:LINE",
                   help="keep line N (1-based) as LINE and write the others (repeatable)")
    # on by default, as on the Generate page: the decoding defaults were measured with them
    p.add_argument("--rhyme", action=argparse.BooleanOptionalAction, default=True,
                   help="even lines rhyme (平水韻; default on)")
    p.add_argument("--tones", action=argparse.BooleanOptionalAction, default=True,
                   help="follow a 平仄 template (default on)")
    p.add_argument("--soft", action="store_true",
                   help="rhyme/tones as penalties instead of hard masks")
    p.add_argument("--greedy", action="store_true", help="always take the likeliest character")
    p.add_argument("--beam", type=int, default=None, metavar="N", help="beam search of width N")
    per_form = ", ".join(f"{k} {t}" for k, t in FORM_TEMPERATURE.items())
    p.add_argument("--temperature", type=float, default=None,
                   help="below 1: safer, more common characters; above 1: more surprising "
                        f"ones (default: the form's, chosen by measurement: {per_form})")
    p.add_argument("--top-k", type=int, default=defaults.top_k,
                   help=f"sample among the k likeliest characters, 0 = off (default: "
                        f"{defaults.top_k})")
    p.add_argument("--top-p", type=float, default=defaults.top_p,
                   help="sample among the likeliest characters that hold this much "
                        f"probability, 1 = off (default: {defaults.top_p})")
    p.add_argument("--seed", type=int, default=0,
                   help="random seed: the same seed and options give the same poems "
                        "(default: 0)")
    p.add_argument("--num", type=int, default=1, help="number of poems (default: 1)")
    p.add_argument("--simplified", action="store_true", help="print simplified characters")
    p.add_argument("--novelty", action="store_true",
                   help="also measure copying from the bundled training corpus")
    p.add_argument("--json", action="store_true", help="print JSON on stdout")
    p.set_defaults(func=run)


def _locked(specs: list[str], form: str) -> dict[int, str]:
    """``--lock N:LINE`` options as {0-based line: text}; N is checked against the form."""
    from rnncore.poetry import PoetryError, get_form

    try:
        lines = get_form(form).num_lines
    except PoetryError:
        lines = None  # GenerationConfig reports the unknown form
    out = {}
    for spec in specs:
        index, sep, text = spec.partition(":")
        if not sep or not index.strip().isdigit() or int(index) < 1:
            raise ValueError(f"--lock expects N:LINE with N >= 1, got {spec!r}")
        if lines is not None and int(index) > lines:
            raise ValueError(f"--lock {spec}: a {get_form(form).name} has {lines} lines "
                             f"(N is 1 to {lines})")
        out[int(index) - 1] = text
    return out


def _one_based(message: str) -> str:
    """GenerationConfig names locked lines 0-based (``locked_lines[2]``); the CLI's
    ``--lock`` counts from 1."""
    return re.sub(r"locked_lines\[(\d+)\]", lambda m: f"--lock {int(m[1]) + 1}", message)


def build_config(args):
    from rnncore.generate import GenerationConfig, GenerationError

    if args.greedy and args.beam is not None:
        raise ValueError("--greedy and --beam exclude each other")
    strategy = "beam" if args.beam is not None else ("greedy" if args.greedy else "sample")
    try:
        return GenerationConfig(
            form=args.form, acrostic=args.acrostic, prefix=args.prefix, style=args.style,
            rhyme=args.rhyme, tones=args.tones, constraint="soft" if args.soft else "hard",
            strategy=strategy, temperature=args.temperature, top_k=args.top_k,
            top_p=args.top_p, beam_width=args.beam if args.beam is not None else 4,
            seed=args.seed, num=args.num, simplified=args.simplified,
            locked_lines=_locked(args.lock, args.form))
    except GenerationError as exc:
        raise GenerationError(_one_based(str(exc))) from None


def _summary(metrics: dict) -> str:
    parts = [f"form {'ok' if metrics['form_valid'] else 'BROKEN'}",
             f"rhyme {'ok' if metrics['rhyme_valid'] else 'no'}"
             + (f" ({metrics['rhyme_groups'][0]})" if metrics["rhyme_groups"] else ""),
             f"tones {metrics['tone_match']:.0%}"
             + (f" ({metrics['tone_template']})" if metrics.get("tone_template") else "")]
    if "longest_copied_run" in metrics:
        parts.append(f"longest copied run {metrics['longest_copied_run']}")
        parts.append(f"seen 4-grams {metrics['seen_4gram_share']:.0%}")
    return ", ".join(parts)


def run(args) -> int:
    from rnncore.generate import form_outside_training, generate, load_model

    cfg = build_config(args)  # validate before loading anything
    ckpt = load_model(args.checkpoint)
    corpus = None
    if args.novelty:
        from rnncore.data import load_corpus

        corpus = load_corpus("tang", simplified=False)
    poems = generate(ckpt.model, ckpt.vocab, cfg, training_corpus=corpus)
    outside = form_outside_training(ckpt, cfg.form)
    if outside:
        print(f"note: {outside}", file=sys.stderr)
    if args.json:
        print_json({"config": cfg.to_dict(), "poems": [p.to_dict() for p in poems]}, indent=1)
        return 0
    for i, poem in enumerate(poems):
        if i:
            print()
        for line in poem.lines:
            print(line)
        print(f"  [{_summary(poem.metrics)}; log-prob {poem.score:.1f} "
              f"({poem.metrics['mean_logprob']:.2f} per character)]")
        for note in poem.notes:
            print(f"  note: {note}")
    return 0
