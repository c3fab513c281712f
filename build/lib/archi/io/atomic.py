"""The one atomic writer: every file the project writes appears whole or not at all.

A file is written to a temporary name in its destination folder and renamed onto its
final name only when complete, so a killed job never leaves a file that looks finished
(Snakemake and the readers would trust it).
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TextIO


@contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path beside ``path`` (parent folders created); rename it onto
    ``path`` only when the block ends without an error, else remove it."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp")
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def write_text_atomically(path: str | Path, write: Callable[[TextIO], None]) -> None:
    """Run ``write`` on a new UTF-8 text file (``\\n`` line ends), synced to disk, then
    rename it onto ``path``; on any error ``path`` is left as it was."""
    with atomic_path(path) as tmp:
        with open(tmp, "x", encoding="utf-8", newline="") as fh:
            write(fh)
            fh.flush()
            os.fsync(fh.fileno())
