"""Quality record: validation bits per character after a fixed wall-clock budget.

python scripts/quality_record.py [--minutes 10] [--out runs/quality] [--report DIR]
                                 [--strategies full,truncated,randomized]

For each strategy, one LSTM 2 x 256 CharRNN with rnncore's "bptt" engine and one with
"native" (torch.nn.LSTM, the same model otherwise) are trained *at the same time* with
this project's CLI, one torch thread each, so both see the same machine load and the same
budget. Afterwards each run's best checkpoint (chosen on a 200-poem slice of the held-out
poems) is evaluated on every held-out poem. The table goes to ``REPORT/quality.json`` and
``REPORT/quality.md``.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

ENGINES = ("bptt", "native")
COMMON = ["--corpus", "tang", "--cell", "lstm", "--hidden-size", "256", "--layers", "2",
          "--embedding-dim", "128", "--dropout", "0.1", "--batch-size", "32",
          "--optimizer", "adam", "--lr", "0.003", "--clip", "1.0", "--truncation", "64",
          "--eval-every", "100", "--eval-max-poems", "200", "--checkpoint-every", "100",
          "--keep-last", "1", "--seed", "0", "--device", "cpu", "--json", "--no-progress"]


def command(strategy: str, engine: str, minutes: float, out: Path) -> list[str]:
    return [sys.executable, "-m", "rnncore", "train", *COMMON, "--strategy", strategy,
            "--engine", engine, "--max-minutes", str(minutes), "--max-steps", "1000000",
            "--out", str(out)]


def final_eval(run_dir: Path) -> dict:
    """Best checkpoint of ``run_dir`` on every held-out poem."""
    import torch

    from rnncore.checkpoint import best_checkpoint, load_checkpoint
    from rnncore.data import DataConfig, prepare_data
    from rnncore.trainer import evaluate_model

    torch.set_num_threads(1)
    src = best_checkpoint(run_dir)
    ck = load_checkpoint(src, load_optimizer=False)
    state = ck.trainer_state
    data = prepare_data(state.data_config if state is not None else DataConfig())
    val = evaluate_model(ck.model, data.val)
    return {"checkpoint": str(src), "step": ck.meta.get("step"), "val_poems": len(data.val),
            **{k: val[k] for k in ("bpc", "loss", "perplexity")}}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--minutes", type=float, default=10.0)
    ap.add_argument("--out", default="runs/quality")
    ap.add_argument("--report", default=None, help="report folder (default: "
                    "benchmarks/results/<stamp>-quality)")
    ap.add_argument("--strategies", default="full,truncated,randomized")
    args = ap.parse_args(argv)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    report = Path(args.report or f"benchmarks/results/{stamp}-quality")
    out = Path(args.out)
    env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
    rows = []
    for strategy in args.strategies.split(","):
        procs = {}
        for engine in ENGINES:
            run_dir = out / f"{strategy}-{engine}"
            if run_dir.exists():
                raise SystemExit(f"error: {run_dir} exists; remove it or pick another --out")
            out.mkdir(parents=True, exist_ok=True)
            log = open(out / f"{strategy}-{engine}.log", "w")
            procs[engine] = (subprocess.Popen(command(strategy, engine, args.minutes, run_dir),
                                              stdout=subprocess.PIPE, stderr=log, env=env,
                                              text=True), run_dir, log)
        for engine, (proc, run_dir, log) in procs.items():
            stdout, _ = proc.communicate()
            log.close()
            if proc.returncode != 0:
                raise SystemExit(f"error: {strategy}/{engine} failed (rc {proc.returncode}); "
                                 f"see {out}/{strategy}-{engine}.log")
            summary = json.loads(stdout.strip().splitlines()[-1])
            row = {"strategy": strategy, "engine": engine,
                   "layer": "rnncore.LSTM (bptt)" if engine == "bptt" else "torch.nn.LSTM",
                   "steps": summary["steps"], "elapsed_s": summary["elapsed_s"],
                   "chars_per_s": summary["chars_per_s"], "stop_reason": summary["stop_reason"],
                   "final": final_eval(run_dir)}
            rows.append(row)
            print(json.dumps(row), flush=True)
    import torch
    meta = {"date": time.strftime("%Y-%m-%d %H:%M:%S"), "torch": torch.__version__,
            "machine": platform.processor() or platform.machine(), "cpus": os.cpu_count(),
            "threads_per_run": 1, "concurrent_runs": len(ENGINES), "minutes": args.minutes,
            "command": command("STRATEGY", "ENGINE", args.minutes, Path("OUT"))[1:]}
    report.mkdir(parents=True, exist_ok=True)
    (report / "quality.json").write_text(json.dumps({"meta": meta, "rows": rows}, indent=1))
    lines = [f"# Validation bits per character after {args.minutes:g} minutes (LSTM 2 x 256)", "",
             f"{meta['date']}, torch {meta['torch']}, {meta['cpus']} CPUs; the two engines of "
             "a strategy trained at the same time, one thread each.", "",
             "| strategy | layer | steps | chars/s | val bpc (all held-out poems) |",
             "|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['strategy']} | {r['layer']} | {r['steps']} | "
                     f"{r['chars_per_s']:.0f} | {r['final']['bpc']:.3f} |")
    (report / "quality.md").write_text("\n".join(lines) + "\n")
    print(f"wrote {report}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
