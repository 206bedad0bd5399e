"""Checkpoints: one directory per checkpoint, written atomically, loaded without running code.

Layout of a checkpoint directory::

    model.safetensors   CharRNN weights (CPU tensors, safetensors: no pickle)
    meta.json           format tag "rnncore-checkpoint/1", model config, train config, vocab,
                        metrics, step, data position, RNG states, created, device, file hashes
    optimizer.pt        optimizer state (or None), read with torch.load(weights_only=True)

A save writes every file into a temporary sibling directory, fsyncs the files and the
directory, then renames it into place, so a crash mid-save leaves the earlier checkpoints
untouched. ``CheckpointManager`` keeps ``step-000123/`` directories in a run directory, the
last ``keep_last`` plus the best by validation loss, and ``latest.json`` / ``best.json``
pointers (replaced atomically with ``os.replace``).
"""
from __future__ import annotations

import base64
import dataclasses
import datetime as _dt
import hashlib
import io
import json
import math
import os
import random
import re
import shutil
import struct
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from rnncore.data import Vocab
from rnncore.model import CharRNN, ModelConfig

FORMAT = "rnncore-checkpoint/1"
MODEL_FILE, META_FILE, OPTIMIZER_FILE = "model.safetensors", "meta.json", "optimizer.pt"
CHECKPOINT_FILES = (MODEL_FILE, META_FILE, OPTIMIZER_FILE)
LATEST_POINTER, BEST_POINTER = "latest.json", "best.json"
MAX_ZIP_BYTES = 512 * 1024 * 1024  # uncompressed total accepted from an uploaded zip
MAX_ZIP_ENTRIES = 64
_STEP_DIR = re.compile(r"^step-(\d+)$")


class CheckpointError(ValueError):
    """A checkpoint that cannot be saved or loaded (one-line message)."""


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


# --------------------------------------------------------------------------- RNG states

def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _byte_tensor(text: str) -> torch.Tensor:
    return torch.frombuffer(bytearray(base64.b64decode(text)), dtype=torch.uint8).clone()


def capture_rng_state() -> dict:
    """Python, NumPy, torch CPU (and, once initialised, CUDA) RNG states as JSON data."""
    version, internal, gauss_next = random.getstate()
    state: dict = {
        # the Mersenne Twister words are packed (little-endian uint32) to keep meta.json short
        "python": {"version": version, "gauss_next": gauss_next,
                   "internal": _b64(struct.pack(f"<{len(internal)}I", *internal))},
        "torch": _b64(torch.get_rng_state().numpy().tobytes()),
    }
    try:
        import numpy as np

        name, keys, pos, has_gauss, cached = np.random.get_state()
        state["numpy"] = {"name": name, "keys": _b64(keys.astype("<u4").tobytes()), "pos": int(pos),
                          "has_gauss": int(has_gauss), "cached_gaussian": float(cached)}
    except ImportError:  # numpy is optional for rnncore itself
        pass
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = [_b64(s.numpy().tobytes()) for s in torch.cuda.get_rng_state_all()]
    return state


def restore_rng_state(state: dict) -> None:
    """Inverse of ``capture_rng_state`` (missing parts are left alone)."""
    try:
        if "python" in state:
            py = state["python"]
            words = base64.b64decode(py["internal"])
            internal = struct.unpack(f"<{len(words) // 4}I", words)
            random.setstate((py["version"], internal, py["gauss_next"]))
        if "torch" in state:
            torch.set_rng_state(_byte_tensor(state["torch"]))
        if "numpy" in state:
            import numpy as np

            npst = state["numpy"]
            keys = np.frombuffer(base64.b64decode(npst["keys"]), dtype="<u4").astype(np.uint32)
            np.random.set_state((npst["name"], keys,
                                 npst["pos"], npst["has_gauss"], npst["cached_gaussian"]))
        if "cuda" in state and torch.cuda.is_available():
            states = [_byte_tensor(s) for s in state["cuda"]]
            if len(states) == torch.cuda.device_count():
                torch.cuda.set_rng_state_all(states)
    except (KeyError, TypeError, ValueError, RuntimeError, struct.error) as exc:
        raise CheckpointError(f"invalid RNG state in checkpoint: {exc}") from None


# --------------------------------------------------------------------------- helpers

def _fsync_file(path: Path) -> None:
    with open(path, "rb") as fh:
        os.fsync(fh.fileno())


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:  # some platforms cannot open directories; rename is still atomic
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


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


