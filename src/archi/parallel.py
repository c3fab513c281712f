"""Work shared among the cores of one job: forked processes, frames split at chunk bounds.

A job gets a few cores (Snakemake's ``threads``). The costly passes over a cube (tracking,
the factor search) treat each chunk of frames on its own, so they split into contiguous
frame ranges that start on chunk boundaries (:func:`frame_ranges`): each part reads only
its own frames, and the chunks, hence the numbers, are the same bit for bit as in one pass.

:func:`run_forked` runs independent pieces of work at once: the first in this process, the
others in forked processes, which inherit the visit (memory-mapped cube included) instead
of receiving it pickled; only their results travel back. Elsewhere than on Linux (see
:func:`can_fork`) the pieces run one after another here, with the same results.
"""

from __future__ import annotations

import ctypes
import functools
import mmap
import multiprocessing
import sys
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from typing import Any, TypeVar

import numpy as np

__all__ = ["can_fork", "frame_ranges", "release_free_memory", "run_forked", "shared_empty",
           "split_frames"]

T = TypeVar("T")

_CALLS: list[Callable[[], Any]] = []  # the pieces of work, inherited by the forked workers


def can_fork() -> bool:
    """Whether worker processes are forked here: on Linux only (macOS can fork, but its
    system libraries, Accelerate among them, are not safe in a forked child)."""
    return sys.platform.startswith("linux") and "fork" in multiprocessing.get_all_start_methods()


def frame_ranges(n_frames: int, chunk_frames: int, parts: int) -> list[tuple[int, int]]:
    """At most ``parts`` contiguous ranges ``(first, stop)`` covering frames 0..n_frames-1,
    each starting on a multiple of ``chunk_frames``, with nearly equal numbers of chunks."""
    if n_frames <= 0:
        return []
    if chunk_frames < 1 or parts < 1:
        raise ValueError(f"chunk_frames and parts must be >= 1, got {chunk_frames}, {parts}")
    chunks = -(-n_frames // chunk_frames)
    parts = min(parts, chunks)
    bounds = [min(round(i * chunks / parts) * chunk_frames, n_frames) for i in range(parts + 1)]
    return list(zip(bounds[:-1], bounds[1:]))


def _call(index: int) -> Any:
    return _CALLS[index]()


def run_forked(calls: Sequence[Callable[[], T]], workers: int = 2) -> list[T]:
    """Results of ``calls`` (in order), run at once: ``calls[0]`` in this process, the
    others in up to ``workers - 1`` forked processes (any callable, closures included:
    nothing but the results is pickled). Serial when ``workers`` is 1, for a single call,
    without fork, and within another run_forked (no processes of processes). An exception
    in any call is raised here."""
    calls = list(calls)
    if workers <= 1 or len(calls) <= 1 or not can_fork() or _CALLS:
        return [call() for call in calls]
    _CALLS.extend(calls)
    release_free_memory()  # else each forked process counts the free heap pages as its own
    try:
        context = multiprocessing.get_context("fork")
        with ProcessPoolExecutor(min(workers - 1, len(calls) - 1), mp_context=context) as pool:
            # submitted first: the workers fork now, before this process starts on its own
            others = [pool.submit(_call, i) for i in range(1, len(calls))]
            first = calls[0]()
            return [first] + [future.result() for future in others]
    finally:
        _CALLS.clear()


def release_free_memory() -> None:
    """Give the pages of memory freed by Python back to the system (glibc's
    ``malloc_trim``; nothing elsewhere): the heap keeps them after the costly steps
    (measured after prepare, 1000 frames: 64 MB), and a forked process's resident size
    counts every page of its parent's heap."""
    try:
        ctypes.CDLL(None).malloc_trim(0)
    except (OSError, AttributeError):  # not glibc
        pass


def split_frames(work: Callable[[int, int], T], n_frames: int, chunk_frames: int,
                 workers: int) -> list[T]:
    """``work(first, stop)`` of each range of :func:`frame_ranges` (one range ``(0, 0)``
    without frames), run at once by :func:`run_forked`; the results in frame order."""
    spans = frame_ranges(n_frames, chunk_frames, workers) or [(0, 0)]
    return run_forked([functools.partial(work, *span) for span in spans], workers)


def shared_empty(shape: tuple[int, ...], dtype) -> np.ndarray:
    """An array (not initialised) that forked processes write into for this one: an
    anonymous shared memory map (a plain array without fork, where nothing is forked)."""
    nbytes = int(np.prod(shape, dtype=np.int64)) * np.dtype(dtype).itemsize
    if not can_fork() or nbytes == 0:
        return np.empty(shape, dtype)
    return np.frombuffer(mmap.mmap(-1, nbytes), dtype=dtype).reshape(shape)
