"""Where the stars are, measured: the catalogue-to-pixel transform of a visit
(:func:`measure_sky_transform`), and each star's place in the turning field, fitted to its
per-frame positions (:func:`rigid_tracks`).

The catalogue maps to pixels through a plate scale known to ~1.5 % only (1.5 px at 100 px
from the target) and a sense of turning with the roll that is a convention
(:mod:`archi.geometry`). So the transform is measured: the catalogue's bright, unblended
stars are found in frames spread over the visit (a search over rotation, scale, sense and
mirroring first, since a field turning the other way puts them anywhere), their positions
measured by PSF fits, and ``z_jk - T_k = shift + exp(-i sense roll_k) A w_j`` fitted by
linear least squares in complex numbers for both senses, mirrored or not; the best is
kept. The assumed transform stays when too few stars are measured or the measurement
agrees with it (within :data:`SIGNIFICANCE` sigma).

The field turns rigidly about the target as the spacecraft rolls (the PSF does not turn:
the optics roll with the CCD). So a star's position in frame k is the target's position
plus its roll-0 offset turned by the roll angle; per-frame fits of a star (the ``dynam``
tracker) scatter about that by their noise (0.03-0.1 px for G = 10-12 in a crowded field),
while the offset fitted to hundreds of frames is known to a few thousandths of a pixel. A
neighbour's light in an aperture moves by the gradient of its PSF times its position error,
so blended pairs need the fitted tracks.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from archi.fieldmodel import fit_shifts
from archi.geometry import (
    ASSUMED,
    FIELD_CENTRE,
    FIELD_RADIUS,
    PLATE_SCALE,
    SkyTransform,
    catalogue_positions,
    roll_per_exposure,
    rotate_offsets,
    sky_offsets,
)
from archi.photometry import noise_per_pixel
from archi.psf import EmpiricalPsf, rotational_blur
from archi.stars import Tracks
from archi.visit import Visit

MIN_MEASURED_FRAMES = 10
"""A star's roll-0 offset is fitted when it was measured in at least this many frames;
otherwise its tracks are kept as they are."""


def roll_zero_offsets(tracks: Tracks, roll_deg: NDArray, centre_x: NDArray, centre_y: NDArray
                      ) -> tuple[NDArray, NDArray, NDArray]:
    """Each star's offset from the centre at roll 0 [pixel] (median over its measured
    frames of its offsets turned back by the roll) and the number of frames used."""
    dx = tracks.x - centre_x[None, :]
    dy = tracks.y - centre_y[None, :]
    bx, by = rotate_offsets(dx, dy, -np.asarray(roll_deg, float)[None, :])
    use = tracks.measured & np.isfinite(bx) & np.isfinite(by)
    with np.errstate(all="ignore"):
        import warnings
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            ox = np.nanmedian(np.where(use, bx, np.nan), axis=1)
            oy = np.nanmedian(np.where(use, by, np.nan), axis=1)
    return ox, oy, use.sum(axis=1)


def rigid_tracks(tracks: Tracks, roll_deg: NDArray, centre_x: NDArray, centre_y: NDArray
                 ) -> Tracks:
    """Tracks of stars fixed in the turning field: centre + roll-0 offset turned by the roll
    (``roll_deg``: the angle the field is turned by, :func:`archi.geometry.field_turn`),
    for every star measured in at least :data:`MIN_MEASURED_FRAMES` frames (the target,
    row 0, too: its offset from the centre is its mean one). Other rows are kept.

    ``centre_x``, ``centre_y``: the point the field turns about, per frame [pixel]: the
    DRP's centroid of the target (a centroid of all its light, more precise than a fit)."""
    ox, oy, n_used = roll_zero_offsets(tracks, roll_deg, centre_x, centre_y)
    rx, ry = rotate_offsets(ox[:, None], oy[:, None], np.asarray(roll_deg, float)[None, :])
    fitted = n_used >= MIN_MEASURED_FRAMES
    x = np.where(fitted[:, None], centre_x[None, :] + rx, tracks.x)
    y = np.where(fitted[:, None], centre_y[None, :] + ry, tracks.y)
    return Tracks(x=x, y=y, measured=tracks.measured)


# ---------------------------------------------------------------------------------------
# the catalogue-to-pixel transform, measured
# ---------------------------------------------------------------------------------------

