"""Save and load one checkpoint directory, written atomically, loaded without running code::

    model.safetensors   CharRNN weights (CPU tensors, safetensors: no pickle)
    meta.json           format tag "rnncore-checkpoint/1", model config, train config, vocab,
                        metrics, step, data position, RNG states, trainer state, extra,
                        created, device, file hashes
    optimizer.pt        optimizer state (or None), read with torch.load(weights_only=True)

A save writes every file into a temporary sibling directory, fsyncs the files and the
directory, then renames it into place, so a crash mid-save leaves the earlier checkpoints
untouched.
"""
from __future__ import annotations

import dataclasses
import datetime as _dt
import json
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from rnncore.checkpoint.files import (META_FILE, MODEL_FILE, OPTIMIZER_FILE, CheckpointError,
                                      fsync_dir, fsync_file, sha256, write_error)
from rnncore.checkpoint.meta import FORMAT, read_meta
from rnncore.checkpoint.rng import capture_rng_state
from rnncore.checkpoint.rundir import resolve_checkpoint
from rnncore.checkpoint.state import TrainerState
from rnncore.data import Vocab
from rnncore.model import CharRNN, ModelConfig, parameter_shapes, start_state_shapes

FLOAT_DTYPES = ("F16", "BF16", "F32", "F64")  # safetensors' names


@dataclass
class Checkpoint:
    """A loaded checkpoint; ``model`` is a ``CharRNN`` in eval mode."""

    model: CharRNN
    vocab: Vocab
    model_config: ModelConfig
    meta: dict
    optimizer_state: Any = None
    path: Path | None = None

    @property
    def step(self) -> int:
        return int(self.meta.get("step", 0))

    @property
    def metrics(self) -> dict:
        return self.meta.get("metrics") or {}

    @property
    def train_config(self) -> dict | None:
        return self.meta.get("train_config")

    @property
    def data_position(self) -> Any:
        return self.meta.get("data_position")

    @property
    def rng_state(self) -> dict | None:
        return self.meta.get("rng_state")

    @property
    def trainer_state(self) -> TrainerState | None:
        """None for a checkpoint not saved by a ``Trainer``."""
        return TrainerState.from_meta(self.meta)


# --------------------------------------------------------------------------- helpers

