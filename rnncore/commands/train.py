"""``python -m rnncore train``: build DataConfig / ModelConfig / TrainConfig from flags and
run a ``Trainer`` (the app builds the same dataclasses).

Also works under ``torchrun --nproc_per_node=N -m rnncore train ...`` (data parallel;
rank 0 prints and saves). A progress bar goes to stderr; ``--json`` prints one JSON
summary on stdout.
"""
from __future__ import annotations

import datetime as _dt
import sys
from pathlib import Path

from rnncore.commands import print_json
from rnncore.kinds import AUTO_ADAPTIVE_MIN_VOCAB, DEFAULT_HEAD

# flag -> (config, field); None defaults mean "the dataclass default"
DATA_FLAGS = {"corpus": "corpus", "simplified": "simplified", "max_poems": "max_poems",
              "val_fraction": "val_fraction", "form_tokens": "form_tokens",
              "extra_train": "extra_train"}
MODEL_FLAGS = {"cell": "cell", "hidden_size": "hidden_size", "layers": "num_layers",
               "embedding_dim": "embedding_dim", "dropout": "dropout", "engine": "engine",
               "head": "head"}
TRAIN_FLAGS = {"strategy": "strategy", "truncation": "truncation_len",
               "update_interval": "update_interval", "keep_prob": "randomized_keep_prob",
               "batch_size": "batch_size", "optimizer": "optimizer", "lr": "lr",
               "momentum": "momentum", "weight_decay": "weight_decay",
               "lr_schedule": "lr_schedule", "warmup": "warmup_steps", "clip": "clip_norm",
               "max_steps": "max_steps", "max_minutes": "max_minutes",
               "eval_every": "eval_every", "eval_max_poems": "eval_max_poems",
               "patience": "patience", "checkpoint_every": "checkpoint_every",
               "checkpoint_minutes": "checkpoint_minutes", "keep_last": "keep_last",
               "seed": "seed", "device": "device"}


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "train", help="train a character-level RNN on poems",
        description="Train a CharRNN (full, truncated or randomized BPTT). Every option "
                    "left out takes the default shown.")
    d = p.add_argument_group("data")
    d.add_argument("--corpus", default=None, help="'tang' (the bundled 七律; default), "
                   "'quantangshi' (the full 全唐詩 after `corpus fetch`), a .tgz of "
                   "chinese-poetry, or a file/directory")
    d.add_argument("--simplified", action="store_true", default=None,
                   help="convert the corpus to simplified characters")
    d.add_argument("--max-poems", type=int, default=None,
                   help="use only the first N poems (default: all)")
    d.add_argument("--val-fraction", type=float, default=None,
                   help="share of the poems held out for validation (default: 0.05)")
    d.add_argument("--form-tokens", action="store_true", default=None,
                   help="start each poem with its form's token: one model for every form, "
                        "told which it writes")
    d.add_argument("--extra-train", default=None,
                   help="a second corpus ('quansongshi': the Song poems) whose 絕句 and 律詩 "
                        "written in the main corpus's characters join the training poems "
                        "(never the held-out ones)")
    m = p.add_argument_group("model")
    m.add_argument("--cell", default=None, help="rnn | lstm | gru (default: lstm)")
    m.add_argument("--hidden-size", type=int, default=None,
                   help="hidden units per layer (default: 256)")
    m.add_argument("--layers", type=int, default=None,
                   help="stacked recurrent layers (default: 2)")
    m.add_argument("--embedding-dim", type=int, default=None,
                   help="character embedding size (default: 128)")
    m.add_argument("--dropout", type=float, default=None,
                   help="dropout between layers (default: 0.0)")
    m.add_argument("--engine", default=None, help="bptt (hand-derived backward) | autograd | "
                   "native (torch's kernels) (default: bptt)")
    m.add_argument("--head", default=None,
                   help="auto | full | adaptive: the adaptive softmax trains 2-3x faster per "
                        "step at a 5-8k character vocabulary, exact at evaluation; auto = "
                        f"adaptive from {AUTO_ADAPTIVE_MIN_VOCAB:,} characters on "
                        f"(default: {DEFAULT_HEAD})")
    t = p.add_argument_group("training")
    t.add_argument("--strategy", default=None,
                   help="full | truncated | randomized (default: truncated)")
    t.add_argument("--truncation", type=int, default=None,
                   help="k2: steps backpropagated through (default: 64)")
    t.add_argument("--update-interval", type=int, default=None,
                   help="k1: new characters per update, at most k2 (default: k2)")
    t.add_argument("--keep-prob", type=float, default=None,
                   help="randomized: probability the gradient passes one more step "
                        "(default: 0.9)")
    t.add_argument("--batch-size", type=int, default=None,
                   help="rows per batch, per process (default: 32)")
    t.add_argument("--optimizer", default=None, help="adam | sgd (default: adam)")
    t.add_argument("--lr", type=float, default=None, help="learning rate (default: 0.002)")
    t.add_argument("--momentum", type=float, default=None, help="SGD momentum (default: 0.0)")
    t.add_argument("--weight-decay", type=float, default=None,
                   help="L2 weight decay (default: 0.0)")
    t.add_argument("--lr-schedule", default=None,
                   help="none | cosine | step (default: none)")
    t.add_argument("--warmup", type=int, default=None,
                   help="learning-rate warm-up steps (default: 0)")
    t.add_argument("--clip", type=float, default=None,
                   help="clip the global gradient norm at this value, 0 = off (default: 1.0)")
    t.add_argument("--max-steps", type=int, default=None,
                   help="stop after this many updates (default: 1000; no cap when only "
                        "--max-minutes is given)")
    t.add_argument("--max-minutes", type=float, default=None,
                   help="training-time budget; evaluation and checkpoints are not counted "
                        "(default: none)")
    t.add_argument("--eval-every", type=int, default=None,
                   help="updates between validations, 0 = only at the end (default: 200)")
    t.add_argument("--eval-max-poems", type=int, default=None,
                   help="validate on at most N poems (default: all held out)")
    t.add_argument("--patience", type=int, default=None,
                   help="early stopping after N validations without improvement, 0 = off "
                        "(default: 0)")
    t.add_argument("--checkpoint-every", type=int, default=None,
                   help="updates between checkpoints, 0 = only at the end (default: 0)")
    t.add_argument("--checkpoint-minutes", type=float, default=None,
                   help="also save once this many minutes passed since the last checkpoint "
                        "(default: off)")
    t.add_argument("--keep-last", type=int, default=None,
                   help="checkpoints kept besides the best (default: 3)")
    t.add_argument("--seed", type=int, default=None, help="random seed (default: 0)")
    t.add_argument("--device", default=None, help="auto | cpu | cuda (default: auto)")
    o = p.add_argument_group("output")
    o.add_argument("--out", default=None,
                   help="run directory, new or empty (default: runs/train-<time>)")
    o.add_argument("--resume", default=None, metavar="DIR",
                   help="continue the run saved in DIR (a run directory or checkpoint)")
    o.add_argument("--json", action="store_true", help="print a JSON summary on stdout")
    o.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=run)


