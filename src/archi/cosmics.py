"""Cosmic-ray hits: found once per visit, patched in every photometry pass.

The DRP does not correct cosmic rays in COR images (``BDPIX_C3 = N/A``) and archi does not
either; a hit of a few thousand electrons in an aperture is a one-sigma-or-more outlier for
most stars. A hit is sharp (a track one pixel wide) while the CHEOPS PSF is broad, so a pixel
is taken as hit when it stands above the median of its 5x5 neighbourhood by more than
``nsigma`` times the local noise *and* by more than ``relative`` times the local level
(the second condition keeps the peaks of bright stars, whose curvature also stands out in
noise units). The hit pixels are replaced by that median.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

NSIGMA = 6.0
RELATIVE = 0.3
WINDOW = 5


@dataclass(frozen=True)
class CosmicHits:
    """Pixels hit by cosmic rays, and the value that replaces each [e]."""

    frame: NDArray[np.int64]
    y: NDArray[np.int64]
    x: NDArray[np.int64]
    value: NDArray[np.float64]

    def __len__(self) -> int:
        return len(self.frame)

    @classmethod
    def empty(cls) -> CosmicHits:
        return cls(np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0, np.int64),
                   np.zeros(0))

    def patch(self, frames: NDArray, start: int) -> None:
        """Replace the hit pixels of ``frames`` (frames start..start+len) in place."""
        sel = (self.frame >= start) & (self.frame < start + len(frames))
        frames[self.frame[sel] - start, self.y[sel], self.x[sel]] = self.value[sel]


class _NanFill:
    """Index map that fills NaN pixels with their nearest valid pixel, so the field edge looks
    like itself to the median filter; cached, since the field's NaN mask rarely changes."""

    def __init__(self) -> None:
        self._mask: NDArray | None = None
        self._index: tuple[NDArray, NDArray] | None = None

    def __call__(self, frame: NDArray, finite: NDArray) -> NDArray:
        from scipy import ndimage  # lazy: keeps factor jobs' imports light
        if finite.all():
            return frame
        if self._mask is None or not np.array_equal(self._mask, finite):
            self._mask = finite.copy()
            self._index = tuple(ndimage.distance_transform_edt(
                ~finite, return_distances=False, return_indices=True))
        return frame[self._index]


def _median5(image: NDArray) -> NDArray:
    """5x5 median (OpenCV: 50x faster than scipy.ndimage for this size; float32 is exact
    enough for a threshold)."""
    import cv2  # lazy: only prepare needs it

    return cv2.medianBlur(np.ascontiguousarray(image, dtype=np.float32), WINDOW).astype(float)


def find_in_frame(frame: NDArray, variance_floor: float, nsigma: float = NSIGMA,
                  relative: float = RELATIVE, nan_fill: _NanFill | None = None
                  ) -> tuple[NDArray, NDArray, NDArray]:
    """(y, x, replacement) of the hit pixels of one frame [e]; NaN pixels are ignored."""
    from scipy import ndimage  # lazy: keeps factor jobs' imports light
    finite = np.isfinite(frame)
    filled = (nan_fill or _NanFill())(frame, finite)
    local = _median5(filled)
    excess = filled - local
    noise = np.sqrt(np.clip(local, 0.0, None) + variance_floor)
    bright = excess > relative * np.abs(local)
    hit = finite & (excess > nsigma * noise) & bright
    if not hit.any():
        return np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0)
    # the faint ends of a track: neighbours of a hit above half the threshold
    near = ndimage.binary_dilation(hit, structure=np.ones((3, 3), bool))
    hit |= near & finite & (excess > 0.5 * nsigma * noise) & bright
    y, x = np.nonzero(hit)
    return y, x, local[y, x]


def find_cosmics(cube: NDArray, variance_floor: NDArray, chunk_frames: int = 64,
                 nsigma: float = NSIGMA, relative: float = RELATIVE) -> CosmicHits:
    """Cosmic-ray hits of every frame; ``variance_floor`` per frame (sky, dark, read) [e^2]."""
    frames, ys, xs, values = [], [], [], []
    n = cube.shape[0]
    nan_fill = _NanFill()
    for start in range(0, n, chunk_frames):
        block = np.asarray(cube[start:start + chunk_frames], dtype=float)
        for i, frame in enumerate(block):
            y, x, v = find_in_frame(frame, float(variance_floor[start + i]), nsigma, relative,
                                    nan_fill)
            frames.append(np.full(len(y), start + i))
            ys.append(y)
            xs.append(x)
            values.append(v)
    if not frames:
        return CosmicHits.empty()
    return CosmicHits(np.concatenate(frames).astype(np.int64),
                      np.concatenate(ys).astype(np.int64),
                      np.concatenate(xs).astype(np.int64), np.concatenate(values))