def _to_cpu(obj: Any) -> Any:
    """Move every tensor inside nested dicts/lists/tuples to the CPU."""
    if isinstance(obj, torch.Tensor):
        return obj.detach().cpu()
    if isinstance(obj, dict):
        return {k: _to_cpu(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(_to_cpu(v) for v in obj)
    return obj


def _config_dict(config: Any) -> dict | None:
    if config is None or isinstance(config, dict):
        return config
    if hasattr(config, "to_dict"):
        return config.to_dict()
    if dataclasses.is_dataclass(config):
        return dataclasses.asdict(config)
    raise CheckpointError(f"train_config must be a dict or dataclass, got {type(config).__name__}")


def _json_dumps(obj: Any, what: str) -> str:
    try:
        return json.dumps(obj, ensure_ascii=False, indent=1)
    except (TypeError, ValueError) as exc:
        raise CheckpointError(f"{what} is not JSON-serialisable: {exc}") from None


def _device_description(model: torch.nn.Module) -> str:
    param = next(model.parameters(), None)
    if param is None:
        return "cpu"
    if param.device.type == "cuda":
        return f"{param.device} ({torch.cuda.get_device_name(param.device)})"
    return str(param.device)


# --------------------------------------------------------------------------- save

def _write_files(tmp: Path, tensors: dict, opt_state: Any, meta: dict) -> None:
    """The three files into the temporary directory ``tmp``, each fsynced."""
    from safetensors.torch import save_file

    save_file(tensors, str(tmp / MODEL_FILE), metadata={"format": "pt"})
    torch.save(_to_cpu(opt_state), tmp / OPTIMIZER_FILE)
    for name in (MODEL_FILE, OPTIMIZER_FILE):
        fsync_file(tmp / name)
    meta["files"] = {
        name: {"bytes": (tmp / name).stat().st_size, "sha256": sha256(tmp / name)}
        for name in (MODEL_FILE, OPTIMIZER_FILE)
    }
    with open(tmp / META_FILE, "w", encoding="utf-8") as fh:
        fh.write(_json_dumps(meta, "checkpoint metadata"))
        fh.flush()
        os.fsync(fh.fileno())
    fsync_dir(tmp)


def save_checkpoint(
    directory: str | os.PathLike,
    model: torch.nn.Module,
    vocab: Vocab,
    model_config: ModelConfig,
    *,
    optimizer: Any = None,
    train_config: Any = None,
    step: int = 0,
    metrics: dict | None = None,
    data_position: Any = None,
    rng_state: dict | None = None,
    trainer_state: TrainerState | None = None,
    extra: dict | None = None,
    overwrite: bool = False,
) -> Path:
    """Write a checkpoint directory atomically and return its path.

    ``optimizer`` is an optimizer (its ``state_dict()`` is saved) or any state made of
    tensors/dicts/lists/numbers (or None). ``rng_state`` defaults to ``capture_rng_state()``.
    ``trainer_state`` is what ``Trainer.resume`` needs (None: the checkpoint cannot resume).
    An existing ``directory`` is kept unless ``overwrite=True`` (then the old one is swapped
    out only after the new one is complete).
    """
    target = Path(directory)
    if target.exists() and not overwrite:
        raise CheckpointError(f"{target} already exists (refusing to overwrite a checkpoint)")
    if len(vocab) != model_config.vocab_size:
        raise CheckpointError(
            f"vocab has {len(vocab)} tokens but the model config says {model_config.vocab_size}"
        )
    meta = {
        "format": FORMAT,
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "device": _device_description(model),
        "torch_version": torch.__version__,
        "step": int(step),
        "model_config": model_config.to_dict(),
        "train_config": _config_dict(train_config),
        "vocab": vocab.to_dict(),
        "metrics": dict(metrics or {}),
        "data_position": data_position,
        "rng_state": capture_rng_state() if rng_state is None else rng_state,
        "trainer_state": None if trainer_state is None else trainer_state.to_dict(),
        "extra": extra or {},
    }
    _json_dumps(meta, "checkpoint metadata")  # fail before touching the disk
    opt_state = optimizer.state_dict() if hasattr(optimizer, "state_dict") else optimizer
    tensors = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}

    from safetensors import SafetensorError

    what, note = f"checkpoint {target}", " (earlier checkpoints are untouched)"
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(dir=target.parent, prefix=f".{target.name}.tmp-"))
    except OSError as exc:
        raise write_error(what, exc, note) from None
    try:
        try:
            _write_files(tmp, tensors, opt_state, meta)
        except (OSError, SafetensorError, RuntimeError) as exc:  # a full disk, among others
            raise write_error(what, exc, note) from None
        if target.exists():
            backup = target.parent / f".{target.name}.old-{os.getpid()}"
            os.rename(target, backup)
            try:
                os.rename(tmp, target)
            except BaseException:
                os.rename(backup, target)  # put the old checkpoint back
                raise
            shutil.rmtree(backup, ignore_errors=True)
        else:
            os.rename(tmp, target)
        fsync_dir(target.parent)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return target


# --------------------------------------------------------------------------- load

def _check_file(path: Path, name: str, meta: dict) -> None:
    expected = (meta.get("files") or {}).get(name)
    if not expected:
        return
    size = (path / name).stat().st_size
    if size != expected.get("bytes"):
        raise CheckpointError(
            f"{path / name} is truncated or corrupt ({size} bytes, expected {expected['bytes']})"
        )
    if sha256(path / name) != expected.get("sha256"):
        raise CheckpointError(f"{path / name} is corrupt (checksum mismatch)")


