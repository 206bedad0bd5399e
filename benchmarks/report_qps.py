"""The quality-per-second report (``benchmarks/measure_qps.py``): one new directory with
``results.json`` (the benchmark format, section ``qps``, so ``report.load_results`` and the
Benchmarks page read it), ``report.md`` and the ``qps`` figure (HTML, PNG when the static
export works). ``qps_table`` is the numbers the page shows under the figure."""
from __future__ import annotations

import os
from pathlib import Path

from benchmarks.report import write_files
from benchmarks.run import FORMAT, code_version
from benchmarks.targets import qps_targets

NAMES = {"rnncore": "ours (`python -m rnncore train`)", "torch.nn": "plain torch.nn loop"}


def qps_table(qps: dict) -> list[dict]:
    """One row per trainer: mean ± std over the seeds of the final held-out bpc, chars/s
    and steps, and the seeds' range of the bpc."""
    rows = []
    for trainer, s in qps["summary"]["trainers"].items():
        b, c, n = s["final_bpc"], s["chars_per_s"], s["steps"]
        rows.append({"trainer": NAMES.get(trainer, trainer).replace("`", ""),
                     "held-out bpc (mean ± std)": f"{b['mean']:.3f} ± {b['std']:.3f}",
                     "bpc range over seeds": f"{b['min']:.3f} – {b['max']:.3f}",
                     "chars/s (mean ± std)": f"{c['mean']:,.0f} ± {c['std']:,.0f}",
                     "steps (mean)": f"{n['mean']:,.0f}"})
    return rows


def qps_markdown(results: dict) -> str:
    qps, m = results["qps"], results["machine"]
    cfg, model, recipe = qps["config"], qps["config"]["model"], qps["recipe"]
    s = qps["summary"]
    lines = [f"# Quality per second: our trainer against a plain torch.nn loop"
             f"{' (quick)' if cfg.get('quick') else ''}", "",
             f"{m['date']} · {m['cpu_model']} · {m['cpu_cores']} cores · torch "
             f"{m['torch_version']} · one torch thread per run, both runs of a seed started "
             "together", "",
             f"LSTM {model['num_layers']} x {model['hidden_size']}, embedding "
             f"{model['embedding_dim']}, dropout {model['dropout']}; {cfg['seconds']:g} s of "
             f"training time per run, seeds {', '.join(map(str, cfg['seeds']))}; corpus "
             f"{cfg.get('corpus', 'tang')}; V = "
             f"{qps['vocab_size']:,}. Recipe (the CLI's defaults, given to both): "
             f"{recipe['optimizer']} lr {recipe['lr']:g}, batch {recipe['batch_size']}, "
             f"truncation {recipe['truncation_len']}, clip {recipe['clip_norm']:g}. Our head: "
             f"{qps['default_head']}; the plain loop's: full softmax nn.Linear. Final bpc: "
             f"all {qps['val_poems']} held-out poems from the zero state, one evaluator "
             f"(`evaluate_model`; the plain loop's weights loaded into CharRNN); curves: the "
             f"first {cfg['curve_poems']} every {cfg['curve_every']} steps, outside the "
             "training time.", "", "## Targets", "",
             "| target | measured | limit | status | detail |", "|---|---|---|---|---|"]
    for t in results["targets"]:
        lines.append(f"| {t['target']} | {t['measured']:.3f} | {t['limit']} | "
                     f"**{t['status']}** | {t['detail']} |")
    lines += ["", f"bpc difference (plain - ours): {s['bpc_gain']:+.3f}; chars/s ratio "
              f"(ours / plain): {s['speed_ratio']:.2f}x", "", "## Per trainer (over the seeds)",
              "", "| trainer | held-out bpc | bpc range | chars/s | steps |",
              "|---|---|---|---|---|"]
    lines += [f"| {r['trainer']} | {r['held-out bpc (mean ± std)']} | "
              f"{r['bpc range over seeds']} | {r['chars/s (mean ± std)']} | {r['steps (mean)']} |"
              for r in qps_table(qps)]
    lines += ["", "## Per run", "", "| trainer | seed | steps | training s | chars/s | "
              "held-out bpc | check |", "|---|---|---|---|---|---|---|"]
    for r in qps["runs"]:
        chk = r.get("evaluator_check")
        check = (f"torch.nn forward vs evaluator on {chk['poems']} poems: "
                 f"{chk['abs_diff']:.1e} bpc" if chk else
                 f"{r.get('head', '?')} head, checkpoint of step {r.get('checkpoint_step')}")
        lines.append(f"| {r['trainer']} | {r['seed']} | {r['steps']} | "
                     f"{r['train_seconds']:.0f} | {r['chars_per_s']:,.0f} | "
                     f"{r['final_bpc']:.3f} | {check} |")
    lines += ["", "Commands (WORK: the runs' directory): ", ""]
    lines += [f"- {name}: `{' '.join(argv)}`" for name, argv in qps["commands"].items()]
    if results.get("png_note"):
        lines += ["", results["png_note"]]
    return "\n".join(lines) + "\n"


def write_qps_report(qps: dict, out: str | os.PathLike, png: bool = True) -> Path:
    """Write the report of ``measure_qps``'s result into the new directory ``out`` (an
    existing one is refused: ``FileExistsError`` is not caught)."""
    from benchmarks.measure import machine_info

    run_dir = Path(out)
    run_dir.mkdir(parents=True)  # exist_ok=False: never overwrite a report
    results = {"format": FORMAT, "machine": machine_info("cpu"), "code": code_version(),
               "config": {"quick": bool(qps["config"].get("quick")), "device": "cpu"},
               "sections": ["qps"], "qps": qps, "targets": qps_targets(qps["summary"]),
               "files": {"json": "results.json", "markdown": "report.md"}}
    results["machine"]["torch_threads"] = 1  # each run's (this process only scores)
    write_files(results, run_dir, qps_markdown, png)
    return run_dir