def _write_text_atomic(path: Path, text: str) -> None:
    """Write a small file via temp file + fsync + os.replace (readers see old or new)."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    _fsync_dir(path.parent)


def _device_description(model: torch.nn.Module) -> str:
    param = next(model.parameters(), None)
    if param is None:
        return "cpu"
    if param.device.type == "cuda":
        return f"{param.device} ({torch.cuda.get_device_name(param.device)})"
    return str(param.device)


# --------------------------------------------------------------------------- save

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
    extra: dict | None = None,
    overwrite: bool = False,
) -> Path:
    """Write a checkpoint directory atomically and return its path.

    ``optimizer`` is an optimizer (its ``state_dict()`` is saved) or any state made of
    tensors/dicts/lists/numbers (or None). ``rng_state`` defaults to ``capture_rng_state()``.
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
        "extra": extra or {},
    }
    _json_dumps(meta, "checkpoint metadata")  # fail before touching the disk
    opt_state = optimizer.state_dict() if hasattr(optimizer, "state_dict") else optimizer
    tensors = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}

    from safetensors.torch import save_file

    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=target.parent, prefix=f".{target.name}.tmp-"))
    try:
        save_file(tensors, str(tmp / MODEL_FILE), metadata={"format": "pt"})
        torch.save(_to_cpu(opt_state), tmp / OPTIMIZER_FILE)
        for name in (MODEL_FILE, OPTIMIZER_FILE):
            _fsync_file(tmp / name)
        meta["files"] = {
            name: {"bytes": (tmp / name).stat().st_size, "sha256": _sha256(tmp / name)}
            for name in (MODEL_FILE, OPTIMIZER_FILE)
        }
        with open(tmp / META_FILE, "w", encoding="utf-8") as fh:
            fh.write(_json_dumps(meta, "checkpoint metadata"))
            fh.flush()
            os.fsync(fh.fileno())
        _fsync_dir(tmp)
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
        _fsync_dir(target.parent)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return target


# --------------------------------------------------------------------------- load

def _read_meta(path: Path) -> dict:
    meta_path = path / META_FILE
    if not meta_path.is_file():
        raise CheckpointError(f"{path} is not a checkpoint (no {META_FILE})")
    try:
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise CheckpointError(f"{meta_path} is corrupt ({exc})") from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        found = meta.get("format") if isinstance(meta, dict) else type(meta).__name__
        raise CheckpointError(f"{path} is not an {FORMAT} checkpoint (format {found!r})")
    return meta


def _check_file(path: Path, name: str, meta: dict) -> None:
    expected = (meta.get("files") or {}).get(name)
    if not expected:
        return
    size = (path / name).stat().st_size
    if size != expected.get("bytes"):
        raise CheckpointError(
            f"{path / name} is truncated or corrupt ({size} bytes, expected {expected['bytes']})"
        )
    if _sha256(path / name) != expected.get("sha256"):
        raise CheckpointError(f"{path / name} is corrupt (checksum mismatch)")


def resolve_checkpoint(path: str | os.PathLike) -> Path:
    """A checkpoint directory as given, or a run directory's latest checkpoint."""
    path = Path(path)
    if not path.exists():
        raise CheckpointError(f"checkpoint not found: {path}")
    if not path.is_dir():
        raise CheckpointError(f"{path} is not a checkpoint directory")
    if not (path / META_FILE).exists():
        latest = latest_checkpoint(path)
        if latest is not None:
            return latest
    return path


def load_checkpoint(path: str | os.PathLike, map_location: str | torch.device = "cpu",
                    *, load_optimizer: bool = True) -> Checkpoint:
    """Load a checkpoint directory (or a run directory's latest checkpoint).

    Only safetensors, JSON and ``torch.load(weights_only=True)`` are read: nothing in the
    files can run code. Raises ``CheckpointError`` for anything missing, foreign, corrupt or
    inconsistent.
    """
    path = resolve_checkpoint(path)
    meta = _read_meta(path)
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

    from safetensors import SafetensorError
    from safetensors.torch import load_file

    device = str(map_location)
    try:
        tensors = load_file(str(path / MODEL_FILE), device=device)
    except (SafetensorError, OSError, RuntimeError, ValueError) as exc:
        raise CheckpointError(f"{path / MODEL_FILE} is corrupt ({exc})") from None

    model = CharRNN(model_config)
    expected = model.state_dict()
    missing = sorted(set(expected) - set(tensors))
    unexpected = sorted(set(tensors) - set(expected))
    if missing or unexpected:
        raise CheckpointError(
            f"{path / MODEL_FILE} does not match the model config "
            f"(missing {missing[:3]}, unexpected {unexpected[:3]})"
        )
    for name, tensor in tensors.items():
        if tensor.shape != expected[name].shape:
            raise CheckpointError(
                f"{path / MODEL_FILE}: {name} has shape {tuple(tensor.shape)}, the config "
                f"needs {tuple(expected[name].shape)}"
            )
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


# --------------------------------------------------------------------------- zip upload

