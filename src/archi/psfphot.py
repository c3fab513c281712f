"""Home of PSF photometry (``method: psf``): every star's flux fitted in every frame with the
field model's PSF, all stars and a constant level at once, so that blends that no aperture
can separate are split by their shapes.

For frame k the data d (cosmic-ray hits replaced) are modelled as ``sum_j F_j P_j + s``,
with P_j star j's PSF of unit flux at its tracked position, rotational blur included (the
field model's own images, :class:`archi.fieldimage.FieldModel`), and s the level the DRP's
background subtraction left. Weighted least squares with weights ``1 / (M + v)``, M the
field model's image (its fluxes are medians over the visit: the weights do not depend on
the data, so they do not bias the fluxes) and v the per-pixel variance of sky, dark and read
noise; pixels beyond ``clip`` sigma are dropped and the frame solved again. The flux errors
are the fit's (the inverse of the normal matrix: photon noise of all the light the star's
PSF overlaps, weighted as in the fit).

``conta`` is the neighbours' fitted light under a star's PSF, weighted as in the fit: what a
fit of that star alone would add to its flux, ``sum_{i != j} F_i (P_j W P_i) / (P_j W P_j)``
[e]; the light curves write ``FLUX_RAW = FLUX + CONTA`` (a single-star PSF fit's flux).

A star whose PSF falls mostly off the field (less than :data:`MIN_COVERED` of its light on
usable pixels) gets NaN in that frame and is flagged (``off_field``); stars with less than
:data:`archi.fieldfit.MIN_COVERED` on the field (catalogue stars outside it) are not fitted
but kept at the field model's flux.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np
from numba import njit
from numpy.typing import NDArray

from archi import parallel
from archi.fieldfit import MIN_COVERED as MIN_FITTED
from archi.fieldimage import FieldModel
from archi.photometry import ApertureSums, noise_per_pixel
from archi.prepared import Prepared
from archi.visit import Visit

MIN_COVERED = 0.5
"""A star's PSF flux is reported when at least this fraction of its PSF falls on the field's
usable pixels (NaN and flagged below: its centre is then near or beyond the edge)."""

CHUNK_FRAMES = 4
"""Frames fitted together: every star's image of these frames is held at once (stars x
frames x 40 000 pixels x 8 bytes: 19 MB for 15 stars; 4 rather than 16 frames: 1000
frames of 9 stars fitted in 3.2 s of CPU instead of 3.8, fewer fresh pages to fault in;
frames are fitted independently, so the same numbers)."""


@dataclass(frozen=True)
class PsfFluxes:
    """Per model star and frame (n_stars, n_frames), the field model's stars in its order
    (the tracked stars first); ``sky`` per frame."""

    flux: NDArray[np.float64]  # fitted flux [e per stacked image], NaN where off the field
    flux_err: NDArray[np.float64]  # its standard error from the fit's noise model [e]
    conta: NDArray[np.float64]  # the neighbours' light a fit of the star alone would add [e]
    off_field: NDArray[np.bool_]  # less than MIN_COVERED of the star's PSF on the field
    sky: NDArray[np.float64]  # the fitted constant level [e per pixel]


def psf_photometry(cube, model: FieldModel, variance_floor: NDArray, cosmics=None,
                   clip: float = 6.0, chunk_frames: int = CHUNK_FRAMES, workers: int = 1
                   ) -> PsfFluxes:
    """PSF fluxes of every star of ``model`` in every frame of ``cube`` (module docstring).

    ``variance_floor``: per frame, the per-pixel variance of sky, dark and read noise [e^2]
    (:func:`archi.photometry.noise_per_pixel`); ``cosmics``: hits replaced in the data;
    ``workers``: processes sharing the frames (each frame is fitted on its own: the same
    numbers)."""
    floor = np.asarray(variance_floor, dtype=np.float64)

    def frames(first: int, stop: int) -> PsfFluxes:
        return _psf_frames(cube, model, floor, cosmics, clip, chunk_frames, first, stop)

    parts = parallel.split_frames(frames, model.n_frames, chunk_frames, workers)
    return PsfFluxes(*(np.concatenate([getattr(p, name) for p in parts], axis=-1)
                       for name in ("flux", "flux_err", "conta", "off_field", "sky")))


def _psf_frames(cube, model: FieldModel, floor: NDArray, cosmics, clip: float,
                chunk_frames: int, first: int, stop: int) -> PsfFluxes:
    """:func:`psf_photometry` of the frames ``first..stop-1`` (the result's columns)."""
    n_stars, n_frames = model.n_stars, stop - first
    # each star's PSF, unit flux; not blanked beyond the usable pixels: only those are fitted
    unit = replace(model, flux=np.ones(n_stars), images=None, usable=None)
    usable = np.flatnonzero(np.ones(model.shape, bool) if model.usable is None
                            else model.usable)
    out = {name: np.full((n_stars, n_frames), np.nan) for name in ("flux", "flux_err", "conta")}
    off_field = np.ones((n_stars, n_frames), bool)
    sky = np.full(n_frames, np.nan)
    for start in range(first, stop, chunk_frames):
        sl = slice(start, min(start + chunk_frames, stop))
        cols = slice(sl.start - first, sl.stop - first)
        data = np.array(cube[sl], dtype=float)
        if cosmics is not None:
            cosmics.patch(data, start)
        n = len(data)
        _fit_frames(unit.render(sl, separate=True).reshape(n, n_stars, -1),
                    data.reshape(n, -1), model.render(sl).reshape(n, -1), usable,
                    floor[sl], model.star_flux(sl), clip, MIN_FITTED, MIN_COVERED,
                    out["flux"][:, cols], out["flux_err"][:, cols], out["conta"][:, cols],
                    off_field[:, cols], sky[cols])
    return PsfFluxes(out["flux"], out["flux_err"], out["conta"], off_field, sky)


@njit(cache=True)
def _fit_frames(design, data, whole, usable, floor, model_flux, clip, min_fitted,
                min_covered, flux, flux_err, conta, off_field, sky):  # pragma: no cover
    """The weighted fit of each frame i of a chunk, written into the outputs' column i:
    ``design`` (n, S, H*W) every star's unit PSF, ``data`` and ``whole`` (the field model)
    (n, H*W), fitted on the ``usable`` pixels (flat indices) with a constant level, weights
    1 / (max(whole, 0) + floor[i]) where the data are finite. Stars with less than
    ``min_fitted`` of their PSF on those pixels are held at ``model_flux`` (S, n) (their
    light taken from the data); pixels beyond ``clip`` sigma are dropped and the frame
    solved again. flux, flux_err, conta (NaN with less than ``min_covered`` of the PSF on
    the field, ``off_field``), and ``sky`` the fitted level. A frame without finite data is
    left as it is (a bad frame: no fit)."""
    n_frames, n_stars = design.shape[0], design.shape[1]
    p = usable.shape[0]
    a = np.empty((n_stars + 1, p))  # every star's PSF on the usable pixels, a constant
    a[n_stars] = 1.0
    d, w = np.empty(p), np.empty(p)
    for i in range(n_frames):
        if not _frame_data(data[i], whole[i], usable, floor[i], d, w):
            continue
        for j in range(n_stars):
            for q in range(p):
                a[j, q] = design[i, j, usable[q]]
        covered = np.array([a[j].sum() for j in range(n_stars)])
        fitted = covered >= min_fitted
        for j in range(n_stars):  # stars not fitted stay at the model's flux
            if not fitted[j]:
                d -= model_flux[j, i] * a[j]
        weighted = a * w
        normal = weighted @ a.T
        rhs = weighted @ d
        solution, cov = _solve(normal, rhs, fitted)
        bad = np.flatnonzero(np.abs(d - solution @ a) * np.sqrt(w) > clip)
        if bad.size:  # cosmic rays the patching missed: solved again without them
            weighted_bad = np.ascontiguousarray(weighted[:, bad])
            normal = normal - weighted_bad @ np.ascontiguousarray(a[:, bad].T)
            rhs = rhs - weighted_bad @ d[bad]
            solution, cov = _solve(normal, rhs, fitted)
        f = np.where(fitted, solution[:n_stars], model_flux[:, i])
        stars_normal = np.ascontiguousarray(normal[:n_stars, :n_stars])
        neighbours = stars_normal @ f
        for j in range(n_stars):
            off = covered[j] < min_covered
            off_field[j, i] = off
            if off:
                flux[j, i] = flux_err[j, i] = conta[j, i] = np.nan
            else:
                flux[j, i] = f[j]
                flux_err[j, i] = np.sqrt(max(cov[j, j], 0.0))
                conta[j, i] = (neighbours[j] - normal[j, j] * f[j]) / normal[j, j]
        sky[i] = solution[n_stars]


@njit(cache=True)
def _frame_data(data, whole, usable, floor, d, w):  # pragma: no cover
    """Fill ``d`` with the frame's ``data`` on the ``usable`` pixels (NaN as 0) and ``w``
    with the weights 1 / (max(whole, 0) + floor) (0 where the data are not finite); whether
    any datum is finite."""
    any_finite = False
    for q in range(usable.shape[0]):
        v = data[usable[q]]
        if np.isfinite(v):
            any_finite = True
            d[q] = v
            w[q] = 1.0 / (max(whole[usable[q]], 0.0) + floor)
        else:
            d[q] = 0.0 if np.isnan(v) else (1.7976931348623157e308 if v > 0
                                             else -1.7976931348623157e308)
            w[q] = 0.0
    return any_finite


@njit(cache=True)
def _solve(normal, rhs, fitted):  # pragma: no cover
    """Solution (S + 1,) and covariance of the normal equations (S + 1, S + 1) with the
    stars not ``fitted`` (S,) held at 0 (their rows and columns replaced by the
    identity's)."""
    normal, rhs = normal.copy(), rhs.copy()
    for j in range(fitted.shape[0]):
        if not fitted[j]:
            normal[j, :] = 0.0
            normal[:, j] = 0.0
            normal[j, j] = 1.0
            rhs[j] = 0.0
    cov = np.linalg.inv(normal)
    return cov @ rhs, cov


def psf_rows(stars: NDArray[np.bool_], fit: PsfFluxes, sums: ApertureSums, errors: NDArray,
             raw: NDArray, conta: NDArray | None
             ) -> tuple[ApertureSums, NDArray, NDArray, NDArray]:
    """The extraction's arrays (n_stars, n_frames) with the rows of ``stars`` (n_stars,)
    taken from the PSF fits ``fit`` (whose first rows are the tracked stars): FLUX the
    fitted flux, FLUX_ERR its error, CONTA the neighbours' light under its PSF, FLUX_RAW =
    FLUX + CONTA; frames where the PSF falls mostly off the field are out of bounds; no mask
    (area 0)."""
    n = len(stars)
    pick = np.asarray(stars, bool)[:, None]
    conta = np.full(sums.flux.shape, np.nan) if conta is None else conta  # no mask at all
    sums = ApertureSums(np.where(pick, fit.flux[:n], sums.flux), np.where(pick, 0.0, sums.area),
                        np.where(pick, fit.off_field[:n], sums.out_of_bounds))
    return (sums, np.where(pick, fit.flux_err[:n], errors),
            np.where(pick, fit.flux[:n] + fit.conta[:n], raw), np.where(pick, fit.conta[:n], conta))


def visit_psf_photometry(visit: Visit, prepared: Prepared) -> PsfFluxes:
    """:func:`psf_photometry` of a prepared visit (its field model and cosmic-ray hits)."""
    if prepared.model is None:
        raise ValueError("PSF photometry needs the field model (decontaminate: true)")
    return psf_photometry(visit.cube, prepared.model, noise_per_pixel(visit), prepared.cosmics,
                          chunk_frames=min(CHUNK_FRAMES, prepared.options.effective_chunk))
