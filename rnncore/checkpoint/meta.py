"""``meta.json``: read with a size cap, parsed, and checked field by field before anything
is built from it (an uploaded checkpoint is untrusted: every problem is one
``CheckpointError`` line, never a traceback)."""
from __future__ import annotations

import json
import os
from pathlib import Path

from rnncore.checkpoint.files import MAX_META_BYTES, META_FILE, CheckpointError

FORMAT = "rnncore-checkpoint/1"

# field -> the types it may have when present (None: JSON null)
_FIELD_TYPES = {
    "created": (str,), "device": (str,), "torch_version": (str,), "model_config": (dict,),
    "vocab": (dict,), "train_config": (dict, type(None)), "metrics": (dict, type(None)),
    "data_position": (dict, type(None)), "rng_state": (dict, type(None)),
    "trainer_state": (dict, type(None)), "extra": (dict, type(None)), "files": (dict,),
}
# the metrics the trainer writes and the pages and pickers format as numbers
NUMERIC_METRICS = ("train_tokens", "val_loss", "val_bpc", "val_perplexity")


def _is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def check_meta(meta: dict, where: Path) -> None:
    """Refuse a ``meta.json`` whose fields have the wrong types (``where`` names it)."""
    step = meta.get("step", 0)
    if isinstance(step, bool) or not isinstance(step, int) or step < 0:
        raise CheckpointError(f"{where}: step must be a non-negative integer, got {step!r:.40}")
    for name, types in _FIELD_TYPES.items():
        if name in meta and not isinstance(meta[name], types):
            raise CheckpointError(f"{where}: {name} must be "
                                  f"{' or '.join(t.__name__ for t in types)}, "
                                  f"got {type(meta[name]).__name__}")
    for name in NUMERIC_METRICS:
        value = (meta.get("metrics") or {}).get(name)
        if value is not None and not _is_number(value):
            raise CheckpointError(f"{where}: metric {name} must be a number, got {value!r:.40}")
    for name, entry in (meta.get("files") or {}).items():
        if not (isinstance(entry, dict) and isinstance(entry.get("bytes"), int)
                and isinstance(entry.get("sha256"), str)):
            raise CheckpointError(f"{where}: files.{name:.40} must give bytes and sha256")


def read_meta(path: str | os.PathLike) -> dict:
    """A checkpoint directory's ``meta.json``, checked to be an rnncore checkpoint's."""
    path = Path(path)
    meta_path = path / META_FILE
    if not meta_path.is_file():
        raise CheckpointError(f"{path} is not a checkpoint (no {META_FILE})")
    with open(meta_path, "rb") as fh:
        raw = fh.read(MAX_META_BYTES + 1)
    if len(raw) > MAX_META_BYTES:
        raise CheckpointError(f"{meta_path} is larger than {MAX_META_BYTES // 2**20} MB "
                              f"(not an rnncore checkpoint's)")
    try:
        meta = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise CheckpointError(f"{meta_path} is corrupt ({exc})") from None
    except RecursionError:
        raise CheckpointError(f"{meta_path} is corrupt (nested too deeply)") from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        found = meta.get("format") if isinstance(meta, dict) else type(meta).__name__
        raise CheckpointError(f"{path} is not an {FORMAT} checkpoint (format {found!r:.60})")
    check_meta(meta, meta_path)
    return meta
