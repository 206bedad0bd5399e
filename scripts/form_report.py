"""The bundled model's figures, per form: held-out bits per character, 100 poems scored
against held-out real poems of the same form, latency, and ten poems each (model card).

python scripts/form_report.py [CHECKPOINT] [--num 100] [--out DIR]   (default: bundled model)

Data: the full Tang corpus split the model trained on (``DataConfig(corpus="quantangshi",
form_tokens=True)``; the 362 held-out 七律 of the bundled split and their near-duplicates are
never in its training share). Each form's reference row is its own held-out real poems,
scored against the same training index as the generated ones. Poems are generated with the
CLI's and the page's defaults (``GenerationConfig(form=...)``: the form's temperature,
top-p) plus rhyme and tones on. Targets (issue #15): attested-pair share within 0.04 of the real poems, no repeated
rhyme character, 95th-percentile copied run at most 6, seen 4-grams at most 10%.
"""
import argparse
import datetime
import json
import statistics
import time
from pathlib import Path

import torch

from rnncore import data as D
from rnncore.generate import (DEFAULT_TOP_P, FORM_TEMPERATURE, GenerationConfig, generate,
                              load_model)
from rnncore.generate.quality import poem_set_quality, quality_table
from rnncore.poetry import FORMS, CorpusIndex
from rnncore.trainer import evaluate_by_form, evaluate_model

FORM_ORDER = ("wujue", "qijue", "wulv", "qilv")


def _targets(real: dict, gen: dict) -> dict:
    return {"attested_within_0.04": abs(gen["attested_pair_share"]
                                        - real["attested_pair_share"]) <= 0.04,
            "no_rhyme_repeats": gen["rhyme_repeat_share"] == 0,
            "copied_p95_at_most_6": gen["copied_run_p95"] <= 6,
            "seen_4grams_at_most_0.10": gen["seen_4gram_share"] <= 0.10}


def _latency(model, vocab, num: int, repeats: int) -> float:
    """Median seconds for one ``generate`` call of ``num`` constrained 七律."""
    times = []
    for seed in range(repeats):
        cfg = GenerationConfig(form="qilv", rhyme=True, tones=True, num=num, seed=seed)
        t0 = time.perf_counter()
        generate(model, vocab, cfg)
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("checkpoint", nargs="?")
    ap.add_argument("--num", type=int, default=100)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--out", default=None)
    args = ap.parse_args()
    torch.set_num_threads(1)
    ck = load_model(args.checkpoint)
    model, vocab = ck.model.eval(), ck.vocab
    data = D.prepare_data(D.DataConfig(corpus="quantangshi", form_tokens=True))
    index = CorpusIndex(p.text for p in data.train_poems)
    bpc = {form: m["bpc"] for form, m in evaluate_by_form(model, vocab, data.val_poems).items()}
    bundled = D.bundled_held_out()
    bpc["bundled_held_out_qilv"] = evaluate_by_form(model, vocab, bundled)["qilv"]["bpc"]
    lines = [f"# Per-form quality of {ck.path}", "",
             f"{datetime.date.today()}, torch {torch.__version__}, one thread; "
             f"{args.num} poems a form at the defaults (temperature per form: "
             + ", ".join(f"{FORMS[f].name} {t:g}" for f, t in FORM_TEMPERATURE.items())
             + f"; top-p {DEFAULT_TOP_P}), rhyme and tones on, seed {args.seed}.", "",
             "## Held-out bits per character", "",
             "| held-out set | poems | bits per character |", "|---|---|---|",
             f"| the 362 held-out 七律 of the bundled split | {len(bundled)} | "
             f"{bpc['bundled_held_out_qilv']:.3f} |"]
    counts = {f: sum(p.form == f for p in data.val_poems) for f in bpc}
    lines += [f"| full-corpus held-out {FORMS[f].name if f in FORMS else f} | {counts[f]} | "
              f"{bpc[f]:.3f} |" for f in sorted(bpc) if f != "bundled_held_out_qilv"]
    result = {"checkpoint": str(ck.path), "num": args.num, "seed": args.seed,
              "temperature": FORM_TEMPERATURE, "top_p": DEFAULT_TOP_P,
              "held_out_bpc": bpc, "forms": {}}
    samples = {}
    for form in FORM_ORDER:
        real = poem_set_quality([p.text for p in data.val_poems if p.form == form], index)
        cfg = GenerationConfig(form=form, rhyme=True, tones=True, num=args.num,
                               seed=args.seed)
        poems = generate(model, vocab, cfg, training_corpus=index)
        gen = poem_set_quality([p.text for p in poems], index)
        result["forms"][form] = {"real": real, "generated": gen, "targets": _targets(real, gen)}
        samples[form] = poems[:10]
        lines += ["", f"## {FORMS[form].name}", "",
                  *quality_table("poems", [(f"held-out real ({real['poems']})", real),
                                           (f"generated ({gen['poems']})", gen)]), "",
                  "Targets: " + ", ".join(f"{k} {'yes' if v else 'NO'}"
                                          for k, v in result["forms"][form]["targets"].items())]
    one = _latency(model, vocab, 1, 21)
    sixteen = _latency(model, vocab, 16, 5)
    result["latency_s"] = {"one_qilv_p50": one, "batch16_qilv_p50": sixteen}
    lines += ["", "## Latency (constrained 七律, rhyme and tones on, one thread)", "",
              f"One poem: {one * 1000:.0f} ms median of 21; a batch of 16: "
              f"{sixteen * 1000:.0f} ms median of 5."]
    for form in FORM_ORDER:
        lines += ["", f"## Ten {FORMS[form].name}", ""]
        for i, p in enumerate(samples[form], 1):
            m = p.metrics
            lines.append(f"{i}. {' '.join(p.lines)}  \n   rhyme "
                         f"{'ok' if m['rhyme_valid'] else 'no'}, tones {m['tone_match']:.0%}, "
                         f"attested pairs {index.attested_pair_share(p.lines):.2f}, "
                         f"longest copied run {m['longest_copied_run']}, seen 4-grams "
                         f"{m['seen_4gram_share']:.0%}")
    result["poems"] = {f: [p.text for p in ps] for f, ps in samples.items()}
    text = "\n".join(lines) + "\n"
    print(text)
    stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
    out = Path(args.out or f"benchmarks/results/{stamp}-poems")
    out.mkdir(parents=True, exist_ok=True)
    (out / "report.md").write_text(text, encoding="utf-8")
    (out / "poems.json").write_text(json.dumps(result, indent=1, ensure_ascii=False),
                                    encoding="utf-8")


if __name__ == "__main__":
    main()
