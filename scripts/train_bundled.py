"""The bundled model's recipe: train candidate sizes on the full Tang corpus, compare them on
held-out bits per character, export the best as float16.

python scripts/train_bundled.py --minutes 60 [--sizes 256,384 --steps 4500,2700] [--out runs/bundled]
python scripts/train_bundled.py --report-only [--out runs/bundled]   # compare what exists
python scripts/train_bundled.py --export [--out runs/bundled]        # best -> assets

Every candidate is an LSTM 2 x H (embedding 256, dropout 0.1, adaptive softmax head) told the
form by a start token (``--form-tokens``), trained with truncated BPTT (k = 64, batch 64, Adam
2e-3, cosine to 5% over ``--steps``) on ``quantangshi`` (``python -m rnncore
corpus fetch`` first). A second run with the same ``--out`` resumes each candidate where it
stopped (segments of ``--minutes`` each), so the training can be spread over sessions or run
on a GPU. The comparison scores every candidate's best checkpoint on the 362 held-out 七律 of
the bundled corpus (never trained on: ``split_by_form`` removes their near-duplicates) and on
each form's own held-out share; the winner is the lowest held-out 七律 bpc whose float16
weights fit in 25 MB.
"""
import argparse
import json
from pathlib import Path

import torch

from rnncore import data as D
from rnncore.checkpoint import best_checkpoint, latest_checkpoint, load_checkpoint
from rnncore.model import ModelConfig
from rnncore.trainer import TrainConfig, Trainer, evaluate_by_form

MAX_BYTES = 25 * 2**20
DATA = D.DataConfig(corpus="quantangshi", form_tokens=True)
# stage 2: the same split and vocabulary, plus the Song poems that fit them
SONG_DATA = D.DataConfig(corpus="quantangshi", form_tokens=True, extra_train="quansongshi")


def _train(run: Path, hidden: int, steps: int, minutes: float, device: str,
           init: Path | None = None, lr: float = 2e-3) -> None:
    """Train (or resume) one candidate. With ``init`` (stage 2) the run starts from that
    run's best weights and adds the Song poems (``SONG_DATA``) to its training poems."""
    if latest_checkpoint(run) is not None:
        trainer = Trainer.resume(run, {"max_minutes": minutes, "device": device})
    else:
        trainer = Trainer(ModelConfig(cell="lstm", vocab_size=10, embedding_dim=256,
                                      hidden_size=hidden, num_layers=2, dropout=0.1,
                                      head="adaptive"),
                          TrainConfig(strategy="truncated", truncation_len=64, batch_size=64,
                                      lr=lr, lr_schedule="cosine", warmup_steps=100,
                                      min_lr_ratio=0.05, clip_norm=1.0, max_steps=steps,
                                      max_minutes=minutes, eval_every=500,
                                      eval_max_poems=600, checkpoint_every=500,
                                      device=device, out_dir=str(run)),
                          DATA if init is None else SONG_DATA)
        if init is not None:
            start = load_checkpoint(best_checkpoint(init) or latest_checkpoint(init),
                                    load_optimizer=False)
            if start.vocab != trainer.vocab or start.model_config.hidden_size != hidden:
                raise SystemExit(f"error: {init} is not a 2 x {hidden} model of this corpus")
            trainer.model.load_state_dict(start.model.state_dict())
            print(f"{run.name}: from {init}, {trainer.data.extra} Song poems added "
                  f"({trainer.data.excluded})")
    result = trainer.run()
    print(f"{run.name}: {result.steps} steps, stop {result.stop_reason}, "
          f"val bpc {result.final_eval.val_bpc if result.final_eval else float('nan'):.3f}")


def _report(out: Path) -> list[dict]:
    data = D.prepare_data(DATA)
    bundled = D.bundled_held_out()
    rows = []
    for run in sorted(p for p in out.iterdir() if p.is_dir()):
        path = best_checkpoint(run) or latest_checkpoint(run)
        if path is None:
            continue
        ck = load_checkpoint(path, load_optimizer=False)
        params = sum(p.numel() for p in ck.model.parameters())
        by_form = evaluate_by_form(ck.model, ck.vocab, data.val_poems)
        held = evaluate_by_form(ck.model, ck.vocab, bundled)["qilv"]
        rows.append({"run": run.name, "checkpoint": str(path), "step": ck.step,
                     "hidden": ck.model_config.hidden_size, "float16_bytes": 2 * params,
                     "bundled_held_out_qilv_bpc": held["bpc"],
                     **{f"{form}_bpc": m["bpc"] for form, m in sorted(by_form.items())}})
    for r in rows:
        print(json.dumps(r, ensure_ascii=False))
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", default="runs/bundled")
    ap.add_argument("--sizes", default="256,384")
    ap.add_argument("--steps", default="4500,2700",
                    help="per size: the cosine schedule's length (the run ends there)")
    ap.add_argument("--init", default=None,
                    help="stage 2: start each size from OUT/lstm2xH's best weights, train on "
                         "Tang + Song into OUT/lstm2xH-song")
    ap.add_argument("--lr", type=float, default=2e-3)
    ap.add_argument("--threads", type=int, default=0, help="torch threads; 0 = torch's choice")
    ap.add_argument("--minutes", type=float, default=60.0, help="per candidate, this segment")
    ap.add_argument("--device", default="auto")
    ap.add_argument("--report-only", action="store_true")
    ap.add_argument("--export", action="store_true", help="export the winner (float16)")
    args = ap.parse_args()
    out = Path(args.out)
    if args.threads:
        torch.set_num_threads(args.threads)
    if not args.report_only and not args.export:
        for hidden, steps in zip(args.sizes.split(","), args.steps.split(","), strict=True):
            base = out / f"lstm2x{hidden}"
            if args.init:
                _train(out / f"lstm2x{hidden}-song", int(hidden), int(steps), args.minutes,
                       args.device, init=base, lr=args.lr)
            else:
                _train(base, int(hidden), int(steps), args.minutes, args.device, lr=args.lr)
    rows = _report(out)
    (out / "comparison.json").write_text(json.dumps(rows, indent=1, ensure_ascii=False))
    fits = [r for r in rows if r["float16_bytes"] <= MAX_BYTES]
    if args.export and fits:
        from export_bundled import main as export

        best = min(fits, key=lambda r: r["bundled_held_out_qilv_bpc"])
        export(str(out / best["run"]))


if __name__ == "__main__":
    main()