MAX_MAG = 12.5
"""Catalogue stars measured for the transform: G <= this [mag]."""
BLEND_RADIUS = 8.0
"""... and no brighter catalogue star closer than this [pixel]."""
MIN_SNR = 30.0
"""A star's position in a frame is used when its fitted flux has this S/N."""
MIN_STARS = 3
"""Fewer measured stars than this: the assumed transform is kept."""
SEARCH_FRAMES = 6
"""Frames (spread over the visit) of the search over rotation, scale, sense, mirroring."""
FIT_FRAMES = 16
"""Frames (spread over the visit) whose PSF-fitted positions the transform is fitted to."""
SIGNIFICANCE = 3.0
"""The fitted transform replaces the assumed one (same sense, not mirrored) when it moves
some position within the field by more than this many standard errors of its own."""
SCALE_WARNING = 0.005
"""Warn when the plate scale differs from the assumed one by more than this fraction."""
RMS_WARNING = 0.5
"""Warn when the measured positions scatter about the fitted transform by more [pixel]."""

HYPOTHESES = ((False, 1), (False, -1), (True, 1), (True, -1))
"""(mirrored, sense) pairs tried, the assumed one first (kept on ties)."""


@dataclass(frozen=True)
class AstrometryFit:
    """What :func:`measure_sky_transform` found: the transform to use, the best fit, its
    quality, and the warnings it gives (one line each)."""

    transform: SkyTransform  # the one used: ``fitted`` or the assumed one
    fitted: SkyTransform | None  # the best fit (None: not enough stars)
    n_stars: int  # stars measured
    n_positions: int  # (star, frame) positions fitted
    rms: float  # [pixel] distance of the measured positions from the fitted ones, RMS
    used: bool  # True: ``transform`` is the fitted one
    note: str
    warnings: tuple[str, ...] = ()

    def to_dict(self) -> dict:
        """Plain values (run_info, prepared.fits): plate scale [arcsec/px], rotation [deg],
        shift [pixel], ..."""
        fit = self.fitted
        out = {"used": "fitted" if self.used else "assumed", "note": self.note,
               "n_stars": self.n_stars, "n_positions": self.n_positions,
               "rms_px": None if not np.isfinite(self.rms) else round(float(self.rms), 4)}
        if fit is not None:
            out.update({
                "scale_ratio": round(fit.scale, 6),
                # from the recorded ratio, so that a record read back gives the same scale
                "plate_scale": round(PLATE_SCALE / round(fit.scale, 6), 6),
                "rotation_deg": round(fit.rotation_deg, 4),
                "sense": "pipe" if fit.sense == 1 else "reversed", "mirrored": fit.mirrored,
                "shift_px": [round(fit.shift_x, 4), round(fit.shift_y, 4)]})
        out["warnings"] = list(self.warnings)
        return out

    @classmethod
    def from_dict(cls, d: dict) -> AstrometryFit:
        """Inverse of :meth:`to_dict` (to its rounding)."""
        fitted = None
        if "scale_ratio" in d:
            fitted = SkyTransform(float(d["scale_ratio"]), float(d["rotation_deg"]),
                                  1 if d["sense"] == "pipe" else -1, bool(d["mirrored"]),
                                  float(d["shift_px"][0]), float(d["shift_px"][1]))
        used = d["used"] == "fitted"
        rms = np.nan if d.get("rms_px") is None else float(d["rms_px"])
        return cls(fitted if used else ASSUMED, fitted, int(d["n_stars"]),
                   int(d["n_positions"]), rms, used, str(d["note"]), tuple(d["warnings"]))


@dataclass(frozen=True)
class MeasuredPositions:
    """Measured positions, one entry per (star, frame): the star (catalogue row), its sky
    offset w (:func:`archi.geometry.sky_offsets` as x + iy), its position z and the
    target's centroid t (complex, x + iy [pixel]) and the roll angle [deg]."""

    row: NDArray
    w: NDArray
    z: NDArray
    t: NDArray
    roll: NDArray


def _candidates(visit: Visit) -> tuple[NDArray, NDArray[np.bool_]]:
    """Sky offsets w (complex, [pixel at PLATE_SCALE]) of every catalogue row, and which
    rows are measured: G <= MAX_MAG, no brighter star within BLEND_RADIUS, reaching the
    field (the target included)."""
    cat = visit.catalogue
    dx, dy = sky_offsets(cat.ra, cat.dec, cat.ra[0], cat.dec[0])
    w = dx + 1j * dy
    mag = np.asarray(cat.mag, float)
    near = np.abs(w[:, None] - w[None, :]) < BLEND_RADIUS
    blended = (near & (mag[None, :] < mag[:, None])).any(axis=1)
    use = (mag <= MAX_MAG) & ~blended & (np.abs(w) < FIELD_RADIUS + 30.0)
    use[0] = not blended[0]
    return w, use


