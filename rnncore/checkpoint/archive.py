"""Zipped checkpoints: export for download, validate and import an upload.

An upload is untrusted: entries with unsafe paths, too many entries, more than
``MAX_ZIP_BYTES`` unpacked (counted while unpacking: a zip's own sizes can lie), a
``meta.json`` over ``MAX_META_BYTES`` or checkpoint files in more than one folder are refused
before anything is loaded. Errors name the upload, never the server's temporary directory.
"""
from __future__ import annotations

import contextlib
import io
import os
import shutil
import tempfile
import zipfile
from pathlib import Path
from typing import Iterator

import torch

from rnncore.checkpoint.files import (CHECKPOINT_FILES, MAX_META_BYTES, META_FILE, MODEL_FILE,
                                      OPTIMIZER_FILE, CheckpointError)
from rnncore.checkpoint.rundir import resolve_checkpoint
from rnncore.checkpoint.meta import read_meta
from rnncore.checkpoint.store import Checkpoint, load_checkpoint

MAX_ZIP_BYTES = 512 * 1024 * 1024  # uncompressed total accepted from an uploaded zip
# the app's upload limit (checkpoint zips and corpora), .streamlit/config.toml's
# maxUploadSize; a model-only zip of the README's LSTM 2 x 256 is about 10 MB, 31 MB with
# optimizer.pt
MAX_UPLOAD_MB = 50
MAX_ZIP_ENTRIES = 64


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
        if parts[-1] == META_FILE and info.file_size > MAX_META_BYTES:
            raise CheckpointError(f"zip's {META_FILE} is larger than "
                                  f"{MAX_META_BYTES // 2**20} MB")
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


def _extract(data: bytes, dest: Path, load_optimizer: bool = True) -> None:
    try:
        archive = zipfile.ZipFile(io.BytesIO(data))
    except zipfile.BadZipFile:
        raise CheckpointError("upload is not a zip file") from None
    with archive:
        members = _zip_members(archive)
        if not load_optimizer:
            members.pop(OPTIMIZER_FILE, None)
        for name, info in members.items():
            written = 0
            limit = MAX_META_BYTES if name == META_FILE else MAX_ZIP_BYTES
            try:
                with archive.open(info) as src, open(dest / name, "wb") as out:
                    # count real bytes: the sizes in the zip directory can lie
                    for block in iter(lambda: src.read(1 << 20), b""):
                        written += len(block)
                        if written > limit:
                            raise CheckpointError(
                                f"zip's {name} unpacks to more than {limit // 2**20} MB"
                            )
                        out.write(block)
            except (zipfile.BadZipFile, zipfile.LargeZipFile, EOFError, NotImplementedError,
                    RuntimeError) as exc:
                raise CheckpointError(f"zip entry {info.filename!r} is corrupt ({exc})") from None


@contextlib.contextmanager
def _named(tmp: Path, name: str) -> Iterator[None]:
    """Errors about files under ``tmp`` name ``name`` instead (the upload, the destination):
    a temporary path means nothing to the user and tells a client about the server."""
    try:
        yield
    except CheckpointError as exc:
        raise CheckpointError(str(exc).replace(str(tmp), name)) from None


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
        with _named(tmp, str(dest)):
            _extract(bytes(data), tmp)
            load_checkpoint(tmp, map_location)  # validate before installing
        os.rename(tmp, dest)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return load_checkpoint(dest, map_location)


def load_checkpoint_bytes(data: bytes, map_location: str | torch.device = "cpu", *,
                          load_optimizer: bool = True, name: str = "upload") -> Checkpoint:
    """Load a zipped checkpoint from memory (unpacked to a temporary directory); errors
    call it ``name``."""
    with tempfile.TemporaryDirectory(prefix="rnncore-ckpt-") as tmp, _named(Path(tmp), name):
        _extract(bytes(data), Path(tmp), load_optimizer)
        ckpt = load_checkpoint(tmp, map_location, load_optimizer=load_optimizer)
    ckpt.path = None
    return ckpt


def export_checkpoint_zip(path: str | os.PathLike, include_optimizer: bool = True) -> bytes:
    """Zip a checkpoint directory (for download); the inverse of ``load_checkpoint_bytes``.
    ``include_optimizer=False`` leaves out ``optimizer.pt``: a model-only zip, enough to
    generate (about a third of the size with Adam), not to resume training."""
    path = resolve_checkpoint(path)
    read_meta(path)  # refuse to zip what is not a checkpoint
    names = CHECKPOINT_FILES if include_optimizer else (MODEL_FILE, META_FILE)
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for name in names:
            if (path / name).is_file():
                archive.write(path / name, f"{path.name}/{name}")
    return buffer.getvalue()