def _given(args, flags: dict) -> dict:
    return {field: getattr(args, flag) for flag, field in flags.items()
            if getattr(args, flag) is not None}


def _check_out_dir(out: Path) -> None:
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise ValueError(f"--out {out} already exists and is not empty (use --resume {out} "
                         f"to continue it, or choose another --out)")
    above = next((p for p in out.parents if p.exists()), None)
    if above is not None and not above.is_dir():
        raise ValueError(f"--out {out}: {above} is a file, not a directory")


class _Progress:
    """tqdm bar on stderr with rate and ETA: over steps, or over the training-time budget
    when ``--max-minutes`` is set (then the step count goes into the postfix; evaluation
    time is not training time: the records' ``elapsed_s`` leave it out)."""

    def __init__(self, max_steps: int | None, max_minutes: float | None, initial: int,
                 elapsed_before: float = 0.0) -> None:
        from tqdm import tqdm

        self._tqdm = tqdm
        self.by_time = max_minutes is not None
        total = round(max_minutes * 60, 1) if self.by_time else max_steps
        self.bar = tqdm(total=total, initial=0 if self.by_time else initial,
                        unit="s" if self.by_time else "step", file=sys.stderr,
                        dynamic_ncols=True, smoothing=0.1,
                        bar_format=None if not self.by_time else
                        "{l_bar}{bar}| {n:.0f}/{total:.0f} s [{elapsed}<{remaining}{postfix}]")
        self._before = elapsed_before  # training time of the resumed run

    def on_step(self, rec) -> None:
        if self.by_time:
            done = min(rec.elapsed_s - self._before, self.bar.total)
            self.bar.update(done - self.bar.n)
        else:
            self.bar.update(1)
        post = dict(loss=f"{rec.loss:.3f}", bpc=f"{rec.bpc:.3f}", lr=f"{rec.lr:.2g}",
                    cps=f"{rec.tokens_per_s:.0f}")
        if self.by_time:
            post = {"step": rec.step, **post}
        self.bar.set_postfix(post, refresh=False)
        if rec.event:
            self._tqdm.write(f"step {rec.step}: {rec.event}", file=sys.stderr)

    def on_eval(self, ev) -> None:
        self._tqdm.write(f"step {ev.step}: val loss {ev.val_loss:.4f}  bpc {ev.val_bpc:.4f}  "
                         f"ppl {ev.val_perplexity:.4g}{'  (best)' if ev.is_best else ''}",
                         file=sys.stderr)

    def close(self) -> None:
        self.bar.close()


class _Quiet:
    """Evaluation lines only (``--no-progress``)."""

    def on_eval(self, ev) -> None:
        print(f"step {ev.step}: val loss {ev.val_loss:.4f}  bpc {ev.val_bpc:.4f}",
              file=sys.stderr)


