"""Quality per second: our trainer against a plain torch.nn loop at equal training time.

``python -m benchmarks.measure_qps [--seconds 600] [--seeds 0,1,2] [--corpus tang]
[--out DIR] [--work DIR] [--quick]``

For each seed, two processes start together, one torch thread each (``side_by_side``):

* ours: ``python -m rnncore train`` with the CLI's defaults (head "auto": adaptive at the
  Tang vocabulary, Adam, LR, batch, truncation, clip) at LSTM 2 x 256, embedding 256,
  dropout 0.1, ``--max-minutes seconds / 60`` (training time: evaluation is not counted);
* plain: ``python -m benchmarks.plain_loop``, torch.nn.Embedding + torch.nn.LSTM + a full
  softmax nn.Linear, torch.optim.Adam, with the same recipe (``TrainConfig()``'s defaults).

Both train on ``prepare_data(DataConfig(corpus=...))`` (the bundled 七律 by default,
``quantangshi`` for the full Tang corpus: its split, held-out poems and vocabulary); both score a curve on the first
``curve_poems`` held-out poems every ``curve_every`` steps with their training clock
stopped (ours: ``--eval-every``/``--eval-max-poems``, which only decide what is measured).
Afterwards this process scores both final models with ONE evaluator (``evaluate_model`` on
all held-out poems, from the zero state): ours from its last checkpoint, the plain loop's
weights loaded into ``CharRNN``. ``evaluator_check`` compares that, on a few poems, with the
plain model's own torch.nn forward. Per run: steps, chars/s (training characters / training
seconds), final bpc, the curve; per trainer: mean and spread over the seeds; the targets
(``targets.qps_targets``). The report: ``DIR/results.json`` + ``report.md`` + ``qps.html``
(read by the Benchmarks page); an existing ``DIR`` is refused.
"""
from __future__ import annotations

import argparse
import datetime
import json
import math
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch

from benchmarks import side_by_side as sbs
from benchmarks.plain_loop import MODEL_FILE, PlainCharLM

TRAINERS = ("rnncore", "torch.nn")
QPS_MODEL = {"embedding_dim": 256, "hidden_size": 256, "num_layers": 2, "dropout": 0.1}
TINY_MODEL = {"embedding_dim": 8, "hidden_size": 16, "num_layers": 1, "dropout": 0.1}


@dataclass
class QpsConfig:
    """One comparison: ``seconds`` of training per run, one pair of runs per seed."""

    seconds: float = 600.0
    seeds: tuple[int, ...] = (0, 1, 2)
    model: dict = field(default_factory=lambda: dict(QPS_MODEL))
    curve_every: int = 50
    curve_poems: int = 200
    check_poems: int = 4
    quick: bool = False
    corpus: str = "tang"

    def __post_init__(self) -> None:
        if not (math.isfinite(self.seconds) and self.seconds > 0):
            raise ValueError(f"seconds must be positive, got {self.seconds}")
        if not self.seeds or len(set(self.seeds)) != len(self.seeds) or min(self.seeds) < 0:
            raise ValueError(f"seeds must be distinct non-negative integers, got {self.seeds}")
        if self.curve_every < 1 or self.curve_poems < 1:
            raise ValueError("curve_every and curve_poems must be positive")


def model_flags(model: dict) -> list[str]:
    return ["--embedding-dim", str(model["embedding_dim"]), "--hidden-size",
            str(model["hidden_size"]), "--layers", str(model["num_layers"]), "--dropout",
            str(model["dropout"])]


