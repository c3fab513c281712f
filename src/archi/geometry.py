"""Field geometry: the subarray, its circular field of view, and where stars fall on it in
each frame (sky to pixels, the roll about the target, the positions predicted from it).

Conventions are those of the package docstring (``archi.__doc__``): ``(x, y)`` = (column, row),
0-based, pixel centres at integers.

Sky to pixels follows PIPE's mapping (Brandeker et al.), which works on real CHEOPS images:
with ``phi`` the roll angle,

    dx = (RA_target - RA) cos(DEC_target) * 3600 / scale     # east is -x at roll 0
    dy = (DEC - DEC_target) * 3600 / scale                   # north is +y at roll 0
    x  = x_target + dx cos(phi) + dy sin(phi)
    y  = y_target - dx sin(phi) + dy cos(phi)

The field therefore rotates about the target as the roll angle changes. The plate scale is
known to ~1.5 % only and the sense of turning is a convention: a visit's own mapping
(:class:`SkyTransform`, measured by :mod:`archi.astrometry`) may replace this assumed one
(``Visit.sky``); every prediction below follows it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
from numpy.typing import ArrayLike, NDArray

if TYPE_CHECKING:  # annotations only: the visit model does not depend on the geometry
    from archi.visit import Visit

SUBARRAY_SIZE = 200
"""Width and height of a CHEOPS subarray image [pixel]."""

FIELD_RADIUS = 100.0
"""Radius of the circular field of view of pre-2024 subarrays [pixel]."""

FIELD_CENTRE = (100.0, 100.0)
"""Centre (x, y) of the circular field of view, as CHEOPSim and the DRP define it [pixel]."""

PLATE_SCALE = 1.01
"""Plate scale [arcsec / pixel] (PIPE's value; the instrument's is 1.01 +/- 0.01)."""

ROLL_RATE_DEG_PER_MIN = -360.0 / 98.77
"""Nominal roll rate [deg / min]: one turn per 98.77-minute orbit, roll angle decreasing."""


def finite_positions(x: ArrayLike, y: ArrayLike
                     ) -> tuple[NDArray, NDArray, NDArray[np.bool_]]:
    """1-D float copies of positions x, y [pixel] with non-finite entries replaced by 0, and
    which entries were finite (both coordinates)."""
    x = np.atleast_1d(np.asarray(x, dtype=float))
    y = np.atleast_1d(np.asarray(y, dtype=float))
    if x.ndim != 1 or x.shape != y.shape:
        raise ValueError(f"x and y must be 1-D arrays of equal length, got shapes "
                         f"{x.shape} and {y.shape}")
    good = np.isfinite(x) & np.isfinite(y)
    return np.where(good, x, 0.0), np.where(good, y, 0.0), good


def field_of_view_mask(shape: tuple[int, int] = (SUBARRAY_SIZE, SUBARRAY_SIZE),
                       radius: float = FIELD_RADIUS,
                       centre: tuple[float, float] = FIELD_CENTRE) -> NDArray[np.bool_]:
    """Boolean image, True on pixels inside the circular field of view.

    CHEOPSim and the DRP keep pixel (x, y) when ``hypot(x - 100, y - 100) <= 100``
    (31,415 of 40,000 pixels); outside it COR images are NaN.
    """
    y, x = np.indices(shape, dtype=float)
    return np.hypot(x - centre[0], y - centre[1]) <= radius


def sky_offsets(ra: ArrayLike, dec: ArrayLike, ra_target: float, dec_target: float,
                scale: float = PLATE_SCALE) -> tuple[NDArray, NDArray]:
    """Offsets (dx, dy) [pixel] of sky positions from the target at roll angle 0.

    ``ra``, ``dec``, ``ra_target``, ``dec_target`` in degrees. A tangent-plane approximation,
    exact to far below a pixel within the 100-arcsec field.
    """
    ra = np.asarray(ra, dtype=float)
    dec = np.asarray(dec, dtype=float)
    dra = (ra_target - ra + 180.0) % 360.0 - 180.0
    dx = dra * np.cos(np.radians(dec_target)) * 3600.0 / scale
    dy = (dec - dec_target) * 3600.0 / scale
    return dx, dy


def sky_from_offsets(dx: ArrayLike, dy: ArrayLike, ra_target: float, dec_target: float,
                     scale: float = PLATE_SCALE) -> tuple[NDArray, NDArray]:
    """Inverse of :func:`sky_offsets`: (RA, DEC) [deg] of offsets (dx, dy) [pixel] at roll 0."""
    dx = np.asarray(dx, dtype=float)
    dy = np.asarray(dy, dtype=float)
    ra = ra_target - dx * scale / 3600.0 / np.cos(np.radians(dec_target))
    dec = dec_target + dy * scale / 3600.0
    return ra % 360.0, dec


def rotate_offsets(dx: ArrayLike, dy: ArrayLike, roll_deg: ArrayLike) -> tuple[NDArray, NDArray]:
    """Offsets from the target at roll angle ``roll_deg`` of offsets (dx, dy) taken at roll 0.

    Broadcasts: ``dx, dy`` of shape (n_stars, 1) with ``roll_deg`` of shape (n_frames,) give
    (n_stars, n_frames) arrays.
    """
    phi = np.radians(np.asarray(roll_deg, dtype=float))
    c, s = np.cos(phi), np.sin(phi)
    dx = np.asarray(dx, dtype=float)
    dy = np.asarray(dy, dtype=float)
    return dx * c + dy * s, -dx * s + dy * c


def star_positions(dx: ArrayLike, dy: ArrayLike, roll_deg: ArrayLike,
                   target_x: ArrayLike, target_y: ArrayLike) -> tuple[NDArray, NDArray]:
    """Pixel positions (x, y) of stars, shape (n_stars, n_frames).

    ``dx, dy``: offsets at roll 0, shape (n_stars,); ``roll_deg``, ``target_x``, ``target_y``:
    per-frame roll angle [deg] and target position [pixel], shape (n_frames,).
    """
    rx, ry = rotate_offsets(np.asarray(dx, float)[:, None], np.asarray(dy, float)[:, None],
                            np.asarray(roll_deg, float)[None, :])
    return np.asarray(target_x, float)[None, :] + rx, np.asarray(target_y, float)[None, :] + ry


@dataclass(frozen=True)
class SkyTransform:
    """Catalogue to pixels: star j in frame k is at (complex pixel positions)

        z_jk = T_k + shift + exp(-i sense roll_k) * scale * exp(i rotation) * w_j

    with ``w_j = dx + i dy`` its :func:`sky_offsets` at :data:`PLATE_SCALE` (its complex
    conjugate when ``mirrored``) and T_k the target's DRP centroid. The defaults are PIPE's
    mapping (the module docstring)."""

    scale: float = 1.0  # pixel offsets per assumed one: PLATE_SCALE / the true plate scale
    rotation_deg: float = 0.0  # [deg] from +x towards +y, at roll 0
    sense: int = 1  # +1: the field turns by -roll (PIPE); -1: by +roll
    mirrored: bool = False
    shift_x: float = 0.0  # [pixel] every catalogue star's offset from T_k + turned offset
    shift_y: float = 0.0

    def roll_zero(self, dx: ArrayLike, dy: ArrayLike) -> tuple[NDArray, NDArray]:
        """Pixel offsets from the target at roll 0 of sky offsets (dx, dy) [pixel at
        :data:`PLATE_SCALE`] (before the turn by the roll and the shift)."""
        w = np.asarray(dx, float) + 1j * np.asarray(dy, float)
        if self.mirrored:
            w = np.conj(w)
        u = w * self.scale * np.exp(1j * np.radians(self.rotation_deg))
        return u.real, u.imag

    def turn(self, roll_deg: ArrayLike) -> NDArray:
        """The angle [deg] the field is turned by at roll angles ``roll_deg``, as
        :func:`rotate_offsets` takes it."""
        return self.sense * np.asarray(roll_deg, dtype=float)


ASSUMED = SkyTransform()
"""PIPE's mapping: the plate scale :data:`PLATE_SCALE`, the field turning by -roll."""


