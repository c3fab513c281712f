"""A visit as DACE delivers it: a ``.tgz`` (or ``.tar.gz``, ``.tar``) of its products,
unpacked once into a cache folder and read from there.

Unpacking is safe: only regular files and folders, every member inside the cache folder
(an absolute path, a ``..``, a link or a device is refused with one line naming the archive
and the member); the archive is unpacked into a new temporary folder renamed to the cache
at the end, so that no existing file is ever written over and an interrupted unpacking
leaves no half cache. A cache records the archive it came from (name, size [bytes],
modification time [ns]): the same archive reuses it, another one is refused (one line).
"""

from __future__ import annotations

import shutil
import tarfile
import tempfile
from pathlib import Path, PurePosixPath

from archi.errors import ProductNotFoundError

ARCHIVE_SUFFIXES = (".tgz", ".tar.gz", ".tar")
SOURCE_FILE = ".archi_unpacked_from"
"""The cache's record of its archive."""


def is_archive(path: str | Path) -> bool:
    """Whether ``path`` names a tar archive (by its name) that is a file."""
    path = Path(path)
    return path.name.lower().endswith(ARCHIVE_SUFFIXES) and path.is_file()


def default_cache(archive: str | Path) -> Path:
    """The cache folder of an archive when none is given: beside it, its name without the
    archive suffix plus ``_unpacked`` (``CH_PR..._V0300.tgz`` -> ``CH_PR..._V0300_unpacked``)."""
    archive = Path(archive)
    name = archive.name
    for suffix in ARCHIVE_SUFFIXES:
        if name.lower().endswith(suffix):
            name = name[: -len(suffix)]
            break
    return archive.with_name(f"{name}_unpacked")


def archive_stamp(archive: Path) -> str:
    """The archive as its cache records it: absolute path, size [bytes], mtime [ns]."""
    stat = archive.stat()
    return f"{archive.resolve()}\t{stat.st_size}\t{stat.st_mtime_ns}\n"


def check_members(archive: Path, members: list[tarfile.TarInfo]) -> None:
    """ProductNotFoundError naming the archive and the first member that is not a regular
    file or folder inside the archive's folder."""
    for member in members:
        parts = PurePosixPath(member.name).parts
        if member.name.startswith(("/", "\\")) or ".." in parts or ":" in member.name:
            raise ProductNotFoundError(f"{archive}: member {member.name!r} points outside "
                                       f"the archive's folder; refused")
        if not (member.isfile() or member.isdir()):
            raise ProductNotFoundError(f"{archive}: member {member.name!r} is a link or "
                                       f"device, not a file; refused")


def unpack_visit(archive: str | Path, cache: str | Path | None = None) -> Path:
    """The folder holding the products of ``archive``, unpacked into ``cache`` (default:
    :func:`default_cache`) on first use. Raises ProductNotFoundError (one line) on an
    unreadable archive, an unsafe member, or a cache holding another archive or other files."""
    archive = Path(archive)
    cache = Path(cache) if cache is not None else default_cache(archive)
    stamp = archive_stamp(archive)
    if cache.exists():
        record = cache / SOURCE_FILE
        if record.is_file() and record.read_text() == stamp:
            return cache
        raise ProductNotFoundError(f"{archive}: its cache folder {cache} already exists and "
                                   f"holds another archive's or other files; delete it to "
                                   f"unpack this one")
    cache.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{cache.name}.", dir=cache.parent))
    try:
        with tarfile.open(archive) as tar:
            members = tar.getmembers()
            check_members(archive, members)
            tar.extractall(staging, members=members, **_data_filter())
        (staging / SOURCE_FILE).write_text(stamp)
        staging.rename(cache)
    except (tarfile.TarError, EOFError, OSError) as exc:
        raise ProductNotFoundError(f"{archive}: cannot unpack ({exc})") from None
    finally:
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)
    return cache


def _data_filter() -> dict:
    """tarfile's own 'data' filter where Python has it (3.12, backported to 3.11.4): a
    second guard behind :func:`check_members`."""
    return {"filter": "data"} if hasattr(tarfile, "data_filter") else {}


def visit_folder(path: str | Path, cache: str | Path | None = None) -> Path:
    """A visit's folder: ``path`` itself, or, for an archive, its unpacked cache."""
    return unpack_visit(path, cache) if is_archive(path) else Path(path)
