"""``python -m benchmarks [--quick] [--device cpu|cuda] [--out benchmarks/results]
[--sections layers,bptt,convergence,step] [--threads N]``, or ``--rebuild RUN_DIR ...``.

Runs the measurements of benchmarks/measure*.py, checks the targets and writes a report
(a new directory per run; see benchmarks/README.md). ``--rebuild`` redraws the figures
(PNG, and HTML where missing) of existing runs from their results.json without measuring.
User errors print ``error: ...`` and exit 2.
"""
from __future__ import annotations

import argparse
import sys
import time

SECTIONS = ("layers", "bptt", "convergence", "step")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m benchmarks",
                                description="Measure rnncore's layers and BPTT strategies.")
    p.add_argument("--quick", action="store_true", help="tiny sizes (smoke test, ~1 min)")
    p.add_argument("--device", default="cpu", choices=("cpu", "cuda"))
    p.add_argument("--out", default="benchmarks/results", help="parent directory of the runs")
    p.add_argument("--sections", default=",".join(SECTIONS),
                   help=f"comma-separated subset of {','.join(SECTIONS)} "
                        "(fidelity runs with convergence)")
    p.add_argument("--cells", default=None, help="comma-separated subset of lstm,gru,rnn")
    p.add_argument("--train-seconds", type=float, default=None,
                   help="training budget per strategy in the convergence section")
    p.add_argument("--seq-lens", default=None,
                   help="comma-separated T of the BPTT sweep (memory: those >= 256)")
    p.add_argument("--threads", type=int, default=None,
                   help="torch intra-op threads (default: torch's, i.e. OMP_NUM_THREADS or "
                        "the cores); the trainer's quality record runs with 1")
    p.add_argument("--no-png", action="store_true", help="HTML figures only")
    p.add_argument("--rebuild", nargs="+", metavar="RUN_DIR", default=None,
                   help="measure nothing: redraw the figures of these run directories from "
                        "their results.json (PNG, HTML where missing)")
    p.add_argument("--rebuild-html", action="store_true",
                   help="with --rebuild: rewrite every figure's HTML too")
    return p


def rebuild(dirs: list[str], png: bool, html: bool) -> int:
    from benchmarks.report import rebuild_figures

    for d in dirs:
        out = rebuild_figures(d, png=png, html=html)
        print(f"{d}: html {','.join(out['html']) or '-'}; png {','.join(out['png']) or '-'}")
        if out["note"]:
            print(out["note"], file=sys.stderr)
    return 0


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        if args.rebuild:
            return rebuild(args.rebuild, png=not args.no_png, html=args.rebuild_html)
        from benchmarks.config import BenchConfig
        from benchmarks.report import write_report
        from benchmarks.run import run_benchmark

        sections = tuple(s.strip() for s in args.sections.split(",") if s.strip())
        bad = [s for s in sections if s not in SECTIONS]
        if bad or not sections:
            raise ValueError(f"unknown section(s) {bad}; choose from {','.join(SECTIONS)}")
        overrides = {"device": args.device}
        if args.cells:
            overrides["cells"] = tuple(c.strip() for c in args.cells.split(",") if c.strip())
        if args.train_seconds is not None:
            if not args.train_seconds > 0:
                raise ValueError("--train-seconds must be positive")
            overrides["train_seconds"] = args.train_seconds
        if args.seq_lens:
            try:
                lens = tuple(int(t) for t in args.seq_lens.split(","))
            except ValueError:
                raise ValueError("--seq-lens must be comma-separated integers") from None
            if not lens or min(lens) < 2:
                raise ValueError("--seq-lens must be integers >= 2")
            overrides["seq_lens"] = lens
            overrides["memory_seq_lens"] = tuple(t for t in lens if t >= 256) or lens
        cfg = BenchConfig.preset(args.quick, **overrides)
        if args.threads is not None:
            if args.threads < 1:
                raise ValueError("--threads must be a positive integer")
            import torch

            torch.set_num_threads(args.threads)  # recorded as machine.torch_threads
        t0 = time.perf_counter()

        def progress(msg: str) -> None:
            print(f"[{time.perf_counter() - t0:7.1f}s] {msg}", file=sys.stderr, flush=True)

        results = run_benchmark(cfg, sections, progress)
        run_dir = write_report(results, args.out, png=not args.no_png)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    for t in results["targets"]:
        meas = "n/a" if t["measured"] is None else f"{t['measured']:.3f}"
        print(f"{t['status']:>4}  {t['target']}: {meas} ({t['limit']})")
    print(f"report written to {run_dir}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
