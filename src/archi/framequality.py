"""Home of the frame-quality step: frames that cannot be measured, or whose total flux is
an outlier, found once per visit by ``prepare`` (:func:`assess_frames`) and left out of
everything that fits or scores (:class:`MaskedCube`, :attr:`FrameQuality.excluded`).

A frame's problem is a set of bits (:data:`PROBLEM_NAMES`):

* ``all_nan``: no finite pixel (a lost or unreadable image);
* ``all_zero``: every finite pixel is exactly 0 (an image never filled);
* ``mostly_nonfinite``: fewer than :data:`MIN_FINITE_FRACTION` of the finite pixels the
  visit's frames usually have (a partly lost image);
* ``flux_outlier``: the frame's total flux [e] departs from the running median of its
  neighbours in time (:data:`OUTLIER_WINDOW` frames) by more than :data:`OUTLIER_SIGMA`
  robust standard deviations (1.4826 x the median absolute departure over the visit).
  A running median, not the visit's median, so that a deep eclipse of the target (slow
  against the window) is not taken for a bad frame.

The first three make a frame *unmeasurable*: its light-curve values are NaN. An outlier
frame is measured as usual but flagged and, like the others, left out of the factor
search's metric, the CDPP, the PSF, the tracks and the field-model fits.
"""

from __future__ import annotations

import mmap
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from archi import parallel

ALL_NAN = 1
ALL_ZERO = 2
MOSTLY_NONFINITE = 4
FLUX_OUTLIER = 8
UNMEASURABLE = ALL_NAN | ALL_ZERO | MOSTLY_NONFINITE
PROBLEM_NAMES = {ALL_NAN: "all_nan", ALL_ZERO: "all_zero",
                 MOSTLY_NONFINITE: "mostly_nonfinite", FLUX_OUTLIER: "flux_outlier"}

MIN_FINITE_FRACTION = 0.5
"""A frame with fewer finite pixels than this fraction of the visit's median count is
unmeasurable (a normal CHEOPS frame: the 78.5 % of the subarray inside the field of view)."""
OUTLIER_WINDOW = 11
"""[frames] Length of the running median a frame's total flux is compared with."""
OUTLIER_SIGMA = 10.0
"""[robust standard deviations] Departure of a frame's total flux from the running median
that makes it an outlier. Measured on a simulated 120-frame G = 9 visit: the largest
departure of a good frame is 1.7 (cosmic rays and photon noise)."""
MAD_TO_SIGMA = 1.4826


@dataclass(frozen=True)
class FrameQuality:
    """The problem bits of every frame (0 = good), shape (n_frames,)."""

    problem: NDArray[np.uint8]

    @classmethod
    def all_good(cls, n_frames: int) -> FrameQuality:
        return cls(np.zeros(n_frames, np.uint8))

    @property
    def n_frames(self) -> int:
        return len(self.problem)

    @property
    def unmeasurable(self) -> NDArray[np.bool_]:
        """Frames whose light-curve values are NaN (no usable image)."""
        return (self.problem & UNMEASURABLE) != 0

    def first_good(self) -> int:
        """The first frame not excluded (0 if none is good): where a star's shape mask is
        drawn."""
        good = np.flatnonzero(~self.excluded)
        return int(good[0]) if len(good) else 0

    @property
    def excluded(self) -> NDArray[np.bool_]:
        """Frames left out of fits, tracks, the search's metric and the CDPP."""
        return self.problem != 0

    def counts(self) -> dict[str, int]:
        """Number of frames with each problem (a frame may have several)."""
        return {name: int(np.count_nonzero(self.problem & bit))
                for bit, name in PROBLEM_NAMES.items()}

    def describe(self) -> str:
        """One line: how many frames are excluded and why ("" when none is)."""
        n = int(np.count_nonzero(self.excluded))
        if not n:
            return ""
        why = ", ".join(f"{c} {name}" for name, c in self.counts().items() if c)
        return f"{n} of {self.n_frames} frames left out ({why})"


def assess_frames(cube, chunk_frames: int = 64, workers: int = 1) -> FrameQuality:
    """The problems of every frame of ``cube`` (n_frames, H, W) [e] (module docstring),
    read ``chunk_frames`` at a time (``workers``: processes sharing the chunks)."""
    n = cube.shape[0]
    if file_mapping(cube) is not None:  # read without holding the whole cube
        cube = MaskedCube(cube, np.zeros(n, bool))

    def counts(first: int, stop: int) -> NDArray:
        out = np.zeros((3, stop - first))  # finite, nonzero pixels, total flux
        for start in range(first, stop, chunk_frames):
            block = np.asarray(cube[start:min(start + chunk_frames, stop)], dtype=float)
            ok = np.isfinite(block)
            rows = slice(start - first, start - first + len(block))
            out[0, rows] = ok.sum(axis=(1, 2))
            out[1, rows] = (ok & (block != 0)).sum(axis=(1, 2))
            out[2, rows] = np.where(ok, block, 0.0).sum(axis=(1, 2))
        return out

    finite, nonzero, total = np.concatenate(
        parallel.split_frames(counts, n, chunk_frames, workers), axis=1)
    finite, nonzero = finite.astype(np.int64), nonzero.astype(np.int64)
    problem = np.zeros(n, np.uint8)
    problem[finite == 0] |= ALL_NAN
    problem[(finite > 0) & (nonzero == 0)] |= ALL_ZERO
    typical = np.median(finite[finite > 0]) if np.any(finite > 0) else 0
    problem[(finite > 0) & (finite < MIN_FINITE_FRACTION * typical)] |= MOSTLY_NONFINITE
    problem[flux_outliers(total, problem == 0)] |= FLUX_OUTLIER
    return FrameQuality(problem)