# -- where a visit's stars are predicted to be (the roll about the target's DRP centroid) --

def field_turn(visit: Visit) -> NDArray:
    """The angle [deg] the visit's field is turned by in each frame (the roll angle, or
    minus it when the visit's :class:`SkyTransform` says the field turns the other way)."""
    return (visit.sky or ASSUMED).turn(visit.roll_angle)


def roll_offsets(visit: Visit, x0: NDArray, y0: NDArray, frame: int = 0
                 ) -> tuple[NDArray, NDArray]:
    """Offsets [pixel] from the target at roll 0 of positions (x0, y0) [pixel] in ``frame``
    (the first by default)."""
    dx, dy = x0 - visit.target_x[frame], y0 - visit.target_y[frame]
    return rotate_offsets(dx, dy, -field_turn(visit)[frame])


def predicted_positions(visit: Visit, dx0: NDArray, dy0: NDArray, frames: NDArray
                        ) -> tuple[NDArray, NDArray]:
    """Positions (n_stars, len(frames)) [pixel] of stars with roll-0 offsets (dx0, dy0)
    [pixel], rotating about and moving with the target's DRP centroid in ``frames``."""
    return star_positions(dx0, dy0, field_turn(visit)[frames], visit.target_x[frames],
                          visit.target_y[frames])


