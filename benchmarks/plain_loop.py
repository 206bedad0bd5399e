"""The plain torch.nn training loop that ``measure_qps`` races our trainer against: the ~30
lines anyone would write, given our recipe.

``PlainCharLM``: ``torch.nn.Embedding`` (V, E) -> ``torch.nn.LSTM`` (L layers, H, batch
first, dropout between layers) -> dropout -> ``torch.nn.Linear`` (H, V), the full softmax.
Its parameter names are ``CharRNN``'s (embedding.weight, rnn.weight_ih_l0, ..., head.weight,
head.bias), so its state dict loads into ``CharRNN(ModelConfig(head="full"))`` and both
trainers are scored by the same evaluator.

``train_plain``: each epoch the training poems are shuffled and concatenated into one
stream, cut into B rows (B, N), walked in windows of T: inputs ``rows[:, i:i+T]``, targets
``rows[:, i+1:i+1+T]``, the LSTM state carried across windows (detached) and reset each
epoch; loss = mean cross-entropy, ``clip_grad_norm_``, ``torch.optim.Adam``. B, T, the
learning rate and the clip norm are ``TrainConfig()``'s defaults. Every ``curve_every``
steps (and at the end) the model is scored on ``curve_poems`` with the training clock
stopped. ``python -m benchmarks.plain_loop --seconds S --seed N --out DIR [model flags]``
writes ``DIR/model.pt`` and prints one JSON summary line.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch
from torch import nn

MODEL_FILE = "model.pt"


class PlainCharLM(nn.Module):
    def __init__(self, vocab_size: int, embedding_dim: int, hidden_size: int, num_layers: int,
                 dropout: float) -> None:
        super().__init__()
        self.embedding = nn.Embedding(vocab_size, embedding_dim)
        self.rnn = nn.LSTM(embedding_dim, hidden_size, num_layers, batch_first=True,
                           dropout=dropout if num_layers > 1 else 0.0)
        self.dropout = nn.Dropout(dropout)
        self.head = nn.Linear(hidden_size, vocab_size)

    def forward(self, x, state=None):
        out, state = self.rnn(self.embedding(x), state)
        return self.head(self.dropout(out)), state


def train_plain(data, model_kw: dict, seconds: float, seed: int, curve_every: int,
                curve_poems: list[list[int]], recipe=None) -> tuple[PlainCharLM, dict]:
    """Train for ``seconds`` of training time; returns the model and its summary (steps,
    elapsed_s, characters, chars_per_s, curve [{step, elapsed_s, val_bpc}])."""
    from rnncore.model import CharRNN, ModelConfig
    from rnncore.trainer import TrainConfig, evaluate_model

    r = recipe or TrainConfig()
    B, T = r.batch_size, r.truncation_len
    torch.manual_seed(seed)
    order = torch.Generator().manual_seed(seed)
    model = PlainCharLM(len(data.vocab), **model_kw)
    opt = torch.optim.Adam(model.parameters(), lr=r.lr)
    loss_fn = nn.CrossEntropyLoss()
    scorer = CharRNN(ModelConfig(vocab_size=len(data.vocab), head="full", **model_kw))
    steps, chars, elapsed, curve, epoch_rows, i, state = 0, 0, 0.0, [], None, 0, None
    poems = [torch.tensor(p) for p in data.train]   # once, as anyone would (outside the clock)

    def score() -> None:  # outside the training clock
        scorer.load_state_dict(model.state_dict())
        bpc = evaluate_model(scorer, curve_poems)["bpc"]
        curve.append({"step": steps, "elapsed_s": round(elapsed, 3), "val_bpc": bpc})

    while elapsed < seconds:
        t0 = time.perf_counter()
        if epoch_rows is None or i + 1 >= epoch_rows.size(1):  # a new epoch: reshuffle
            perm = torch.randperm(len(data.train), generator=order).tolist()
            stream = torch.cat([poems[p] for p in perm])
            n = len(stream) // B
            epoch_rows, i, state = stream[: n * B].view(B, n), 0, None
        x = epoch_rows[:, i:i + T]
        y = epoch_rows[:, i + 1:i + 1 + T]
        x = x[:, : y.size(1)]
        model.train()
        logits, state = model(x, state)
        state = tuple(s.detach() for s in state)
        loss = loss_fn(logits.reshape(-1, logits.size(-1)), y.reshape(-1))
        opt.zero_grad()
        loss.backward()
        nn.utils.clip_grad_norm_(model.parameters(), r.clip_norm)
        opt.step()
        i += T
        steps, chars = steps + 1, chars + y.numel()
        elapsed += time.perf_counter() - t0
        if curve_every and steps % curve_every == 0:
            score()
    if not curve or curve[-1]["step"] != steps:
        score()
    return model, {"steps": steps, "elapsed_s": round(elapsed, 3), "characters": chars,
                   "chars_per_s": chars / max(elapsed, 1e-9), "evals": curve}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.plain_loop",
                                 description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, required=True, help="training time")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", required=True, help="new directory for model.pt")
    ap.add_argument("--embedding-dim", type=int, default=256)
    ap.add_argument("--hidden-size", type=int, default=256)
    ap.add_argument("--layers", type=int, default=2)
    ap.add_argument("--dropout", type=float, default=0.1)
    ap.add_argument("--curve-every", type=int, default=50, help="steps between scores")
    ap.add_argument("--curve-poems", type=int, default=200,
                    help="score the curve on the first N held-out poems")
    ap.add_argument("--corpus", default="tang", help="as `python -m rnncore train --corpus`")
    args = ap.parse_args(argv)
    out = Path(args.out)
    if out.exists() or not args.seconds > 0:
        print(f"error: {out} exists" if out.exists() else "error: --seconds must be positive",
              file=sys.stderr)
        return 2
    from benchmarks.side_by_side import held_out
    from rnncore.data import DataConfig

    torch.set_num_threads(1)
    data = held_out(DataConfig(corpus=args.corpus))
    model_kw = dict(embedding_dim=args.embedding_dim, hidden_size=args.hidden_size,
                    num_layers=args.layers, dropout=args.dropout)
    model, summary = train_plain(data, model_kw, args.seconds, args.seed, args.curve_every,
                                 data.val[: args.curve_poems])
    out.mkdir(parents=True)
    torch.save(model.state_dict(), out / MODEL_FILE)
    print(json.dumps({**summary, "model": model_kw, "out": str(out)}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