def flux_outliers(total: NDArray, usable: NDArray[np.bool_]) -> NDArray[np.bool_]:
    """Usable frames whose ``total`` flux departs from the running median of the usable
    frames around it by more than :data:`OUTLIER_SIGMA` robust standard deviations."""
    out = np.zeros(len(total), bool)
    index = np.flatnonzero(usable)
    if len(index) < OUTLIER_WINDOW:  # too few frames to tell a trend from an outlier
        return out
    values = total[index]
    from scipy.ndimage import median_filter  # here: the other jobs that read the cube skip scipy

    departure = values - median_filter(values, size=OUTLIER_WINDOW, mode="nearest")
    sigma = MAD_TO_SIGMA * np.median(np.abs(departure - np.median(departure)))
    if sigma > 0:
        out[index] = np.abs(departure) > OUTLIER_SIGMA * sigma
    return out


class MaskedCube:
    """``cube`` read like the cube (an index, a slice or an index array of frames), the
    ``excluded`` frames all NaN: what the prepare step fits, tracks and builds its PSF on,
    so that a bad frame never moves a track or enters the PSF.

    A memory-mapped cube's pages are dropped from the process after each read (they stay
    in the page cache: reading them again is a copy, not a disk read), so that the prepare
    step never holds the whole cube (320 MB for 1000 frames) besides its own arrays. Safe
    because the cube is never written (the file is mapped copy-on-write: a page written in
    place would be lost)."""

    def __init__(self, cube, excluded: NDArray[np.bool_]):
        self.cube = cube
        self.excluded = np.asarray(excluded, bool)
        self.shape = cube.shape
        self.dtype = np.dtype(float)
        self.ndim = 3
        self._mapping = file_mapping(cube)

    def __len__(self) -> int:
        return self.shape[0]

    def __getitem__(self, key):
        frames = key[0] if isinstance(key, tuple) else key
        data = np.array(self.cube[key], dtype=float)
        if self._mapping is not None:
            self._mapping.madvise(mmap.MADV_DONTNEED)
        bad = self.excluded[frames]
        if np.ndim(bad) == 0:
            if bad:
                data[...] = np.nan
        else:
            data[bad] = np.nan
        return data

    def __array__(self, dtype=None, copy=None):
        data = self[:]
        return data if dtype is None else data.astype(dtype)


def masked_cube(cube, quality: FrameQuality):
    """``cube`` itself when every frame is good and it is in memory, else a
    :class:`MaskedCube` (which also keeps a memory-mapped cube out of the process's
    memory)."""
    if quality.excluded.any() or file_mapping(cube) is not None:
        return MaskedCube(cube, quality.excluded)
    return cube


class PagedArray:
    """A memory-mapped array read like itself (``array[key]``: the same views and copies),
    the map's pages dropped from the process before each read: a job that reads it a chunk
    at a time holds about one chunk, not the whole file (a 1000-frame cube is 320 MB).

    Unlike :class:`MaskedCube` nothing is copied or converted here, so the values and
    types are those of the array itself. Safe while views of earlier reads are in use:
    the map is private and read-only, so a dropped page is read again from the file (the
    page cache) when touched."""

    def __init__(self, array, mapping: mmap.mmap):
        self.array, self._mapping = array.view(), mapping
        self.array.flags.writeable = False  # a page written in place would be dropped
        self.shape, self.dtype, self.ndim = array.shape, array.dtype, array.ndim

    def __len__(self) -> int:
        return self.shape[0]

    def __getitem__(self, key):
        self._mapping.madvise(mmap.MADV_DONTNEED)
        return self.array[key]

    def __array__(self, dtype=None, copy=None):
        return np.asarray(self.array, dtype)


def paged(array):
    """``array`` as a :class:`PagedArray` when it is memory-mapped, else itself."""
    mapping = file_mapping(array)
    return array if mapping is None else PagedArray(array, mapping)


def file_mapping(cube) -> mmap.mmap | None:
    """The memory map of a file that ``cube`` (an array) views, or None (in memory)."""
    base = cube
    while isinstance(base, np.ndarray):
        base = base.base
    return base if isinstance(base, mmap.mmap) and hasattr(base, "madvise") else None


class FrameSubset:
    """The frames ``index`` of ``cube``, read like a cube of them (e.g. the measurable
    frames only, for checks that sample frames spread over the visit)."""

    def __init__(self, cube, index: NDArray[np.int64]):
        self.cube, self.index = cube, np.asarray(index, np.int64)
        self.shape = (len(self.index),) + tuple(cube.shape[1:])

    def __len__(self) -> int:
        return self.shape[0]

    def __getitem__(self, frames):
        return np.asarray(self.cube[self.index[frames]], dtype=float)


def good_frames(cube) -> NDArray[np.int64]:
    """The frames of ``cube`` that are not excluded (all unless it is a :class:`MaskedCube`
    with bad frames; all of them if none is good)."""
    if isinstance(cube, MaskedCube) and cube.excluded.any() and not cube.excluded.all():
        return np.flatnonzero(~cube.excluded)
    return np.arange(len(cube))


def first_good_frame(cube) -> int:
    """The first frame of ``cube`` that is not excluded (0 unless it is a
    :class:`MaskedCube` whose first frames are bad): the frame that tells which pixels the
    field of view holds, and the one stars are first found in."""
    good = good_frames(cube)
    return int(good[0]) if len(good) else 0