def commands(cfg: QpsConfig, seed: int, work: Path) -> dict[str, list[str]]:
    """The two command lines of one seed (ours: the CLI; plain: ``benchmarks.plain_loop``)."""
    curve = ["--eval-every", str(cfg.curve_every), "--eval-max-poems", str(cfg.curve_poems)]
    ours = sbs.rnncore_train(*model_flags(cfg.model), "--max-minutes", repr(cfg.seconds / 60),
                             "--seed", str(seed), "--device", "cpu", *curve,
                             "--corpus", cfg.corpus, "--out", str(work / f"rnncore-seed{seed}"))
    plain = [sys.executable, "-m", "benchmarks.plain_loop", "--seconds", repr(cfg.seconds),
             "--seed", str(seed), *model_flags(cfg.model), "--curve-every",
             str(cfg.curve_every), "--curve-poems", str(cfg.curve_poems),
             "--corpus", cfg.corpus, "--out", str(work / f"torch.nn-seed{seed}")]
    return {"rnncore": ours, "torch.nn": plain}


def load_plain(out: str | Path, vocab_size: int, model: dict) -> tuple[PlainCharLM, object]:
    """The plain loop's saved weights, in its own module and in a ``CharRNN`` (full head)."""
    from rnncore.model import CharRNN, ModelConfig

    state = torch.load(Path(out) / MODEL_FILE, weights_only=True)
    plain = PlainCharLM(vocab_size, **model)
    plain.load_state_dict(state)
    ours = CharRNN(ModelConfig(vocab_size=vocab_size, head="full", **model))
    ours.load_state_dict(state)
    return plain.eval(), ours


@torch.no_grad()
def torch_nn_bpc(plain: PlainCharLM, poems: list[list[int]]) -> float:
    """Bits per character of torch.nn's own forward, one poem at a time from the zero state
    (no padding, no batching: independent of ``evaluate_model``)."""
    nats, count = 0.0, 0
    for p in poems:
        ids = torch.tensor(p)[None]
        logits, _ = plain(ids[:, :-1])
        nats += float(torch.nn.functional.cross_entropy(logits[0], ids[0, 1:],
                                                        reduction="sum"))
        count += len(p) - 1
    return nats / count / math.log(2.0)


def run_row(trainer: str, seed: int, summary: dict, final: dict, **extra) -> dict:
    return {"trainer": trainer, "seed": seed, "steps": summary["steps"],
            "train_seconds": summary["elapsed_s"], "chars_per_s": summary["chars_per_s"],
            "final_bpc": final["bpc"], "final_characters": final["characters"],
            "curve": [{"step": e["step"], "seconds": e["elapsed_s"], "bpc": e["val_bpc"]}
                      for e in summary["evals"]], **extra}


def run_seed(cfg: QpsConfig, seed: int, work: Path, data) -> list[dict]:
    """Both trainings of ``seed`` side by side, then both scored by one evaluator."""
    cmds = commands(cfg, seed, work)
    launched = [sbs.start(name, argv, work / f"{name}-seed{seed}.log")
                for name, argv in cmds.items()]
    summaries = sbs.finish(launched)
    final = sbs.score_checkpoint(work / f"rnncore-seed{seed}")
    ours = run_row("rnncore", seed, summaries["rnncore"], final, head=final["head"],
                   checkpoint_step=final["step"])
    plain_model, as_charrnn = load_plain(work / f"torch.nn-seed{seed}", len(data.vocab),
                                         cfg.model)
    few = data.val[: cfg.check_poems]
    check = {"poems": len(few), "torch_nn_bpc": torch_nn_bpc(plain_model, few),
             "evaluator_bpc": sbs.score_model(as_charrnn, few)["bpc"]}
    check["abs_diff"] = abs(check["torch_nn_bpc"] - check["evaluator_bpc"])
    plain = run_row("torch.nn", seed, summaries["torch.nn"],
                    sbs.score_model(as_charrnn, data.val), head="full", evaluator_check=check)
    return [ours, plain]


def spread(values: list[float]) -> dict:
    mean = sum(values) / len(values)
    std = math.sqrt(sum((v - mean) ** 2 for v in values) / (len(values) - 1)) \
        if len(values) > 1 else 0.0
    return {"mean": mean, "std": std, "min": min(values), "max": max(values)}


