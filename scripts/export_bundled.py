"""Export a training run's best checkpoint as the bundled default model (float16).

python scripts/export_bundled.py RUN_DIR [DEST]   (DEST: rnncore/assets/tang_default)

The weights are stored in float16 (half the size); ``load_checkpoint`` copies them into a
float32 CharRNN. The validation loss of the exported weights is re-measured after the
cast and written into the checkpoint's metrics, so the model card quotes what ships. A
model trained on a stream of poems gets its poem start state (``trainer.start_state``).
"""
import sys
from pathlib import Path

from rnncore.checkpoint import best_checkpoint, load_checkpoint, save_checkpoint
from rnncore.data import DataConfig, prepare_data
from rnncore.trainer import estimate_start_state, evaluate_model
from rnncore.trainer.config import streams_poems


def main(run_dir: str, dest: str = "rnncore/assets/tang_default") -> None:
    src = best_checkpoint(run_dir)
    if src is None:
        raise SystemExit(f"error: {run_dir} has no best checkpoint")
    ck = load_checkpoint(src, load_optimizer=False)
    state = ck.trainer_state
    data = prepare_data(state.data_config if state is not None else DataConfig())
    model = ck.model.half().float()           # what the float16 file will give back
    if streams_poems((ck.train_config or {}).get("strategy", "truncated")):
        model.set_start_state(estimate_start_state(model, data.train))
    val = evaluate_model(model, data.val)
    trained = ck.meta.get("metrics") or {}
    # what ships: the val figures the pages show are the exported weights' own
    metrics = dict(trained, exported_float16_val=val, val_loss=val["loss"], val_bpc=val["bpc"],
                   val_perplexity=val["perplexity"], trained_val_bpc=trained.get("val_bpc"))
    save_checkpoint(Path(dest), ck.model.half(), ck.vocab, ck.model_config,
                    train_config=ck.meta.get("train_config"), step=ck.meta.get("step", 0),
                    metrics=metrics, trainer_state=state,
                    extra={"source_run": str(run_dir), "weights": "float16"}, overwrite=True)
    print(f"exported {src} -> {dest}: {val}")


if __name__ == "__main__":
    main(*sys.argv[1:])
