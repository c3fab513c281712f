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
from numba import njit
from numpy.typing import NDArray

from archi import parallel

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
    """Fills NaN pixels with their nearest valid pixel, so the field edge looks like itself
    to the median filter; cached, since the field's NaN mask rarely changes."""

    def __init__(self) -> None:
        self._mask: NDArray | None = None
        self._holes: NDArray | None = None  # flat indices of the NaN pixels
        self._source: NDArray | None = None  # ... and of the valid pixel filling each

    def __call__(self, frame: NDArray, finite: NDArray) -> NDArray:
        """``frame`` (H, W) with its NaN pixels filled (``frame`` itself when none are)."""
        if finite.all():
            return frame
        if self._mask is None or not np.array_equal(self._mask, finite):
            self._update(finite)
        out = np.array(frame, order="C")
        flat = out.reshape(-1)
        flat[self._holes] = flat[self._source]
        return out

    def _update(self, finite: NDArray) -> None:
        from scipy import ndimage  # lazy: keeps factor jobs' imports light
        self._mask = finite.copy()
        index = ndimage.distance_transform_edt(~finite, return_distances=False,
                                               return_indices=True)
        self._holes = np.flatnonzero(~finite)
        # "wrap": an all-NaN frame has indices -1 (its fill is NaN, and no hit is found)
        self._source = np.ravel_multi_index(tuple(i.ravel()[self._holes] for i in index),
                                            finite.shape, mode="wrap")


def _median5(image: NDArray) -> NDArray:
    """5x5 median (OpenCV: 50x faster than scipy.ndimage for this size; float32 is exact
    enough for a threshold)."""
    import cv2  # lazy: only prepare needs it

    return cv2.medianBlur(np.ascontiguousarray(image, dtype=np.float32), WINDOW).astype(float)


def dilate3(mask: NDArray) -> NDArray[np.bool_]:
    """Binary dilation of a mask (H, W) by a 3x3 square, nothing beyond the edges
    (separable: rows, then columns)."""
    rows = mask.copy()
    rows[1:] |= mask[:-1]
    rows[:-1] |= mask[1:]
    out = rows.copy()
    out[:, 1:] |= rows[:, :-1]
    out[:, :-1] |= rows[:, 1:]
    return out


def find_in_frame(frame: NDArray, variance_floor: float, nsigma: float = NSIGMA,
                  relative: float = RELATIVE, nan_fill: _NanFill | None = None
                  ) -> tuple[NDArray, NDArray, NDArray]:
    """(y, x, replacement) of the hit pixels of one frame [e], in row-major order; NaN
    pixels are ignored."""
    finite = np.isfinite(frame)
    filled = (nan_fill or _NanFill())(frame, finite)
    local = _median5(filled)
    pixels, strong = _frame_thresholds(filled.ravel(), local.ravel(), finite.ravel(),
                                       float(variance_floor), float(nsigma), float(relative))
    if not strong.any():
        return np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0)
    seed = np.zeros(frame.shape, dtype=bool)
    seed.ravel()[pixels[strong]] = True
    pixels = pixels[strong | dilate3(seed).ravel()[pixels]]
    y, x = np.divmod(pixels, frame.shape[1])
    return y, x, local.ravel()[pixels]


RESIDUAL_RELATIVE = 0.05
"""On the field model's residual, a pixel is hit only if it also stands above the model's
own level there by this fraction: the model's errors at bright cores are ~1-3 % of them."""


def find_in_residual(frame: NDArray, model: NDArray, variance_floor: float,
                     nsigma: float = NSIGMA, relative: float = RESIDUAL_RELATIVE,
                     nan_fill: _NanFill | None = None) -> tuple[NDArray, NDArray, NDArray]:
    """(y, x, replacement) of the hit pixels of one frame [e] against the field model's
    image of it [e]: with the stars' light removed, a track of a few hundred electrons per
    pixel stands out over a bright star too, where :func:`find_in_frame`'s ``relative``
    condition (needed there to keep the stars' peaks) misses it (on the crowded test scene
    an 8000 e track over a G = 11 star's core: a 6-sigma outlier in its light curve). The
    replacement is the model plus the residual's local median."""
    residual = np.asarray(frame, dtype=float) - model
    finite = np.isfinite(residual)
    filled = (nan_fill or _NanFill())(residual, finite)
    local = _median5(filled)
    weak, strong, n_strong = _residual_thresholds(filled, local, np.asarray(model, float),
                                                  finite, float(variance_floor),
                                                  float(nsigma), float(relative))
    if not n_strong:
        return np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0)
    hit = strong | (weak & dilate3(strong))
    y, x = np.nonzero(hit)
    return y, x, local[y, x] + model[y, x]