def _matched_filter(image: NDArray, psf: EmpiricalPsf) -> NDArray:
    """``image`` correlated with the PSF's core (radius 10 px, its mean removed, so smooth
    light such as halos gives nothing): a star's response peaks at its position."""
    from scipy.signal import fftconvolve  # lazy: keeps factor jobs' imports light

    r, c = psf.radius, min(psf.radius, 10)
    yy, xx = np.indices(psf.stamp.shape) - r
    core = np.hypot(xx, yy) <= c
    kernel = np.where(core, psf.stamp - psf.stamp[core].mean(), 0.0)[r - c:r + c + 1,
                                                                       r - c:r + c + 1]
    return fftconvolve(np.nan_to_num(image), kernel[::-1, ::-1], mode="same")


def _search(visit: Visit, psf: EmpiricalPsf, w: NDArray, use: NDArray[np.bool_]
            ) -> SkyTransform | None:
    """The transform (no shift) that puts the most catalogue stars on stars of the images:
    a grid over rotation (0.5 deg), scale (1 %), sense and mirroring, scored on
    SEARCH_FRAMES frames filtered with the PSF, each star's contribution its response
    relative to what its magnitude predicts from the target's, at most 1."""
    from scipy import ndimage  # lazy: keeps factor jobs' imports light

    cat = visit.catalogue
    stars = np.flatnonzero(use & (np.abs(w) > 5.0))
    if len(stars) < MIN_STARS or not np.isfinite(cat.mag[0]):
        return None
    relative = 10 ** (-0.4 * (np.asarray(cat.mag, float)[stars] - cat.mag[0]))
    angles = np.radians(np.arange(0.0, 360.0, 0.5))
    scales = 1.0 + np.arange(-4, 5) * 0.01
    frames = np.unique(np.linspace(0, visit.n_frames - 1, min(SEARCH_FRAMES, visit.n_frames))
                       .astype(int))
    score = np.zeros((len(HYPOTHESES), len(scales), len(angles)))
    for k in frames:
        response = _matched_filter(np.asarray(visit.cube[k], dtype=float), psf)
        tx, ty = visit.target_x[k], visit.target_y[k]
        peak = ndimage.map_coordinates(response, [[ty], [tx]], order=1)[0]
        if not peak > 0:
            continue
        for h, (mirrored, sense) in enumerate(HYPOTHESES):
            wp = np.conj(w[stars]) if mirrored else w[stars]
            turn = np.exp(1j * (angles - sense * np.radians(visit.roll_angle[k])))
            z = (tx + 1j * ty) + scales[:, None, None] * turn[None, :, None] * wp[None, None, :]
            light = ndimage.map_coordinates(response, [z.imag.ravel(), z.real.ravel()],
                                            order=1, cval=0.0).reshape(z.shape)
            score[h] += np.clip(light / (peak * relative), 0.0, 1.0).sum(axis=-1)
    h, i, a = np.unravel_index(int(np.argmax(score)), score.shape)
    mirrored, sense = HYPOTHESES[h]
    return SkyTransform(float(scales[i]), float(np.degrees(angles[a])), sense, mirrored)


