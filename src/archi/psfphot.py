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
from numpy.typing import NDArray

from archi.fieldfit import MIN_COVERED as MIN_FITTED
from archi.fieldimage import FieldModel
from archi.photometry import ApertureSums, noise_per_pixel
from archi.prepared import Prepared
from archi.visit import Visit

MIN_COVERED = 0.5
"""A star's PSF flux is reported when at least this fraction of its PSF falls on the field's
usable pixels (NaN and flagged below: its centre is then near or beyond the edge)."""

CHUNK_FRAMES = 16
"""Frames fitted together: every star's image of these frames is held at once (stars x
frames x 31 000 usable pixels x 8 bytes: 60 MB for 15 stars)."""


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
                   clip: float = 6.0, chunk_frames: int = CHUNK_FRAMES) -> PsfFluxes:
    """PSF fluxes of every star of ``model`` in every frame of ``cube`` (module docstring).

    ``variance_floor``: per frame, the per-pixel variance of sky, dark and read noise [e^2]
    (:func:`archi.photometry.noise_per_pixel`); ``cosmics``: hits replaced in the data."""
    n_stars, n_frames = model.n_stars, model.n_frames
    unit = replace(model, flux=np.ones(n_stars), images=None)  # each star's PSF, unit flux
    usable = np.flatnonzero(np.ones(model.shape, bool) if model.usable is None
                            else model.usable)
    out = {name: np.full((n_stars, n_frames), np.nan) for name in ("flux", "flux_err", "conta")}
    off_field = np.ones((n_stars, n_frames), bool)
    sky = np.full(n_frames, np.nan)
    for start in range(0, n_frames, chunk_frames):
        sl = slice(start, min(start + chunk_frames, n_frames))
        data = np.array(cube[sl], dtype=float)
        if cosmics is not None:
            cosmics.patch(data, start)
        data = data.reshape(len(data), -1)[:, usable]
        whole = model.render(sl).reshape(len(data), -1)[:, usable]
        columns = np.empty((len(data), n_stars + 1, len(usable)))  # every star's PSF, a level
        for j in range(n_stars):
            columns[:, j] = unit.render(sl, [j]).reshape(len(data), -1)[:, usable]
        columns[:, n_stars] = 1.0
        model_flux = model.star_flux(sl)
        for i, k in enumerate(range(sl.start, sl.stop)):
            if not np.isfinite(data[i]).any():  # a bad frame (archi.framequality): no fit
                continue
            variance = np.clip(whole[i], 0.0, None) + variance_floor[k]
            weight = np.where(np.isfinite(data[i]), 1.0 / variance, 0.0)
            fit = _fit_frame(columns[i], np.nan_to_num(data[i]), weight, model_flux[:, i], clip)
            for name, values in zip(out, fit):
                out[name][:, k] = values
            off_field[:, k], sky[k] = fit[3:]
    return PsfFluxes(out["flux"], out["flux_err"], out["conta"], off_field, sky)


def _fit_frame(design: NDArray, data: NDArray, weight: NDArray, model_flux: NDArray,
               clip: float) -> tuple[NDArray, NDArray, NDArray, NDArray, float]:
    """The weighted fit of one frame: ``design`` (S + 1, p) every star's unit PSF on the
    usable pixels and a constant, ``data`` and ``weight`` (p,), ``model_flux`` (S,) the field
    model's fluxes, kept for the stars mostly off the field. Returns flux, flux_err, conta
    (NaN for stars with less than :data:`MIN_COVERED` of their PSF on the field), which
    those are, and the fitted level."""
    n_stars = len(model_flux)
    covered = design[:n_stars].sum(axis=1)
    fitted = covered >= MIN_FITTED
    # stars not fitted stay at the model's flux: their light is taken from the data
    data = data - np.where(fitted, 0.0, model_flux) @ design[:n_stars]
    weighted = design * weight
    normal = weighted @ design.T
    rhs = weighted @ data
    solution, cov = _solve(normal, rhs, fitted)
    bad = np.abs(data - solution @ design) * np.sqrt(weight) > clip
    if bad.any():  # cosmic rays the patching missed: solved again without them
        normal = normal - weighted[:, bad] @ design[:, bad].T
        rhs = rhs - weighted[:, bad] @ data[bad]
        solution, cov = _solve(normal, rhs, fitted)
    flux = np.where(fitted, solution[:n_stars], model_flux)
    stars_normal = normal[:n_stars, :n_stars]
    diagonal = np.diagonal(stars_normal)
    with np.errstate(divide="ignore", invalid="ignore"):
        conta = (stars_normal @ flux - diagonal * flux) / diagonal
    err = np.sqrt(np.clip(np.diagonal(cov)[:n_stars], 0.0, None))
    off = covered < MIN_COVERED
    return (np.where(off, np.nan, flux), np.where(off, np.nan, err),
            np.where(off, np.nan, conta), off, float(solution[n_stars]))


def _solve(normal: NDArray, rhs: NDArray, fitted: NDArray) -> tuple[NDArray, NDArray]:
    """Solution (S + 1,) and covariance of the normal equations (S + 1, S + 1) with the
    stars not ``fitted`` (S,) held at 0 (their rows and columns replaced by the
    identity's)."""
    normal, rhs = normal.copy(), rhs.copy()
    held = np.flatnonzero(~fitted)
    normal[held, :] = 0.0
    normal[:, held] = 0.0
    normal[held, held] = 1.0
    rhs[held] = 0.0
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
