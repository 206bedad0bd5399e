"""Quality record: validation bits per character after a fixed wall-clock budget.

python scripts/quality_record.py [--minutes 10] [--out runs/quality] [--report DIR]
                                 [--strategies full,truncated,randomized]

For each strategy, one LSTM 2 x 256 CharRNN with rnncore's "bptt" engine and one with
"native" (torch.nn.LSTM, the same model otherwise) are trained *at the same time* with
this project's CLI, one torch thread each, so both see the same machine load and the same
budget. Afterwards each run's best checkpoint (chosen on a 200-poem slice of the held-out
poems) is evaluated on every held-out poem (``benchmarks/side_by_side.py``: the launch and
the evaluator shared with ``benchmarks/measure_qps.py``). The table goes to
``REPORT/quality.json`` and ``REPORT/quality.md``.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks import side_by_side as sbs  # noqa: E402

ENGINES = ("bptt", "native")
COMMON = ["--corpus", "tang", "--cell", "lstm", "--hidden-size", "256", "--layers", "2",
          "--embedding-dim", "128", "--dropout", "0.1", "--batch-size", "32",
          "--optimizer", "adam", "--lr", "0.003", "--clip", "1.0", "--truncation", "64",
          "--eval-every", "100", "--eval-max-poems", "200", "--checkpoint-every", "100",
          "--keep-last", "1", "--seed", "0", "--device", "cpu", "--head", "full"]


def command(strategy: str, engine: str, minutes: float, out: Path) -> list[str]:
    return sbs.rnncore_train(*COMMON, "--strategy", strategy, "--engine", engine,
                             "--max-minutes", str(minutes), "--max-steps", "1000000",
                             "--out", str(out))


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
    rows = []
    for strategy in args.strategies.split(","):
        launched = []
        for engine in ENGINES:
            run_dir = out / f"{strategy}-{engine}"
            if run_dir.exists():
                raise SystemExit(f"error: {run_dir} exists; remove it or pick another --out")
            launched.append(sbs.start(engine, command(strategy, engine, args.minutes, run_dir),
                                      out / f"{strategy}-{engine}.log"))
        try:
            summaries = sbs.finish(launched)
        except sbs.SideBySideError as exc:
            raise SystemExit(f"error: {strategy}: {exc}") from None
        for engine, summary in summaries.items():
            row = {"strategy": strategy, "engine": engine,
                   "layer": "rnncore.LSTM (bptt)" if engine == "bptt" else "torch.nn.LSTM",
                   "steps": summary["steps"], "elapsed_s": summary["elapsed_s"],
                   "chars_per_s": summary["chars_per_s"], "stop_reason": summary["stop_reason"],
                   "final": sbs.score_checkpoint(out / f"{strategy}-{engine}", "best")}
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