def run(args) -> int:
    from rnncore import data as D
    from rnncore.checkpoint import is_checkpoint_dir
    from rnncore.data.tang import SOURCE_NAMES
    from rnncore.distributed import init_from_env, shutdown
    from rnncore.model import ModelConfig
    from rnncore.trainer import RESUME_OVERRIDABLE, TrainConfig, Trainer, resolve_device

    train_given = _given(args, TRAIN_FLAGS)
    if args.resume:
        fixed = {**_given(args, DATA_FLAGS), **_given(args, MODEL_FLAGS),
                 **{k: v for k, v in train_given.items() if k not in RESUME_OVERRIDABLE}}
        if fixed:
            names = ", ".join(sorted(fixed))
            raise ValueError(f"cannot change {names} when resuming (only budgets, device, "
                             f"evaluation and checkpoint settings)")
        resume = Path(args.resume)
        if not resume.exists():
            raise ValueError(f"--resume {resume} does not exist")
        out = Path(args.out) if args.out else (resume if resume.is_dir() and not
                                               is_checkpoint_dir(resume) else resume.parent)
        if args.out and out.resolve() != resume.resolve():
            _check_out_dir(out)
        device = train_given.get("device", "auto")
    else:
        data_cfg = D.DataConfig(**_given(args, DATA_FLAGS))
        if data_cfg.corpus not in ("tang", *SOURCE_NAMES) and Path(data_cfg.corpus).exists():
            # saved absolute in the checkpoint, so the run resumes from any directory
            data_cfg.corpus = str(Path(data_cfg.corpus).resolve())
        model_fields = {"head": DEFAULT_HEAD, **_given(args, MODEL_FLAGS)}
        ModelConfig(**{**model_fields, "vocab_size": 5})  # validate flags before loading data
        out = Path(args.out) if args.out else Path(
            "runs", _dt.datetime.now().strftime("train-%Y%m%d-%H%M%S"))
        _check_out_dir(out)
        if "max_minutes" in train_given and "max_steps" not in train_given:
            train_given["max_steps"] = None  # a time budget alone: no step cap
        cfg = TrainConfig(**{**train_given, "out_dir": str(out)})
        device = cfg.device
    if args.resume:
        overrides = {k: v for k, v in train_given.items() if k in RESUME_OVERRIDABLE}
        overrides["out_dir"] = str(out)

        def build(ctx):
            return Trainer.resume(args.resume, overrides, dist_ctx=ctx)
    else:
        def build(ctx):
            prepared = D.prepare_data(data_cfg)
            model_cfg = ModelConfig(**{**model_fields, "vocab_size": len(prepared.vocab)})
            return Trainer(model_cfg, cfg, data_cfg, data=prepared, dist_ctx=ctx)

    ctx = init_from_env(use_cuda=resolve_device(device).type == "cuda")
    ended = False
    try:
        code = _train(args, ctx, build(ctx), out)
        ended = True
        return code
    finally:
        shutdown(ctx, synchronize=ended)


def _train(args, ctx, trainer, out: Path) -> int:
    """Run ``trainer`` and report; the trainer (and its DDP wrapper) is released on return,
    before the process group is destroyed."""
    callbacks = []
    progress = None
    if ctx.is_main:
        if args.no_progress:
            callbacks.append(_Quiet())
        else:
            progress = _Progress(trainer.cfg.max_steps, trainer.cfg.max_minutes, trainer.step,
                                 trainer.state.elapsed_s)
            callbacks.append(progress)
        if not args.json:
            m = trainer.model
            print(f"{trainer.model_config.cell} {trainer.model_config.num_layers}x"
                  f"{trainer.model_config.hidden_size}, {m.num_parameters():,} parameters, "
                  f"vocab {len(trainer.vocab)}, {len(trainer.data.train)} train / "
                  f"{len(trainer.data.val)} val poems, {trainer.cfg.strategy} BPTT on "
                  f"{trainer.device}" + (f" x{ctx.world_size} processes" if ctx.enabled else ""),
                  file=sys.stderr)
    try:
        result = trainer.run(callbacks=callbacks)
    finally:
        if progress is not None:
            progress.close()
    if ctx.is_main:
        summary = {**result.summary(), "out": str(out), "device": str(trainer.device)}
        if args.json:
            print_json(summary)
        else:
            val = (f"val loss {summary['val_loss']:.4f}, bpc {summary['val_bpc']:.4f}, "
                   f"perplexity {summary['val_perplexity']:.4g}; "
                   if summary["val_loss"] is not None else "")
            print(f"stopped ({result.stop_reason}) after {result.steps} steps in "
                  f"{result.elapsed_s:.1f} s: {val}{result.tokens_per_s:.0f} chars/s; "
                  f"checkpoint {result.checkpoint}")
    return 1 if result.stop_reason == "diverged" else 0