def _zip_members(archive: zipfile.ZipFile) -> dict[str, zipfile.ZipInfo]:
    """Map checkpoint file name -> zip entry, rejecting unsafe or oversized archives."""
    infos = archive.infolist()
    if len(infos) > MAX_ZIP_ENTRIES:
        raise CheckpointError(f"zip has {len(infos)} entries (at most {MAX_ZIP_ENTRIES})")
    members: dict[str, zipfile.ZipInfo] = {}
    prefixes = set()
    total = 0
    for info in infos:
        name = info.filename
        parts = name.replace("\\", "/").split("/")
        if name.startswith(("/", "\\")) or ":" in parts[0] or ".." in parts:
            raise CheckpointError(f"zip entry {name!r} has an unsafe path")
        if info.is_dir():
            continue
        total += info.file_size
        if total > MAX_ZIP_BYTES:
            raise CheckpointError(f"zip unpacks to more than {MAX_ZIP_BYTES // 2**20} MB")
        if parts[-1] in CHECKPOINT_FILES:
            prefixes.add("/".join(parts[:-1]))
            if parts[-1] in members:
                raise CheckpointError(f"zip holds more than one {parts[-1]}")
            members[parts[-1]] = info
    if META_FILE not in members or MODEL_FILE not in members:
        raise CheckpointError(f"zip is not a checkpoint (needs {META_FILE} and {MODEL_FILE})")
    if len(prefixes) > 1:
        raise CheckpointError("zip holds checkpoint files in more than one folder")
    return members


def _extract(data: bytes, dest: Path) -> None:
    try:
        archive = zipfile.ZipFile(io.BytesIO(data))
    except zipfile.BadZipFile:
        raise CheckpointError("upload is not a zip file") from None
    with archive:
        members = _zip_members(archive)
        for name, info in members.items():
            written = 0
            try:
                with archive.open(info) as src, open(dest / name, "wb") as out:
                    # count real bytes: the sizes in the zip directory can lie
                    for block in iter(lambda: src.read(1 << 20), b""):
                        written += len(block)
                        if written > MAX_ZIP_BYTES:
                            raise CheckpointError(
                                f"zip unpacks to more than {MAX_ZIP_BYTES // 2**20} MB"
                            )
                        out.write(block)
            except (zipfile.BadZipFile, zipfile.LargeZipFile, EOFError, NotImplementedError,
                    RuntimeError) as exc:
                raise CheckpointError(f"zip entry {info.filename!r} is corrupt ({exc})") from None


def import_checkpoint_zip(data: bytes, dest_dir: str | os.PathLike,
                          map_location: str | torch.device = "cpu") -> Checkpoint:
    """Validate an uploaded zip of a checkpoint directory, install it at ``dest_dir`` (which
    must not exist yet) and load it. Nothing is left behind when validation fails."""
    dest = Path(dest_dir)
    if dest.exists():
        raise CheckpointError(f"{dest} already exists (refusing to overwrite)")
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=dest.parent, prefix=f".{dest.name}.tmp-"))
    try:
        _extract(bytes(data), tmp)
        load_checkpoint(tmp, map_location)  # validate before installing
        os.rename(tmp, dest)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return load_checkpoint(dest, map_location)


def load_checkpoint_bytes(data: bytes, map_location: str | torch.device = "cpu") -> Checkpoint:
    """Load a zipped checkpoint from memory (unpacked to a temporary directory)."""
    with tempfile.TemporaryDirectory(prefix="rnncore-ckpt-") as tmp:
        _extract(bytes(data), Path(tmp))
        ckpt = load_checkpoint(tmp, map_location)
    ckpt.path = None
    return ckpt


def export_checkpoint_zip(path: str | os.PathLike) -> bytes:
    """Zip a checkpoint directory (for download); the inverse of ``load_checkpoint_bytes``."""
    path = resolve_checkpoint(path)
    _read_meta(path)
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for name in CHECKPOINT_FILES:
            if (path / name).is_file():
                archive.write(path / name, f"{path.name}/{name}")
    return buffer.getvalue()


# --------------------------------------------------------------------------- run directories