def catalogue_positions(visit: Visit, frames: NDArray, transform: SkyTransform | None = None
                        ) -> tuple[NDArray, NDArray]:
    """Pixel positions (n_catalogue, len(frames)) of every row of the visit's catalogue
    (row 0 = target) in ``frames``, mapped by ``transform`` (default: the visit's own,
    ``Visit.sky``, else the assumed one). The visit must have a catalogue."""
    transform = transform or visit.sky or ASSUMED
    cat = visit.catalogue
    ux, uy = transform.roll_zero(*sky_offsets(cat.ra, cat.dec, cat.ra[0], cat.dec[0]))
    turn = transform.turn(visit.roll_angle[frames])
    x, y = star_positions(ux, uy, turn, visit.target_x[frames], visit.target_y[frames])
    return x + transform.shift_x, y + transform.shift_y


def roll_per_exposure(visit: Visit) -> float:
    """Roll change during one stacked exposure [deg] (nominal rate)."""
    return ROLL_RATE_DEG_PER_MIN * visit.texptime / 60.0


def unwrap_roll(roll_deg: ArrayLike) -> NDArray:
    """Continuous roll angle [deg], unwrapped across the 0/360 jump (roll decreases)."""
    return np.degrees(np.unwrap(np.radians(np.asarray(roll_deg, dtype=float))))


def fill_roll_angles(mjd: ArrayLike, roll_deg: ArrayLike,
                     rate_deg_per_min: float = ROLL_RATE_DEG_PER_MIN
                     ) -> tuple[NDArray, NDArray[np.bool_]]:
    """Replace NaN roll angles by estimates from time; returns (roll [deg], estimated mask).

    The roll is the nominal rotation ``rate * t`` plus a smooth residual (the real roll rate
    varies along the orbit: residuals of 7-40 deg over the five real visits in tests/data).
    The residual is measured on the valid frames, unwrapped (robust across orbit gaps, where
    the roll moves by more than 180 deg), and interpolated to the NaN frames with a cubic
    spline (held constant beyond the first/last valid frame). On the real visits this
    predicts removed roll angles to 0.03-0.7 deg (linear interpolation: up to 4.4 deg).
    With a single valid frame this is archi's fixed-rate extrapolation. Raises ValueError if
    no frame is valid.
    """
    t_min = (np.asarray(mjd, dtype=float) - float(np.nanmin(mjd))) * 1440.0
    roll = np.asarray(roll_deg, dtype=float).copy()
    missing = ~np.isfinite(roll)
    if not missing.any():
        return roll, missing
    valid = ~missing
    if not valid.any():
        raise ValueError("every roll angle is NaN: the roll cannot be estimated")
    nominal = rate_deg_per_min * t_min
    t_valid = t_min[valid]
    residual = np.degrees(np.unwrap(np.radians(roll[valid] - nominal[valid])))
    t_missing = t_min[missing]
    estimate = np.interp(t_missing, t_valid, residual)
    inside = (t_missing > t_valid[0]) & (t_missing < t_valid[-1])
    if len(t_valid) >= 4 and inside.any():
        from scipy.interpolate import CubicSpline  # lazy: 0.12 s of imports

        estimate[inside] = CubicSpline(t_valid, residual)(t_missing[inside])
    roll[missing] = (nominal[missing] + estimate) % 360.0
    return roll, missing