def _check_tensor_headers(file: Path, model_config: ModelConfig) -> None:
    """Compare the names, shapes and dtypes in the safetensors header with what
    ``model_config`` needs, reading no tensor data: sizes in meta.json alone never decide
    what is allocated."""
    from safetensors import SafetensorError, safe_open

    expected = parameter_shapes(model_config)
    optional = start_state_shapes(model_config)
    try:
        with safe_open(str(file), framework="pt") as fh:
            found = {name: (tuple(fh.get_slice(name).get_shape()), fh.get_slice(name).get_dtype())
                     for name in fh.keys()}
    except (SafetensorError, OSError, RuntimeError, ValueError) as exc:
        raise CheckpointError(f"{file} is corrupt ({exc})") from None
    missing = sorted(set(expected) - set(found))
    unexpected = sorted(set(found) - set(expected) - set(optional))
    expected = {**expected, **optional}
    if missing or unexpected:
        raise CheckpointError(f"{file} does not match the model config "
                              f"(missing {missing[:3]}, unexpected {unexpected[:3]})")
    for name, (shape, dtype) in found.items():
        if shape != expected[name]:
            raise CheckpointError(f"{file}: {name} has shape {shape}, the config needs "
                                  f"{expected[name]}")
        if dtype not in FLOAT_DTYPES:
            raise CheckpointError(f"{file}: {name} has dtype {dtype}, not a float type")


def load_checkpoint(path: str | os.PathLike, map_location: str | torch.device = "cpu",
                    *, load_optimizer: bool = True) -> Checkpoint:
    """Load a checkpoint directory (or a run directory's latest checkpoint).

    Only safetensors, JSON and ``torch.load(weights_only=True)`` are read: nothing in the
    files can run code. Raises ``CheckpointError`` for anything missing, foreign, corrupt or
    inconsistent.
    """
    path = resolve_checkpoint(path)
    meta = read_meta(path)
    try:
        model_config = ModelConfig.from_dict(meta.get("model_config"))
        vocab = Vocab.from_dict(meta.get("vocab"))
    except (TypeError, ValueError) as exc:
        raise CheckpointError(f"{path / META_FILE}: {exc}") from None
    if len(vocab) != model_config.vocab_size:
        raise CheckpointError(
            f"{path}: vocab has {len(vocab)} tokens but the model config says "
            f"{model_config.vocab_size}"
        )
    if not (path / MODEL_FILE).is_file():
        raise CheckpointError(f"{path} is missing {MODEL_FILE}")
    _check_file(path, MODEL_FILE, meta)
    _check_tensor_headers(path / MODEL_FILE, model_config)

    from safetensors import SafetensorError
    from safetensors.torch import load_file

    device = str(map_location)
    try:
        tensors = load_file(str(path / MODEL_FILE), device=device)
    except (SafetensorError, OSError, RuntimeError, ValueError) as exc:
        raise CheckpointError(f"{path / MODEL_FILE} is corrupt ({exc})") from None
    for name, tensor in tensors.items():
        if not bool(torch.isfinite(tensor).all()):
            raise CheckpointError(f"{path / MODEL_FILE}: {name} holds NaN or infinite values")
    model = CharRNN(model_config)
    model.load_state_dict(tensors)
    model.to(device)
    model.eval()

    optimizer_state = None
    if load_optimizer and (path / OPTIMIZER_FILE).is_file():
        _check_file(path, OPTIMIZER_FILE, meta)
        try:
            optimizer_state = torch.load(path / OPTIMIZER_FILE, map_location=device,
                                         weights_only=True)
        except Exception as exc:  # unpickling errors come in many types
            raise CheckpointError(
                f"{path / OPTIMIZER_FILE} cannot be loaded safely ({type(exc).__name__})"
            ) from None
    return Checkpoint(model=model, vocab=vocab, model_config=model_config, meta=meta,
                      optimizer_state=optimizer_state, path=path)