def _read_pointer(run_dir: Path, name: str) -> dict | None:
    try:
        data = json.loads((run_dir / name).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return None
    return data if isinstance(data, dict) else None


def list_checkpoints(run_dir: str | os.PathLike) -> list[tuple[int, Path]]:
    """(step, path) of every complete ``step-NNNNNN`` checkpoint, by step."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        return []
    found = []
    for child in run_dir.iterdir():
        match = _STEP_DIR.match(child.name)
        if match and (child / META_FILE).is_file():
            found.append((int(match.group(1)), child))
    return sorted(found)


def _pointed(run_dir: Path, pointer: str) -> Path | None:
    data = _read_pointer(run_dir, pointer)
    if data and isinstance(data.get("checkpoint"), str) and _STEP_DIR.match(data["checkpoint"]):
        target = run_dir / data["checkpoint"]
        if (target / META_FILE).is_file():
            return target
    return None


def latest_checkpoint(run_dir: str | os.PathLike) -> Path | None:
    """The run's newest checkpoint: the ``latest.json`` pointer, else the highest step."""
    run_dir = Path(run_dir)
    target = _pointed(run_dir, LATEST_POINTER)
    if target is not None:
        return target
    found = list_checkpoints(run_dir)
    return found[-1][1] if found else None


def best_checkpoint(run_dir: str | os.PathLike) -> Path | None:
    """The checkpoint with the lowest validation loss (``best.json``), if any."""
    return _pointed(Path(run_dir), BEST_POINTER)


class CheckpointManager:
    """Saves ``run_dir/step-NNNNNN`` checkpoints, keeps the newest ``keep_last`` plus the
    best by ``best_metric`` (lower is better), and maintains ``latest.json``/``best.json``."""

    def __init__(self, run_dir: str | os.PathLike, keep_last: int = 3,
                 best_metric: str = "val_loss") -> None:
        if keep_last < 1:
            raise ValueError(f"keep_last must be at least 1, got {keep_last}")
        self.run_dir = Path(run_dir)
        self.keep_last = keep_last
        self.best_metric = best_metric
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self._remove_stale_temps()

    def _remove_stale_temps(self) -> None:
        """Clean up after a save that crashed: ``.step-N.tmp-*`` are never complete
        checkpoints; ``.step-N.old-*`` is the replaced copy of ``step-N``, put back if the
        crash came before the new one was renamed into place."""
        for child in sorted(self.run_dir.iterdir()):
            if not child.name.startswith(".step-") or not child.is_dir():
                continue
            if ".tmp-" in child.name:
                shutil.rmtree(child, ignore_errors=True)
            elif ".old-" in child.name:
                original = self.run_dir / child.name[1:].split(".old-")[0]
                if original.exists():
                    shutil.rmtree(child, ignore_errors=True)
                else:
                    os.rename(child, original)

    def path_for(self, step: int) -> Path:
        return self.run_dir / f"step-{int(step):06d}"

    def best_value(self) -> float | None:
        data = _read_pointer(self.run_dir, BEST_POINTER)
        if data and best_checkpoint(self.run_dir) is not None:
            value = data.get(self.best_metric)
            if isinstance(value, (int, float)):
                return float(value)
        return None

    def save(self, model: torch.nn.Module, vocab: Vocab, model_config: ModelConfig, *,
             step: int, metrics: dict | None = None, **kwargs: Any) -> Path:
        """Save step ``step`` (same keywords as ``save_checkpoint``), update the pointers,
        prune old checkpoints. Saving a step that exists replaces it."""
        path = save_checkpoint(self.path_for(step), model, vocab, model_config, step=step,
                               metrics=metrics, overwrite=True, **kwargs)
        _write_text_atomic(self.run_dir / LATEST_POINTER,
                           json.dumps({"checkpoint": path.name, "step": int(step)}))
        value = (metrics or {}).get(self.best_metric)
        if isinstance(value, (int, float)) and math.isfinite(value):
            best = self.best_value()
            if best is None or value <= best:
                _write_text_atomic(
                    self.run_dir / BEST_POINTER,
                    json.dumps({"checkpoint": path.name, "step": int(step),
                                self.best_metric: float(value)}),
                )
        self._prune()
        return path

    def _prune(self) -> None:
        keep = {p for _, p in list_checkpoints(self.run_dir)[-self.keep_last:]}
        for pointer in (LATEST_POINTER, BEST_POINTER):
            target = _pointed(self.run_dir, pointer)
            if target is not None:
                keep.add(target)
        for _, path in list_checkpoints(self.run_dir):
            if path not in keep:
                # rename first: a crash mid-delete must not leave a half checkpoint that
                # still looks complete (the .tmp- name is cleaned up on the next start)
                doomed = path.parent / f".{path.name}.tmp-delete"
                try:
                    os.rename(path, doomed)
                except OSError:
                    continue
                shutil.rmtree(doomed, ignore_errors=True)

    def checkpoints(self) -> list[Path]:
        return [p for _, p in list_checkpoints(self.run_dir)]

    def latest(self) -> Path | None:
        return latest_checkpoint(self.run_dir)

    def best(self) -> Path | None:
        return best_checkpoint(self.run_dir)

    def load_latest(self, map_location: str | torch.device = "cpu") -> Checkpoint | None:
        path = self.latest()
        return None if path is None else load_checkpoint(path, map_location)
