"""Sweep temperature and top-p, score the poems against the held-out real ones.

python scripts/decoding_sweep.py [CHECKPOINT] [--form qilv] [--num 100] [--out DIR]

Prints a Markdown table (held-out real poems first, as the reference row) and writes it with
the rows as JSON to ``--out`` (default benchmarks/results/<time>-decoding). The measures are
``rnncore.generate.quality``'s; the setting it names is the one whose attested-pair share is
nearest the real poems' while copying stays poem-like.
"""
import argparse
import datetime
import json
import time
from pathlib import Path

from rnncore import data as D
from rnncore.checkpoint import load_checkpoint
from rnncore.generate import load_default_model
from rnncore.generate.quality import (closest_to, decoding_sweep, poem_set_quality,
                                      quality_table)
from rnncore.poetry import CorpusIndex

def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("checkpoint", nargs="?")
    ap.add_argument("--form", default="qilv")
    ap.add_argument("--num", type=int, default=100)
    ap.add_argument("--out", default=None)
    args = ap.parse_args()
    ck = load_checkpoint(args.checkpoint, load_optimizer=False) if args.checkpoint \
        else load_default_model()
    data = D.prepare_data(D.DataConfig())   # the bundled split: 362 held-out 七律
    index = CorpusIndex(p.text for p in data.train_poems)
    real = [p.text for p in data.val_poems if p.form == args.form]
    reference = poem_set_quality(real, index)
    t0 = time.perf_counter()
    rows = decoding_sweep(ck.model, ck.vocab, index, form=args.form, num=args.num)
    best = closest_to(rows, reference)
    lines = [f"# Decoding sweep ({args.form}, {args.num} poems a setting, rhyme + tones on, "
             f"{time.perf_counter() - t0:.0f} s)", "",
             *quality_table("setting", [(f"held-out real poems ({len(real)})", reference)]
                            + [(f"T {r['temperature']} top-p {r['top_p']}", r) for r in rows])]
    lines += ["", f"Nearest the real poems: temperature {best['temperature']}, "
                  f"top-p {best['top_p']} (attested {best['attested_pair_share']:.3f} "
                  f"against {reference['attested_pair_share']:.3f})."]
    text = "\n".join(lines)
    print(text)
    stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
    out = Path(args.out or f"benchmarks/results/{stamp}-decoding")
    out.mkdir(parents=True, exist_ok=True)
    (out / "report.md").write_text(text + "\n", encoding="utf-8")
    (out / "decoding.json").write_text(json.dumps(
        {"kind": "decoding", "form": args.form, "num": args.num, "reference": reference,
         "rows": rows, "best": best, "checkpoint": str(ck.path)}, indent=1), encoding="utf-8")


if __name__ == "__main__":
    main()
