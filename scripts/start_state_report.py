"""What the poem start state changes, measured on a checkpoint (default: the bundled model).

python scripts/start_state_report.py [CHECKPOINT] [--num 200] [--seed 1] [--out DIR]

For every poem read from zeros and from the model's poem start state
(``rnncore.trainer.start_state``): the held-out bits per character of the 362 held-out 七律
of the bundled split, the loss at each of the first 8 positions, and, per form, the share
of generated poems (defaults, rhyme and tones on) whose first two characters are a pair
seen in training, against held-out real poems. Writes report.md to ``--out`` (default
benchmarks/results/<time>-start-state).
"""
import argparse
import copy
import datetime
import math
from pathlib import Path

import torch
import torch.nn.functional as F

from rnncore import data as D
from rnncore.generate import FORM_TEMPERATURE, GenerationConfig, generate, load_model
from rnncore.poetry import FORMS, CorpusIndex, line_bodies, split_poem
from rnncore.trainer import estimate_start_state, evaluate_model


@torch.no_grad()
def position_bits(model, encoded: list[list[int]], positions: int = 8) -> list[float]:
    """Mean bits at each of the first ``positions`` predicted tokens, each poem from
    ``model.poem_start_state``."""
    sums = torch.zeros(positions)
    for ids in encoded:
        x = torch.tensor([ids[:-1]])
        logits, _ = model(x, model.poem_start_state(1))
        bits = F.cross_entropy(logits[0].float(), torch.tensor(ids[1:]), reduction="none")
        sums += bits[:positions] / math.log(2)
    return (sums / len(encoded)).tolist()


def first_pair_share(texts, index: CorpusIndex) -> float:
    """Share of poems whose first two characters occur somewhere in the training poems."""
    firsts = [line_bodies(split_poem(t))[0][:2] for t in texts]
    return sum(f in index.ngrams[2] for f in firsts) / len(firsts)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("checkpoint", nargs="?")
    ap.add_argument("--num", type=int, default=200)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--out", default=None)
    args = ap.parse_args()
    torch.set_num_threads(1)
    ck = load_model(args.checkpoint)
    vocab = ck.vocab
    data = D.prepare_data(D.DataConfig(corpus="quantangshi", form_tokens=True))
    with_start = ck.model.eval()
    if with_start.start_h is None:
        with_start.set_start_state(estimate_start_state(with_start, data.train))
    zeros = copy.deepcopy(with_start)
    zeros.set_start_state(None)
    held = [vocab.encode_poem(p.text, p.form) for p in D.bundled_held_out()]
    index = CorpusIndex(p.text for p in data.train_poems)
    lines = [f"# The poem start state of {ck.path}", "",
             f"{datetime.date.today()}, torch {torch.__version__}, one thread; generation at "
             f"the defaults with rhyme and tones on, {args.num} poems a form, seed {args.seed}.",
             "", "| | from zeros | from the start state |", "|---|---|---|"]
    bpc = [evaluate_model(m, held)["bpc"] for m in (zeros, with_start)]
    lines.append(f"| 362 held-out 七律, bits per character | {bpc[0]:.3f} | {bpc[1]:.3f} |")
    pos = [position_bits(m, held) for m in (zeros, with_start)]
    for i in range(len(pos[0])):
        lines.append(f"| held-out 七律, bits at position {i + 1} | {pos[0][i]:.2f} | "
                     f"{pos[1][i]:.2f} |")
    for form in FORM_TEMPERATURE:           # the four forms
        real = first_pair_share([p.text for p in data.val_poems if p.form == form], index)
        cfg = GenerationConfig(form=form, rhyme=True, tones=True, num=args.num, seed=args.seed)
        got = [first_pair_share([p.text for p in generate(m, vocab, cfg)], index)
               for m in (zeros, with_start)]
        lines.append(f"| {FORMS[form].name}: first two characters a pair seen in training "
                     f"(held-out real: {real:.3f}) | {got[0]:.3f} | {got[1]:.3f} |")
    text = "\n".join(lines) + "\n"
    print(text)
    stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
    out = Path(args.out or f"benchmarks/results/{stamp}-start-state")
    out.mkdir(parents=True, exist_ok=True)
    (out / "report.md").write_text(text, encoding="utf-8")


if __name__ == "__main__":
    main()
