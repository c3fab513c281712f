"""Home of the light that turns with the field in the target-centred cut-outs the visit's
PSF is the median of (:meth:`archi.psf.EmpiricalPsf.from_visit`): told apart from the PSF,
which is fixed on the detector (:func:`without_turning_light`)."""

from __future__ import annotations

import numpy as np
from numba import njit
from numpy.typing import NDArray

from archi.geometry import rotate_offsets
from archi.medians import nanmedian_first

TURNING_ITERATIONS = 4
"""Alternations of :func:`without_turning_light` (the dipole it leaves shrinks by about the
square of the frames' mean roll vector per alternation)."""

TURNING_INNER = 35.0
"""Within this distance of the target [pixel] (faded in over the next 10 px) the PSF is
left as the median made it: the target's own light dominates there, and its neighbours'
cores are left out of the median."""


def without_turning_light(cuts: NDArray, turn_deg: NDArray, stamp: NDArray,
                          iterations: int = TURNING_ITERATIONS) -> NDArray[np.float64]:
    """The visit's PSF ``stamp`` (the median of the target-centred ``cuts`` (n, h, w) of
    frames whose field is turned by ``turn_deg`` (n,) [deg], :func:`rotate_offsets`'s
    angle) without the light that turns with the field. Alternately: the turning light is
    the median of the cuts minus the PSF, turned back to the sky (its ring means about the
    target taken out); the PSF is the median of the cuts minus the turning light turned to
    each frame.

    Why: the light the field model misses about the neighbours (far wings, stars off the
    field) turns with the field about the target. Over a whole turn it would only leave a
    ring in the median; over the arc a visit covers, its first harmonics stay, a dipole in
    the PSF's wings fixed on the detector that each neighbour's aperture crosses once per
    turn (measured on the demo, 208 deg of roll: 5 % of the wing 45-65 px out; 1.3-1.45x
    the per-frame error of three stars' FLUX as a first roll harmonic). A ring looks the
    same at every roll: the PSF keeps it."""
    radius = stamp.shape[0] // 2
    yy, xx = np.indices(stamp.shape) - radius
    r = np.hypot(xx, yy)
    ring = np.floor(r).astype(int).ravel()
    counts = np.maximum(np.bincount(ring), 1)
    fade = np.clip((r - TURNING_INNER) / 10.0, 0.0, 1.0)
    turn = np.asarray(turn_deg, dtype=float)
    to_sky, to_frames = (_turn_coordinates(a, radius) for a in (turn, -turn))
    out = stamp
    for _ in range(iterations):
        # points no frame covers (corners): 0
        sky = np.nan_to_num(nanmedian_first(_turned(cuts - out[None], to_sky)))
        sky = (sky - (np.bincount(ring, sky.ravel()) / counts)[ring].reshape(sky.shape)) * fade
        out = nanmedian_first(cuts - _turned(np.broadcast_to(sky, cuts.shape), to_frames))
        out = np.where(np.isfinite(out), out, stamp)  # pixels no frame covers: the median's
    return out


def _turn_coordinates(turn_deg: NDArray, radius: int) -> NDArray[np.float64]:
    """Where each pixel (u, v) of a (2 radius + 1)^2 image seen turned by ``turn_deg`` (n,)
    [deg] about its centre reads the image: (n, 2, h, w) row and column coordinates, the
    offsets :func:`archi.geometry.rotate_offsets` gives."""
    u = np.arange(-radius, radius + 1, dtype=float)
    uu, vv = np.meshgrid(u, u)
    out = np.empty((len(turn_deg), 2) + uu.shape)
    for k, angle in enumerate(turn_deg):
        x, y = rotate_offsets(uu, vv, angle)
        out[k, 0], out[k, 1] = y + radius, x + radius
    return out


def _turned(images: NDArray, coordinates: NDArray) -> NDArray[np.float64]:
    """Each image (n, h, w) read at its :func:`_turn_coordinates` (n, 2, h, w): bilinear,
    NaN beyond the image (``scipy.ndimage.map_coordinates(image, coordinates, order=1,
    mode="constant", cval=nan)`` bit for bit, 10x faster)."""
    return _bilinear(np.asarray(images, dtype=np.float64), coordinates)


@njit(cache=True)
def _bilinear(images, coordinates):  # pragma: no cover
    """:func:`_turned`'s interpolation: ndimage's weights (1 - t, then 1 minus that), its
    neighbour mirrored at the last row or column (weight 0), its order of operations."""
    n, h, w = coordinates.shape[0], coordinates.shape[2], coordinates.shape[3]
    ny, nx = images.shape[1], images.shape[2]
    out = np.empty((n, h, w))
    for k in range(n):
        for i in range(h):
            for j in range(w):
                cy, cx = coordinates[k, 0, i, j], coordinates[k, 1, i, j]
                if not (0.0 <= cy <= ny - 1 and 0.0 <= cx <= nx - 1):
                    out[k, i, j] = np.nan
                    continue
                y0, x0 = np.floor(cy), np.floor(cx)
                wy0, wx0 = 1.0 - (cy - y0), 1.0 - (cx - x0)
                wys, wxs = (wy0, 1.0 - wy0), (wx0, 1.0 - wx0)
                iy0, ix0 = int(y0), int(x0)
                iys = (iy0, iy0 + 1 if iy0 + 1 < ny else max(ny - 2, 0))
                ixs = (ix0, ix0 + 1 if ix0 + 1 < nx else max(nx - 2, 0))
                t = 0.0
                for a in range(2):  # the four neighbours in row-major order
                    for b in range(2):
                        c = images[k, iys[a], ixs[b]]
                        c *= wys[a]
                        c *= wxs[b]
                        t += c
                out[k, i, j] = t
    return out