def summarize(runs: list[dict]) -> dict:
    """Per trainer: mean/std/min/max over seeds of final bpc, chars/s and steps; and the
    comparison: ``bpc_gain`` = plain mean - ours mean, ``speed_ratio`` = ours / plain."""
    per = {t: {k: spread([r[k] for r in runs if r["trainer"] == t])
               for k in ("final_bpc", "chars_per_s", "steps")} for t in TRAINERS}
    return {"trainers": per,
            "bpc_gain": per["torch.nn"]["final_bpc"]["mean"] - per["rnncore"]["final_bpc"]["mean"],
            "speed_ratio": per["rnncore"]["chars_per_s"]["mean"]
            / per["torch.nn"]["chars_per_s"]["mean"]}


def measure_qps(cfg: QpsConfig, work: Path, progress=print) -> dict:
    """Every seed's pair of runs, their summary and targets: the report's ``qps`` dict."""
    from rnncore.heads import resolve_head
    from rnncore.kinds import DEFAULT_HEAD
    from rnncore.trainer import TrainConfig

    from rnncore.data import DataConfig

    torch.set_num_threads(1)
    data = sbs.held_out(DataConfig(corpus=cfg.corpus))
    runs = []
    for seed in cfg.seeds:
        progress(f"seed {seed}: both trainings for {cfg.seconds:g} s of training time")
        runs += run_seed(cfg, seed, work, data)
        with open(work / "runs.jsonl", "a", encoding="utf-8") as f:  # kept if a later seed fails
            f.write(json.dumps(runs[-2:]) + "\n")
    recipe = TrainConfig()
    return {"config": asdict(cfg), "runs": runs, "summary": summarize(runs),
            "vocab_size": len(data.vocab), "val_poems": len(data.val),
            "default_head": f"{DEFAULT_HEAD} -> {resolve_head(DEFAULT_HEAD, len(data.vocab))}",
            "recipe": {k: getattr(recipe, k) for k in ("optimizer", "lr", "batch_size",
                                                       "truncation_len", "clip_norm",
                                                       "strategy")},
            "commands": {name: argv[1:] for name, argv in commands(cfg, 0, Path("WORK")).items()}}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.measure_qps",
                                 description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=600.0, help="training time per run")
    ap.add_argument("--seeds", default="0,1,2", help="comma-separated seeds")
    ap.add_argument("--quick", action="store_true", help="a tiny model (a smoke test)")
    ap.add_argument("--corpus", default="tang",
                    help="what both train on: 'tang' (the bundled 七律) or 'quantangshi'")
    ap.add_argument("--out", default=None, help="new report directory (default "
                    "benchmarks/results/<stamp>-qps[-quick])")
    ap.add_argument("--work", default=None, help="new directory for the runs (default "
                    "runs/qps-<stamp>)")
    ap.add_argument("--no-png", action="store_true", help="HTML figure only")
    args = ap.parse_args(argv)
    stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
    try:
        try:
            seeds = tuple(int(s) for s in args.seeds.split(","))
        except ValueError:
            raise ValueError(f"--seeds must be comma-separated integers, got {args.seeds!r}")
        cfg = QpsConfig(seconds=args.seconds, seeds=seeds, quick=args.quick,
                        model=dict(TINY_MODEL if args.quick else QPS_MODEL), corpus=args.corpus)
        out = Path(args.out or f"benchmarks/results/{stamp}-qps{'-quick' if args.quick else ''}")
        work = Path(args.work or f"runs/qps-{stamp}")
        for d in (out, work):
            if d.exists():
                raise ValueError(f"{d} exists: a report or its runs are never overwritten")
        work.mkdir(parents=True)
        t0 = time.perf_counter()
        qps = measure_qps(cfg, work, lambda m: print(f"[{time.perf_counter() - t0:7.1f}s] {m}",
                                                      file=sys.stderr, flush=True))
        from benchmarks.report_qps import write_qps_report

        run_dir = write_qps_report(qps, out, png=not args.no_png)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print((run_dir / "report.md").read_text(encoding="utf-8"))
    print(f"report written to {run_dir}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
