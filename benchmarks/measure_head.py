"""Full softmax vs adaptive softmax head (``ModelConfig.head``): step time and quality per
second. ``python -m benchmarks.measure_head [--quick] [--seconds 120] [--out DIR]``.

*Step* (``measure_head_steps``): the whole truncated training step of
``measure_step.StepCase`` (fwd + bwd + clip + Adam, LSTM 2 x 256, E = 128, B = 32, T = 64,
dropout 0.1) and its ``head`` part (dropout + head + loss, fwd + bwd), for each head and
vocabulary size V, all timed round-robin in one process on one thread, so load changes hit
them alike; the ratio full / adaptive is the speed-up. The window is the bundled corpus'
(V = 4,953); a larger V reuses its tokens with the vocabulary padded to V: the targets keep
the corpus' frequency profile, which is what the adaptive head's cost depends on (the full
corpus' characters past the bundled vocabulary hold ~1% of its text).

*Quality* (``equal_wall_clock``): both heads trained *at the same time*, one process and one
thread each, for ``seconds`` of training on ``prepare_data(DataConfig())`` with the quality
record's settings (``scripts/quality_record.py``: Adam 3e-3, clip 1, TBPTT 64); then bits per
character on every held-out poem (``evaluate_model``: exact, over the full vocabulary).
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import multiprocessing
import platform
import time
from pathlib import Path

import torch

from benchmarks import measure_step as ms
from benchmarks.measure import median, time_interleaved

HEADS = ("full", "adaptive")
REAL = dict(embedding_dim=128, hidden_size=256, num_layers=2, dropout=0.1)
TINY = dict(embedding_dim=8, hidden_size=16, num_layers=1, dropout=0.1)


def measure_head_steps(vocab_sizes: tuple[int, ...], *, batch: int, window: int,
                       embedding_dim: int, hidden_size: int, num_layers: int, dropout: float,
                       warmup: int, repeats: int, seed: int = 0, max_poems: int | None = None
                       ) -> list[dict]:
    """Rows per (V, head): ``step_s`` and ``head_s`` (medians), ``chars_per_s`` and
    ``speedup`` = the full head's step time / this head's (same V), and the ``check`` that
    the step's parts are its whole (``StepCase.check``)."""
    from rnncore import data as D

    prepared = D.prepare_data(D.DataConfig(max_poems=max_poems))
    batcher = D.StreamBatcher(D.poem_stream(prepared.train, seed=seed, epoch=0), batch,
                              chunk_len=window)
    prev, _ = batcher.next_chunk()
    x, y = batcher.next_chunk()
    base = ms.StepBatch(x, y, prev, len(prepared.vocab), "corpus")
    cases = {}
    for V in vocab_sizes:
        data = dataclasses.replace(base, vocab_size=max(V, base.vocab_size))
        for head in HEADS:
            cases[(data.vocab_size, head)] = ms.StepCase(
                "bptt", data, embedding_dim=embedding_dim, hidden_size=hidden_size,
                num_layers=num_layers, dropout=dropout, clip=1.0, lr=3e-3, device="cpu",
                seed=seed, head=head)
    checks = {k: c.check() for k, c in cases.items()}
    fns = {f"{V}|{h}|{part}": getattr(c, part) for (V, h), c in cases.items()
           for part in ("step", "head")}
    times = time_interleaved(fns, "cpu", warmup, repeats)
    rows = []
    for (V, head), case in cases.items():
        t_step = median(times[f"{V}|{head}|step"])
        rows.append({"vocab_size": V, "head": head, "step_s": t_step,
                     "head_s": median(times[f"{V}|{head}|head"]),
                     "step_times_s": times[f"{V}|{head}|step"],
                     "chars_per_s": batch * window / t_step,
                     "speedup": median(times[f"{V}|full|step"]) / t_step,
                     "head_params": sum(p.numel() for p in case.model.head.parameters()),
                     "batch": batch, "window": window, "embedding_dim": embedding_dim,
                     "hidden_size": hidden_size, "num_layers": num_layers,
                     "cutoffs": list(case.model.cfg.head_cutoffs) if head != "full" else None,
                     **checks[(V, head)]})
    return rows


