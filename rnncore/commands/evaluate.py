"""``python -m rnncore evaluate --checkpoint PATH``: validation loss, bits per character and
perplexity of a saved model.

Without ``--corpus`` the poems are the validation split the checkpoint was trained with
(its saved data config; the bundled corpus with default settings if it has none). With
``--corpus`` the same split rule is applied to that corpus (``--split all`` takes every
poem). Poems are encoded with the checkpoint's vocabulary; characters it does not know
become ``<unk>`` and are counted in the output.
"""
from __future__ import annotations

from rnncore.commands import print_json


def register(subparsers) -> None:
    p = subparsers.add_parser("evaluate", help="validation loss / bpc / perplexity of a checkpoint",
                              description=__doc__.split("\n\n")[0])
    p.add_argument("--checkpoint", required=True,
                   help="checkpoint directory, or a run directory (its latest checkpoint)")
    p.add_argument("--corpus", default=None, help="'tang', 'quantangshi', a .tgz or a file/directory (default: the "
                                                 "checkpoint's training corpus)")
    p.add_argument("--simplified", action="store_true", default=None,
                   help="convert the corpus to simplified characters")
    p.add_argument("--split", choices=("val", "all"), default="val",
                   help="the held-out poems (val) or every poem (all)")
    p.add_argument("--max-poems", type=int, default=None, help="only the first N poems")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--device", default="auto", help="auto | cpu | cuda")
    p.add_argument("--json", action="store_true", help="print JSON on stdout")
    p.set_defaults(func=run)


def run(args) -> int:
    from rnncore import data as D
    from rnncore.checkpoint import load_checkpoint
    from rnncore.trainer import evaluate_model, resolve_device

    if args.batch_size < 1:
        raise ValueError(f"--batch-size must be at least 1, got {args.batch_size}")
    device = resolve_device(args.device)
    ckpt = load_checkpoint(args.checkpoint, map_location="cpu", load_optimizer=False)
    saved = ckpt.trainer_state
    fields = saved.data_config.to_dict() if saved is not None else {}
    if args.corpus is not None:
        fields["corpus"] = args.corpus
        fields.pop("max_poems", None)
    if args.simplified is not None:
        fields["simplified"] = True
    if args.max_poems is not None:
        fields["max_poems"] = args.max_poems
    cfg = D.DataConfig(**fields)
    corpus = D.load_corpus(cfg.corpus, simplified=cfg.simplified)
    if args.split == "val":  # the poems training held out, by the same rule
        poems = D.split_corpus(corpus, cfg).val
        if not poems:
            raise ValueError("the validation split is empty (val_fraction 0); use --split all")
    else:
        poems = corpus.poems[: cfg.max_poems] if cfg.max_poems else list(corpus.poems)
    vocab = ckpt.vocab
    encoded = [vocab.encode_poem(p.text, p.form) for p in poems]
    unknown = sum(1 for p in poems for c in p.text if c not in vocab)
    model = ckpt.model.to(device)
    m = evaluate_model(model, encoded, args.batch_size, device)
    start = "zeros" if model.start_h is None else "the model's start state"
    out = {"checkpoint": str(ckpt.path), "step": ckpt.step, "corpus": cfg.corpus,
           "split": args.split, "poems": len(poems), "characters": m["characters"],
           "unknown_characters": unknown, "loss": m["loss"], "bpc": m["bpc"],
           "perplexity": m["perplexity"], "device": str(device),
           "from": start}
    if args.json:
        print_json(out)
    else:
        print(f"{ckpt.path} (step {ckpt.step}) on {len(poems)} {args.split} poems of "
              f"{cfg.corpus}: loss {m['loss']:.4f} nats/char, {m['bpc']:.4f} bits/char, "
              f"perplexity {m['perplexity']:.4g}, every poem from {start}"
              + (f" ({unknown} unknown characters)" if unknown else ""))
    return 0
