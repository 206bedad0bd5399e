"""Sweep temperature and top-p per form, score the poems against held-out real ones, and
name each form's default temperature.

python scripts/decoding_sweep.py [CHECKPOINT] [--forms wujue,qijue,wulv,qilv] [--num 100]
                                 [--seeds 2,3,4] [--out DIR]

Data: the split the checkpoint trained on (its ``trainer_state``; the bundled model's is the
full Tang corpus with form tokens), so each form's reference row is its own held-out real
poems, scored against the same training index as the generated ones. Every setting writes
``--num`` poems per seed with rhyme and tones on; its measures (``rnncore.generate.quality``)
are the means over the seeds. Per form, the chosen temperature is the one at top-p
``DEFAULT_TOP_P`` whose attested-pair share is nearest the real poems' while copying stays
poem-like (``closest_to``): ``rnncore.generate.FORM_TEMPERATURE`` must equal it (a test
reads the newest report). Writes a benchmark report (``results.json`` with section
``decoding``, ``report.md``, the figure) to ``--out`` (default
benchmarks/results/<time>-decoding), shown on the Benchmarks page.
"""
import argparse
import datetime
import statistics
import time
from pathlib import Path

import torch

from benchmarks.measure import machine_info
from benchmarks.report import write_files
from benchmarks.run import FORMAT, code_version
from rnncore import data as D
from rnncore.generate import DEFAULT_TOP_P, FORM_TEMPERATURE, load_model
from rnncore.generate.quality import (closest_to, decoding_sweep, poem_set_quality,
                                      quality_table)
from rnncore.poetry import FORMS, CorpusIndex

TEMPERATURES = (0.6, 0.65, 0.7, 0.75, 0.8, 0.85, 0.9, 0.95, 1.0)
TOP_PS = (0.8, 0.9, 1.0)


def sweep_form(model, vocab, index, form: str, num: int, seeds) -> list[dict]:
    """One row per (temperature, top_p): each measure's mean over ``seeds``, and the range
    of the attested-pair share."""
    runs = [decoding_sweep(model, vocab, index, form=form, num=num, seed=seed,
                           temperatures=TEMPERATURES, top_ps=TOP_PS) for seed in seeds]
    rows = []
    for same in zip(*runs):                       # one setting, every seed
        row = {k: v if k in ("temperature", "top_p") else statistics.fmean(r[k] for r in same)
               for k, v in same[0].items()}
        shares = [r["attested_pair_share"] for r in same]
        rows.append(dict(row, poems=sum(r["poems"] for r in same),
                         attested_min=min(shares), attested_max=max(shares)))
    return rows


def markdown(results: dict) -> str:
    d, m = results["decoding"], results["machine"]
    lines = [f"# Decoding sweep per form ({d['checkpoint']})", "",
             f"{m['date']} · torch {m['torch_version']} · one thread · {d['num']} poems a "
             f"setting and seed, seeds {d['seeds']}, rhyme and tones on; measures are means "
             f"over the seeds; {d['seconds']:.0f} s.", "",
             "| form | held-out real: attested | chosen temperature (top-p "
             f"{d['chosen_top_p']:g}) | its attested (range over seeds) | table default |",
             "|---|---|---|---|---|"]
    for form, f in d["forms"].items():
        c = f["chosen"]
        lines.append(f"| {f['form_name']} | {f['real']['attested_pair_share']:.3f} | "
                     f"{c['temperature']:g} | {c['attested_pair_share']:.3f} "
                     f"({c['attested_min']:.3f}–{c['attested_max']:.3f}) | "
                     f"{FORM_TEMPERATURE.get(form)} |")
    for form, f in d["forms"].items():
        lines += ["", f"## {f['form_name']}", "", *quality_table(
            "setting", [(f"held-out real poems ({f['real']['poems']})", f["real"])]
            + [(f"T {r['temperature']:g} top-p {r['top_p']:g}", r) for r in f["rows"]])]
    return "\n".join(lines) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("checkpoint", nargs="?")
    ap.add_argument("--forms", default=",".join(FORMS))
    ap.add_argument("--num", type=int, default=100)
    ap.add_argument("--seeds", default="2,3,4")
    ap.add_argument("--out", default=None)
    args = ap.parse_args()
    torch.set_num_threads(1)
    ck = load_model(args.checkpoint)
    state = ck.trainer_state
    data = D.prepare_data(state.data_config if state else D.DataConfig())
    index = CorpusIndex(p.text for p in data.train_poems)
    seeds = [int(s) for s in args.seeds.split(",")]
    t0 = time.perf_counter()
    forms = {}
    for form in args.forms.split(","):
        real = poem_set_quality([p.text for p in data.val_poems if p.form == form], index)
        rows = sweep_form(ck.model.eval(), ck.vocab, index, form, args.num, seeds)
        chosen = closest_to([r for r in rows if r["top_p"] == DEFAULT_TOP_P], real)
        forms[form] = {"form_name": FORMS[form].name, "real": real, "rows": rows,
                       "chosen": chosen}
        print(f"{form}: real {real['attested_pair_share']:.3f}, temperature "
              f"{chosen['temperature']:g} gives {chosen['attested_pair_share']:.3f}", flush=True)
    decoding = {"checkpoint": args.checkpoint or "the bundled model", "num": args.num, "seeds": seeds,
                "chosen_top_p": DEFAULT_TOP_P, "seconds": time.perf_counter() - t0,
                "forms": forms}
    stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
    run_dir = Path(args.out or f"benchmarks/results/{stamp}-decoding")
    run_dir.mkdir(parents=True)                    # never overwrite a report
    results = {"format": FORMAT, "machine": dict(machine_info("cpu"), torch_threads=1),
               "code": code_version(), "config": {"quick": False, "device": "cpu"},
               "sections": ["decoding"], "decoding": decoding,
               "files": {"json": "results.json", "markdown": "report.md"}}
    write_files(results, run_dir, markdown, png=True)
    print((run_dir / "report.md").read_text(encoding="utf-8"))


if __name__ == "__main__":
    main()