def _measure(visit: Visit, psf: EmpiricalPsf, transform: SkyTransform, w: NDArray,
             use: NDArray[np.bool_]) -> MeasuredPositions:
    """PSF-fitted positions of the ``use`` stars in FIT_FRAMES frames, the catalogue stars
    that reach the image fitted with them (their light modelled, blends included), at the
    positions ``transform`` predicts; kept where the flux has S/N >= MIN_SNR, the PSF lies
    on the field and the shift is under 2.5 px."""
    frames = np.unique(np.linspace(0, visit.n_frames - 1, min(FIT_FRAMES, visit.n_frames))
                       .astype(int))
    x, y = catalogue_positions(visit, frames, transform)
    shape = visit.image_shape
    mag = np.asarray(visit.catalogue.mag, float)
    reach = ((x > -10) & (x < shape[1] + 10) & (y > -10) & (y < shape[0] + 10)).any(axis=1)
    modelled = np.flatnonzero(reach & ((np.nan_to_num(mag, nan=99.0) <= MAX_MAG + 2.0) | use))
    x, y = x[modelled], y[modelled]
    tx, ty = visit.target_x[frames], visit.target_y[frames]
    blur = rotational_blur(x, y, tx, ty, roll_per_exposure(visit))
    fit = fit_shifts(np.asarray(visit.cube[frames], dtype=float), x, y, psf,
                     noise_per_pixel(visit)[frames], blur=blur)
    with np.errstate(divide="ignore", invalid="ignore"):
        snr = np.where(fit.flux_err > 0, fit.flux / fit.flux_err, 0.0)
    inside = np.hypot(x - FIELD_CENTRE[0], y - FIELD_CENTRE[1]) < FIELD_RADIUS - 3.0
    good = (use[modelled][:, None] & (snr >= MIN_SNR) & (fit.covered > 0.95) & inside
            & (np.hypot(fit.dx, fit.dy) < 2.5))
    j, k = np.nonzero(good)
    rows = modelled[j]
    return MeasuredPositions(rows, w[rows], (x + fit.dx + 1j * (y + fit.dy))[j, k],
                      (tx + 1j * ty)[k], visit.roll_angle[frames][k])


def _design(p: MeasuredPositions, mirrored: bool, sense: int) -> NDArray:
    """Columns of ``z - t = shift + exp(-i sense roll) A w'``: 1 and the turned w'."""
    wp = np.conj(p.w) if mirrored else p.w
    return np.column_stack([np.ones(len(p.w)), np.exp(-1j * sense * np.radians(p.roll)) * wp])


def _fit(p: MeasuredPositions, mirrored: bool, sense: int
         ) -> tuple[SkyTransform, NDArray, NDArray[np.bool_]]:
    """Least-squares transform of one (mirrored, sense) hypothesis, positions further than
    5 robust sigma (and 0.3 px) from it dropped twice; the transform, the residuals
    (complex [pixel]) and which positions were kept."""
    design, data = _design(p, mirrored, sense), p.z - p.t
    keep = np.ones(len(data), dtype=bool)
    for _ in range(3):
        solution = np.linalg.lstsq(design[keep], data[keep], rcond=None)[0]
        resid = data - design @ solution
        sigma = 1.4826 * np.median(np.abs(resid[keep]))
        new = np.abs(resid) <= max(5.0 * sigma, 0.3)
        if (new == keep).all():
            break
        keep = new
    shift, a = solution
    transform = SkyTransform(float(abs(a)), float(np.degrees(np.angle(a))), sense, mirrored,
                             float(shift.real), float(shift.imag))
    return transform, resid, keep


def fit_transform(positions: MeasuredPositions) -> tuple[SkyTransform, NDArray, NDArray]:
    """The transform that fits ``positions`` best (smallest RMS residual) among both senses,
    mirrored or not (each fitted by least squares, outliers dropped: :func:`_fit`); its
    residuals (complex [pixel]) and which positions it kept."""
    fits = [_fit(positions, mirrored, sense) for mirrored, sense in HYPOTHESES]
    rms = [np.sqrt(np.mean(np.abs(r[k]) ** 2)) if k.sum() > 0.5 * len(k) else np.inf
           for _, r, k in fits]
    return fits[int(np.argmin(rms))]


