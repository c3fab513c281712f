"""Aperture photometry of every star in every frame.

The engine reads the cube in chunks of frames (each chunk once), and for each star gathers
its aperture's cut-out in all frames of the chunk at once (vectorised over frames), so the
cost is linear in frames and stars and memory stays bounded. Apertures are any objects with
``weights(x, y) -> (weights (n, h, w), ix0 (n,), iy0 (n,))`` (see :mod:`archi.masks`).

Uncertainties follow archi's model, per frame k and star:

    sigma^2 = F + A * (B_k + D_k + NEXP * RON_k^2)

with F the flux [e], A the aperture area [pixel], B_k and D_k the DRP background and dark
per pixel (the official light curve's BACKGROUND and DARK divided by its aperture area),
and RON_k the read noise per readout in electrons (COR metadata RON x 1.96 e/ADU).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np
from numpy.typing import NDArray

from archi.cosmics import CosmicHits
from archi.masks import CircleAperture
from archi.stars import Tracks
from archi.visit import Visit


class Aperture(Protocol):
    def weights(self, x: NDArray, y: NDArray) -> tuple[NDArray, NDArray, NDArray]: ...


@dataclass(frozen=True)
class ApertureSums:
    """Per star and frame (n_stars, n_frames)."""

    flux: NDArray[np.float64]  # weighted sum of finite pixels [e]
    area: NDArray[np.float64]  # weights on finite pixels [pixel]
    out_of_bounds: NDArray[np.bool_]  # the aperture touches NaN pixels or the image edge


def cut(frames: NDArray, ix0: NDArray, iy0: NDArray, shape: tuple[int, int]
        ) -> tuple[NDArray, NDArray]:
    """Cutouts (n, h, w) of ``frames`` (n, ny, nx) at (ix0, iy0): values (0 where unusable)
    and whether each pixel is usable (finite and inside the image)."""
    n, ny, nx = frames.shape
    h, w = shape
    rows = iy0[:, None] + np.arange(h)[None, :]
    cols = ix0[:, None] + np.arange(w)[None, :]
    row_ok = (rows >= 0) & (rows < ny)
    col_ok = (cols >= 0) & (cols < nx)
    values = frames[np.arange(n)[:, None, None], np.clip(rows, 0, ny - 1)[:, :, None],
                    np.clip(cols, 0, nx - 1)[:, None, :]]
    valid = np.isfinite(values) & row_ok[:, :, None] & col_ok[:, None, :]
    return np.where(valid, values, 0.0), valid


def weigh(values: NDArray, valid: NDArray, weights: NDArray
          ) -> tuple[NDArray, NDArray, NDArray]:
    """(sums, area on usable pixels, touches an unusable pixel) of cutouts under weights."""
    sums = (weights * values).sum(axis=(1, 2))
    area = np.where(valid, weights, 0.0).sum(axis=(1, 2))
    touches = ((weights > 0) & ~valid).any(axis=(1, 2))
    return sums, area, touches


def gather(frames: NDArray, weights: NDArray, ix0: NDArray, iy0: NDArray
           ) -> tuple[NDArray, NDArray, NDArray]:
    """Weighted sums of ``frames`` (n, ny, nx) under ``weights`` (n, h, w) placed at
    (ix0, iy0) per frame: (sums, area on finite pixels, touches NaN or edge)."""
    return weigh(*cut(frames, ix0, iy0, weights.shape[1:]), weights)


def aperture_photometry(cube: NDArray, tracks: Tracks, apertures: Sequence[Aperture | None],
                        chunk_frames: int = 64, cosmics: CosmicHits | None = None
                        ) -> ApertureSums:
    """Sum every star's aperture in every frame. ``apertures[j]`` None skips star j;
    ``cosmics``: hit pixels replaced in each chunk as it is read."""
    n_stars, n_frames = tracks.x.shape
    flux = np.full((n_stars, n_frames), np.nan)
    area = np.zeros((n_stars, n_frames))
    oob = np.zeros((n_stars, n_frames), dtype=bool)
    for start in range(0, n_frames, chunk_frames):
        sl = slice(start, min(start + chunk_frames, n_frames))
        frames = np.array(cube[sl], dtype=np.float64)  # a copy: patched below
        if cosmics is not None:
            cosmics.patch(frames, start)
        for j, aperture in enumerate(apertures):
            if aperture is None:
                continue
            w, ix0, iy0 = aperture.weights(tracks.x[j, sl], tracks.y[j, sl])
            flux[j, sl], area[j, sl], oob[j, sl] = gather(frames, w, ix0, iy0)
    return ApertureSums(flux, area, oob)


def nested_circle_photometry(cube: NDArray, x: NDArray, y: NDArray,
                             circles: Sequence[CircleAperture], chunk_frames: int = 64,
                             cosmics: CosmicHits | None = None) -> ApertureSums:
    """One star (positions x, y per frame) through several circles: each chunk of frames is
    cut out once, in the largest circle's box, and every circle weighs the same cutouts.
    Rows of the result follow ``circles``."""
    n_frames = len(x)
    big = max(circles, key=lambda c: c.real_radius)
    flux = np.full((len(circles), n_frames), np.nan)
    area = np.zeros((len(circles), n_frames))
    oob = np.zeros((len(circles), n_frames), dtype=bool)
    for start in range(0, n_frames, chunk_frames):
        sl = slice(start, min(start + chunk_frames, n_frames))
        frames = np.array(cube[sl], dtype=np.float64)
        if cosmics is not None:
            cosmics.patch(frames, start)
        _, ix0, iy0 = big.weights(x[sl], y[sl])
        values, valid = cut(frames, ix0, iy0, big.cutout_shape)
        for i, circle in enumerate(circles):
            w, _, _ = circle.weights_in(x[sl], y[sl], ix0, iy0, big.size)
            flux[i, sl], area[i, sl], oob[i, sl] = weigh(values, valid, w)
    return ApertureSums(flux, area, oob)


def noise_per_pixel(visit: Visit, aperture_name: str | None = None) -> NDArray[np.float64]:
    """Variance per pixel and frame from sky, dark and read noise [e^2]."""
    return (visit.background_per_pixel(aperture_name) + visit.dark_per_pixel(aperture_name)
            + visit.nexp * visit.ron_electrons ** 2)


def flux_errors(flux: NDArray, area: NDArray, visit: Visit,
                aperture_name: str | None = None) -> NDArray[np.float64]:
    """archi's per-frame uncertainty [e] (module docstring), shape of ``flux``."""
    return np.sqrt(np.clip(flux, 0.0, None) + area * noise_per_pixel(visit, aperture_name)[None, :])


def circular_aperture_sums(frames: NDArray, x: NDArray, y: NDArray, radius: float
                           ) -> tuple[NDArray[np.float64], NDArray[np.float64], NDArray[np.bool_]]:
    """Sum of each frame within a circle of ``radius`` [pixel] centred at (x[k], y[k]).

    Exact pixel-overlap weights (photutils). Returns ``(sums, area on finite pixels,
    touches NaN)``. Used by the simulator's DRP-like photometry and by tests.
    """
    from photutils.aperture import CircularAperture  # lazy: only the simulator needs it

    n = len(frames)
    aperture = CircularAperture(np.column_stack([x, y]), r=radius)
    sums = np.zeros(n)
    area = np.zeros(n)
    touches = np.zeros(n, dtype=bool)
    for k, mask in enumerate(aperture.to_mask(method="exact")):
        cut = mask.cutout(frames[k], fill_value=np.nan)
        if cut is None:  # entirely off the image
            touches[k] = True
            continue
        weights = mask.data
        finite = np.isfinite(cut)
        sums[k] = np.sum(weights[finite] * cut[finite])
        area[k] = weights[finite].sum()
        touches[k] = bool(np.any(weights[~finite] > 0))
    return sums, area, touches
