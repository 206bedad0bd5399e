"""Poems and measured quality of a model, as Markdown (for the model card and notes).

python scripts/poem_report.py [CHECKPOINT] [--samples N]   (default: the bundled model)

Prints 10 constrained 七言律詩 with their metrics, then, over N poems each, the share that
rhyme and the mean tone-template match with the rhyme/tone constraints off and on.
"""
import argparse
import statistics
import time

from rnncore.data import load_corpus
from rnncore.generate import GenerationConfig, generate, load_model


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("checkpoint", nargs="?")
    ap.add_argument("--samples", type=int, default=100)
    args = ap.parse_args()
    ck = load_model(args.checkpoint)
    corpus = load_corpus("tang")
    print("## 10 poems (七言律詩, rhyme and tones on, hard constraints, top-p 0.9)\n")
    cfg = GenerationConfig(form="qilv", rhyme=True, tones=True, num=10, seed=7, top_p=0.9)
    for i, p in enumerate(generate(ck.model, ck.vocab, cfg, training_corpus=corpus), 1):
        m = p.metrics
        print(f"{i}. " + " ".join(p.lines))
        print(f"   form {'ok' if m['form_valid'] else 'BAD'}, rhyme "
              f"{'ok ' + ','.join(m['rhyme_groups']) if m['rhyme_valid'] else 'no'}, "
              f"tones {m['tone_match']:.0%} ({m['tone_template']}), mean log-prob "
              f"{m['mean_logprob']:.2f}/char, longest copied run {m['longest_copied_run']}, "
              f"seen 4-grams {m['seen_4gram_share']:.0%}\n")
    print(f"## Constraints off vs on ({args.samples} poems each, seed 11, top-p 0.9)\n")
    print("| rhyme / tones constraints | poems that rhyme | mean tone match | seconds |")
    print("|---|---|---|---|")
    for on in (False, True):
        cfg = GenerationConfig(form="qilv", rhyme=on, tones=on, num=args.samples, seed=11,
                               top_p=0.9)
        t0 = time.perf_counter()
        poems = generate(ck.model, ck.vocab, cfg)
        dt = time.perf_counter() - t0
        rhyme = sum(p.metrics["rhyme_valid"] for p in poems) / len(poems)
        tones = statistics.mean(p.metrics["tone_match"] for p in poems)
        print(f"| {'on' if on else 'off'} | {rhyme:.0%} | {tones:.0%} | {dt:.1f} |")


if __name__ == "__main__":
    main()