def _significant(p: MeasuredPositions, fit: SkyTransform, resid: NDArray, keep: NDArray,
                 min_change: float) -> bool:
    """Whether ``fit`` (same sense, not mirrored) moves some position within the field from
    the assumed one by more than ``min_change`` [pixel] and by more than SIGNIFICANCE
    standard errors. The errors count each star once (a star's positions share its blends'
    errors), so they are conservative."""
    design = _design(p, fit.mirrored, fit.sense)[keep]
    n = int(keep.sum())
    per_star = n / max(len(np.unique(p.row[keep])), 1)
    variance = np.sum(np.abs(resid[keep]) ** 2) / max(2 * n - 4, 1) * per_star  # per axis
    inverse = np.linalg.inv(design.conj().T @ design)
    probe = FIELD_RADIUS * np.exp(1j * np.radians(np.arange(0, 360, 15)))
    u = np.exp(-1j * fit.sense * np.radians(p.roll[keep][::max(n // 20, 1)]))
    w = (probe[:, None] * u[None, :]).ravel()  # turned offsets; |w| = FIELD_RADIUS
    a = fit.scale * np.exp(1j * np.radians(fit.rotation_deg))
    moved = np.abs(fit.shift_x + 1j * fit.shift_y + (a - 1.0) * w)
    vectors = np.stack([np.ones_like(w), w], axis=-1)
    error = np.sqrt(variance * np.einsum("ni,ij,nj->n", vectors.conj(), inverse, vectors).real)
    return bool(np.any(moved > SIGNIFICANCE * error) and moved.max() > min_change)


def measure_sky_transform(visit: Visit, psf: EmpiricalPsf | None = None,
                          start: AstrometryFit | None = None, min_change: float = 0.0
                          ) -> AstrometryFit:
    """The catalogue-to-pixel transform of ``visit`` measured on its images (module
    docstring) with ``psf`` (default: :meth:`EmpiricalPsf.from_visit`), from ``start``'s
    fit (default: a search). Its ``transform`` is the assumed one when there is no
    catalogue, fewer than MIN_STARS stars were measured, or the fit agrees with the assumed
    transform (turns the same way, not mirrored, and moves no position within the field by
    more than ``min_change`` [pixel] and SIGNIFICANCE standard errors).

    The visit's first PSF holds some of its neighbours' light: positions fitted with it are
    off by 0.03-0.7 px on the crowded test scene (scale ratio off by 0.1 %); with the field
    model's PSF by 0.01-0.1 px (0.001 %)."""
    if visit.catalogue is None or len(visit.catalogue) == 0:
        return AstrometryFit(ASSUMED, None, 0, 0, np.nan, False, "no star catalogue")
    psf = psf or EmpiricalPsf.from_visit(visit)
    w, use = _candidates(visit)
    best = start.fitted if start is not None else None
    best = best or _search(visit, psf, w, use)
    if best is None:
        return _too_few(int(use.sum()), 0)
    for _ in range(2):  # measured where the search put the stars, again where the fit does
        positions = _measure(visit, psf, best, w, use)
        if len(np.unique(positions.row)) < MIN_STARS:
            return _too_few(len(np.unique(positions.row)), len(positions.row))
        best, resid, keep = fit_transform(positions)
    n_stars = len(np.unique(positions.row[keep]))
    if n_stars < MIN_STARS:
        return _too_few(n_stars, int(keep.sum()))
    changed = best.sense != ASSUMED.sense or best.mirrored != ASSUMED.mirrored
    used = changed or _significant(positions, best, resid, keep, min_change)
    rms = float(np.sqrt(np.mean(np.abs(resid[keep]) ** 2)))
    note = (f"fitted to {n_stars} stars" if used else
            f"fitted to {n_stars} stars, agrees with the assumed transform: kept")
    return AstrometryFit(best if used else ASSUMED, best, n_stars, int(keep.sum()), rms, used,
                         note, _warnings(visit, best, rms, n_stars))


def _too_few(n_stars: int, n_positions: int) -> AstrometryFit:
    return AstrometryFit(ASSUMED, None, n_stars, n_positions, np.nan, False,
                         f"{n_stars} star(s) measured ({MIN_STARS} needed): the assumed "
                         f"transform is kept")


def _warnings(visit: Visit, fit: SkyTransform, rms: float, n_stars: int) -> tuple[str, ...]:
    """One line per way the fitted transform disagrees with the assumed one."""
    where = f"{visit.folder.name}: astrometry ({n_stars} stars)"
    out = []
    if abs(fit.scale - 1.0) > SCALE_WARNING:
        out.append(f"{where}: plate scale {PLATE_SCALE / fit.scale:.4f} arcsec/px, "
                   f"{100 * (1 / fit.scale - 1):+.2f} % from the assumed {PLATE_SCALE}")
    if fit.sense != ASSUMED.sense:
        out.append(f"{where}: the field turns by +roll, not by -roll as assumed (PIPE's)")
    if fit.mirrored:
        out.append(f"{where}: the field is mirrored relative to the catalogue")
    if rms > RMS_WARNING:
        out.append(f"{where}: positions scatter {rms:.2f} px RMS about the fitted "
                   f"transform (more than {RMS_WARNING} px)")
    return tuple(out)


def warn_astrometry(fit: AstrometryFit) -> None:
    """Each of ``fit``'s warnings as a Python warning (logged by the workflow's jobs)."""
    for message in fit.warnings:
        warnings.warn(message, stacklevel=3)