def train_for(head: str, seconds: float, model_kw: dict, train_kw: dict, data_kw: dict
              ) -> dict:
    """Train one ``CharRNN`` with ``head`` for ``seconds`` (one thread) and score it on every
    held-out poem."""
    from rnncore import data as D
    from rnncore.model import ModelConfig
    from rnncore.trainer import TrainConfig, Trainer

    torch.set_num_threads(1)
    prepared = D.prepare_data(D.DataConfig(**data_kw))
    cfg = ModelConfig(vocab_size=len(prepared.vocab), head=head, **model_kw)
    tcfg = TrainConfig(max_steps=None, max_minutes=seconds / 60.0, eval_every=0, device="cpu",
                       **train_kw)
    result = Trainer(cfg, tcfg, data=prepared).run()
    ev = result.final_eval
    return {"head": head, "steps": result.steps, "elapsed_s": result.elapsed_s,
            "chars_per_s": result.tokens_per_s, "train_loss": result.train_loss,
            "val_bpc": ev.val_bpc, "val_loss": ev.val_loss, "val_characters": ev.characters,
            "val_poems": len(prepared.val), "vocab_size": len(prepared.vocab)}


def _train_star(args: tuple) -> dict:
    return train_for(*args)


def equal_wall_clock(seconds: float, *, model_kw: dict = REAL, train_kw: dict | None = None,
                     data_kw: dict | None = None) -> list[dict]:
    """Both heads trained at once in their own (spawned, one-thread) processes."""
    train_kw = train_kw or dict(strategy="truncated", truncation_len=64, batch_size=32,
                                optimizer="adam", lr=3e-3, clip_norm=1.0, seed=0)
    jobs = [(h, seconds, dict(model_kw), dict(train_kw), dict(data_kw or {})) for h in HEADS]
    with multiprocessing.get_context("spawn").Pool(len(jobs)) as pool:
        return pool.map(_train_star, jobs)


def report_md(result: dict) -> str:
    """The markdown table of ``main``'s result."""
    m = result["meta"]
    lines = [f"# Full vs adaptive softmax head ({m['date']}, torch {m['torch']}, "
             f"{m['cpus']} CPUs, 1 thread per run)", "",
             "## Training step (LSTM {num_layers} x {hidden_size}, E {embedding_dim}, "
             "B {batch}, T {window}; medians, interleaved)".format(**result["steps"][0]), "",
             "| V | head | step ms | head part ms | chars/s | speed-up vs full |",
             "|---|---|---|---|---|---|"]
    for r in result["steps"]:
        lines.append(f"| {r['vocab_size']} | {r['head']} | {1e3 * r['step_s']:.1f} | "
                     f"{1e3 * r['head_s']:.1f} | {r['chars_per_s']:.0f} | {r['speedup']:.2f}x |")
    q = result["quality"]
    if q:
        lines += ["", f"## Held-out bpc after {m['seconds']:g} s of training each (trained at "
                  "the same time; all held-out poems, exact over the full vocabulary)", "",
                  "| head | steps | chars/s | val bpc |", "|---|---|---|---|"]
        lines += [f"| {r['head']} | {r['steps']} | {r['chars_per_s']:.0f} | {r['val_bpc']:.3f} |"
                  for r in q]
    return "\n".join(lines + [""])


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="tiny sizes (smoke test)")
    ap.add_argument("--seconds", type=float, default=120.0, help="training per head; 0: skip")
    ap.add_argument("--repeats", type=int, default=15)
    ap.add_argument("--out", default=None, help="default benchmarks/results/<stamp>-head")
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    size = TINY if args.quick else REAL
    steps = measure_head_steps((0, 8422) if not args.quick else (0, 2500),
                               batch=4 if args.quick else 32, window=8 if args.quick else 64,
                               warmup=1 if args.quick else 3, repeats=args.repeats,
                               max_poems=200 if args.quick else None, **size)
    quality = []
    if args.seconds > 0:
        quality = equal_wall_clock(args.seconds, model_kw=size,
                                   data_kw={"max_poems": 200} if args.quick else None)
    meta = {"date": time.strftime("%Y-%m-%d %H:%M:%S"), "torch": torch.__version__,
            "machine": platform.processor() or platform.machine(),
            "cpus": multiprocessing.cpu_count(), "seconds": args.seconds, "quick": args.quick}
    result = {"meta": meta, "steps": steps, "quality": quality}
    out = Path(args.out or f"benchmarks/results/{time.strftime('%Y%m%d-%H%M%S')}-head")
    out.mkdir(parents=True, exist_ok=True)
    (out / "head.json").write_text(json.dumps(result, indent=1))
    (out / "head.md").write_text(report_md(result))
    print(report_md(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