def find_cosmics_in_residuals(cube: NDArray, model_images: NDArray, variance_floor: NDArray,
                              known: CosmicHits | None = None, workers: int = 1
                              ) -> CosmicHits:
    """Hits of every frame against the field model's images (n_frames, H, W) [e], merged
    with ``known`` ones if given; ``workers``: processes sharing the frames (each searched
    on its own: the same hits).

    With a field model this search replaces :func:`find_cosmics` for the photometry: it
    finds tracks over bright stars that one misses, and it does not take a sharp PSF's
    pixel-scale structure for hits (with pycheops' real CHEOPS PSF in the simulator the
    frame-only search patched 533 pixels per frame, a G = 13 star 15 px from the target
    lost 83 % of its light)."""
    def frames(first: int, stop: int) -> CosmicHits:
        found = [CosmicHits.empty()]
        nan_fill = _NanFill()
        for k in range(first, stop):
            y, x, v = find_in_residual(cube[k], np.asarray(model_images[k], dtype=float),
                                       float(variance_floor[k]), nan_fill=nan_fill)
            found.append(CosmicHits(np.full(len(y), k, np.int64), y.astype(np.int64),
                                    x.astype(np.int64), v))
        return CosmicHits(*(np.concatenate([getattr(f, a) for f in found])
                            for a in ("frame", "y", "x", "value")))

    parts = parallel.split_frames(frames, cube.shape[0], 1, workers)
    return merge_hits([known or CosmicHits.empty()] + parts)


def merge_hits(parts: list[CosmicHits]) -> CosmicHits:
    """One :class:`CosmicHits` of ``parts``, each pixel once (the first part's value kept),
    ordered by frame, row and column."""
    frame, y, x, value = (np.concatenate([getattr(p, a) for p in parts])
                          for a in ("frame", "y", "x", "value"))
    key = np.stack([frame, y, x])
    _, first = np.unique(key, axis=1, return_index=True)  # sorted by (frame, y, x)
    return CosmicHits(frame[first], y[first], x[first], value[first])


def find_cosmics(cube: NDArray, variance_floor: NDArray, chunk_frames: int = 64,
                 nsigma: float = NSIGMA, relative: float = RELATIVE) -> CosmicHits:
    """Cosmic-ray hits of every frame; ``variance_floor`` per frame (sky, dark, read) [e^2]."""
    frames, ys, xs, values = [], [], [], []
    n = cube.shape[0]
    nan_fill = _NanFill()
    for start in range(0, n, chunk_frames):
        block = cube[start:start + chunk_frames]
        for i in range(len(block)):
            # converted frame by frame: the frame stays in the CPU cache for the search
            frame = np.asarray(block[i], dtype=float)
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


@njit(cache=True)
def _residual_thresholds(filled, local, model, finite, variance_floor, nsigma, relative
                         ):  # pragma: no cover
    """:func:`find_in_residual`'s pixels above half the threshold (``weak``) and above it
    (``strong``), and how many are strong: rise = filled - local against the noise of the
    model's level clip(nan_to_num(model), 0) plus ``variance_floor``, on ``finite`` pixels
    (one pass; the numbers of the numpy expressions it replaces, 4x faster)."""
    ny, nx = filled.shape
    weak = np.zeros((ny, nx), np.bool_)
    strong = np.zeros((ny, nx), np.bool_)
    half = 0.5 * nsigma
    n_strong = 0
    for i in range(ny):
        for j in range(nx):
            if not finite[i, j]:
                continue
            rise = filled[i, j] - local[i, j]
            level = model[i, j]
            if np.isnan(level):
                level = 0.0
            elif np.isinf(level):
                level = 1.7976931348623157e308 if level > 0 else 0.0
            level = max(level, 0.0)
            noise = np.sqrt(level + variance_floor)
            if rise > half * noise and rise > relative * level:
                weak[i, j] = True
                if rise > nsigma * noise:
                    strong[i, j] = True
                    n_strong += 1
    return weak, strong, n_strong


@njit(cache=True)
def _frame_thresholds(filled, local, finite, variance_floor, nsigma, relative
                      ):  # pragma: no cover
    """:func:`find_in_frame`'s candidates: the flat indices of the ``finite`` pixels whose
    excess over the ``local`` median (flat arrays) exceeds ``relative`` times that level
    (only those can be hit: a few %) and half the threshold in noise units (a hit if a hit
    above the full threshold is next to it: the faint ends of a track), and which exceed
    the full threshold. One pass, the numbers of the numpy expressions it replaced."""
    n = filled.shape[0]
    pixels = np.empty(n, np.int64)
    strong = np.empty(n, np.bool_)
    half = 0.5 * nsigma
    m = 0
    for i in range(n):
        if not finite[i]:
            continue
        rise = filled[i] - local[i]
        if not rise > relative * np.abs(local[i]):
            continue
        level = local[i] if np.isnan(local[i]) else max(local[i], 0.0)
        noise = np.sqrt(level + variance_floor)
        if rise > half * noise:
            pixels[m] = i
            strong[m] = rise > nsigma * noise
            m += 1
    return pixels[:m], strong[:m]
