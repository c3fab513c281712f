"""Home of the light that turns with the field in the target-centred cut-outs the visit's
PSF is the median of (:meth:`archi.psf.EmpiricalPsf.from_visit`): told apart from the PSF,
which is fixed on the detector (:func:`without_turning_light`)."""

from __future__ import annotations

import numpy as np
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
    out = stamp
    for _ in range(iterations):
        # points no frame covers (corners): 0
        sky = np.nan_to_num(nanmedian_first(_turned(cuts - out[None], turn, radius)))
        sky = (sky - (np.bincount(ring, sky.ravel()) / counts)[ring].reshape(sky.shape)) * fade
        out = nanmedian_first(cuts - _turned(np.broadcast_to(sky, cuts.shape), -turn, radius))
        out = np.where(np.isfinite(out), out, stamp)  # pixels no frame covers: the median's
    return out


def _turned(images: NDArray, turn_deg: NDArray, radius: int) -> NDArray[np.float64]:
    """Each image (n, h, w) about its centre seen turned by ``turn_deg`` (n,) [deg]: pixel
    (u, v) of the result is the image at the offsets :func:`archi.geometry.rotate_offsets`
    gives (bilinear; NaN beyond it)."""
    from scipy.ndimage import map_coordinates  # lazy: keeps factor jobs' imports light

    u = np.arange(-radius, radius + 1, dtype=float)
    uu, vv = np.meshgrid(u, u)
    out = np.empty(images.shape)
    for k, angle in enumerate(turn_deg):
        x, y = rotate_offsets(uu, vv, angle)
        out[k] = map_coordinates(np.asarray(images[k], dtype=float), [y + radius, x + radius],
                                 order=1, mode="constant", cval=np.nan)
    return out
