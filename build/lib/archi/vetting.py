"""Home of vetting image detections against the field model: the lobes and wings of known
stars are not stars.

A star found only in the image (no catalogue match) is kept when the data minus the model of
every other star (the tracked ones and the catalogue stars whose light reaches the field,
those outside it too: :func:`archi.fieldfit.field_model`) still holds a significant
PSF-shaped source at its place, in frames spread over the visit (so over the roll). A lobe
of a modelled star leaves little there once that star is modelled. A kept star's position
is refined on those residuals with the model's PSF (cleaned of the neighbours' light; the
first PSF's halos bias image positions by 0.1-0.5 px on the crowded test scene). A rejected
candidate next to a catalogue star that ``fits`` would list becomes that star: a star just
outside the field in the first frame is found a few pixels inside it.
"""

from __future__ import annotations

from dataclasses import fields, replace

import numpy as np
from numpy.typing import NDArray

from archi.detect import MERGE_RADIUS, detect_from_catalogue, sort_by_distance
from archi.fieldimage import FieldModel
from archi.geometry import FIELD_CENTRE, FIELD_RADIUS, field_turn, rotate_offsets
from archi.options import Options
from archi.photometry import noise_per_pixel
from archi.psf import blur_offsets
from archi.stars import StarList
from archi.visit import Visit

VET_FRAMES = 8
"""Frames spread over the visit on which each candidate is fitted in the residual (the
whole vetting took 0.2-0.4 s CPU for 1-6 candidates on 100-300-frame visits)."""

FIT_RADIUS = 10.0
"""Radius [pixel] of the window a candidate is fitted on (the PSF's core and lobes)."""

MODEL_ERROR = 0.05
"""Relative error of the other stars' modelled light per pixel, added to the noise (the
PSF and fluxes are not perfect: without it a bright star's residual looks like a star)."""

MIN_WINDOW = 0.5
"""A frame counts for a candidate when at least this fraction of its window is on the
field's pixels."""

MAX_SHIFT = 2.0
"""Largest position correction [pixel] taken from one refinement step."""


def _frames(visit: Visit, n: int = VET_FRAMES) -> NDArray:
    return np.unique(np.linspace(0, visit.n_frames - 1, min(n, visit.n_frames)).astype(int))


def fit_in_residual(frame: NDArray, residual: NDArray, others: NDArray, model: FieldModel,
                    x: float, y: float, k: int, floor: float
                    ) -> tuple[float, float, float, float]:
    """A PSF and a constant level fitted to ``residual`` (one frame minus the model of the
    other stars) on the window about (x, y) [pixel] in frame ``k``: flux [e], its error
    [e], and the position correction (dx, dy) [pixel]; NaN when too little of the window is
    on the field. Noise per pixel: photon noise of the frame's light, ``floor`` [e^2] (sky,
    dark, read) and :data:`MODEL_ERROR` of ``others`` (the other stars' modelled light)."""
    psf = model.psf
    blur = blur_offsets(x, y, model.target_x[k], model.target_y[k], model.droll_deg)
    stamp, gx, gy, ix0, iy0 = psf.render(x, y, blur, gradients=True)
    ny, nx = frame.shape
    ys, xs = max(iy0, 0), max(ix0, 0)
    ye, xe = min(iy0 + psf.size, ny), min(ix0 + psf.size, nx)
    if ys >= ye or xs >= xe:
        return (np.nan,) * 4
    yy, xx = np.mgrid[ys:ye, xs:xe]
    window = np.hypot(xx - x, yy - y) <= FIT_RADIUS
    use = window & np.isfinite(residual[ys:ye, xs:xe])
    if use.sum() < MIN_WINDOW * np.pi * FIT_RADIUS ** 2:
        return (np.nan,) * 4
    sl = (slice(ys - iy0, ye - iy0), slice(xs - ix0, xe - ix0))
    design = np.stack([stamp[sl][use], gx[sl][use], gy[sl][use], np.ones(int(use.sum()))],
                      axis=1)
    light = np.clip(np.nan_to_num(frame[ys:ye, xs:xe][use]), 0.0, None)
    variance = light + floor + (MODEL_ERROR * others[ys:ye, xs:xe][use]) ** 2
    w = 1.0 / variance
    normal = design.T @ (design * w[:, None])
    try:
        cov = np.linalg.inv(normal)
    except np.linalg.LinAlgError:
        return (np.nan,) * 4
    a = cov @ (design.T @ (w * residual[ys:ye, xs:xe][use]))
    flux = float(a[0])
    if flux <= 0:
        return flux, float(np.sqrt(cov[0, 0])), 0.0, 0.0
    # the stamp's gradients are d/dx of the image: a star further right is -gx
    return (flux, float(np.sqrt(cov[0, 0])), float(np.clip(-a[1] / flux, -MAX_SHIFT, MAX_SHIFT)),
            float(np.clip(-a[2] / flux, -MAX_SHIFT, MAX_SHIFT)))


def residual_fits(visit: Visit, model: FieldModel, stars: NDArray, frames: NDArray,
                  shift: NDArray | None = None) -> NDArray:
    """Each of ``stars`` (rows of ``model``) fitted in the data minus the model of every
    other star, on ``frames``: (n_stars, n_frames, 4) = flux, error [e], dx, dy [pixel] in
    the frame's own orientation. ``shift`` (n_stars, 2): roll-0 corrections [pixel] to the
    modelled positions at which the PSF is fitted."""
    floor = noise_per_pixel(visit)
    out = np.full((len(stars), len(frames), 4), np.nan)
    for i, k in enumerate(frames):
        frame = np.asarray(visit.cube[k], dtype=float)
        whole = model.render(np.array([k]))[0]
        for n, j in enumerate(stars):
            own = model.render(np.array([k]), [j])[0]
            x, y = model.x[j, k], model.y[j, k]
            if shift is not None:
                sx, sy = rotate_offsets(shift[n, 0], shift[n, 1], field_turn(visit)[k])
                x, y = x + float(sx), y + float(sy)
            if not (np.isfinite(x) and np.isfinite(y)):
                continue
            out[n, i] = fit_in_residual(frame, frame - whole + own, whole - own, model,
                                        float(x), float(y), int(k), float(floor[k]))
    return out


def _roll_zero_shift(visit: Visit, fits: NDArray, frames: NDArray) -> NDArray:
    """Median position corrections (n, 2) turned back to the roll-0 frame [pixel]."""
    sx, sy = rotate_offsets(fits[..., 2], fits[..., 3], -field_turn(visit)[frames][None, :])
    with np.errstate(all="ignore"):
        return np.nan_to_num(np.stack([np.nanmedian(sx, axis=1), np.nanmedian(sy, axis=1)],
                                      axis=1))


def candidate_snr(fits: NDArray) -> NDArray:
    """Median over frames of each candidate's flux / error in the residual (0 if never
    fitted)."""
    with np.errstate(all="ignore"):
        snr = np.where(fits[..., 1] > 0, fits[..., 0] / fits[..., 1], np.nan)
        usable = np.isfinite(snr).any(axis=1)
        return np.where(usable, np.nanmedian(np.where(usable[:, None], snr, 0.0), axis=1), 0.0)


def _rows(stars: StarList, index: NDArray) -> dict[str, NDArray]:
    return {f.name: np.asarray(getattr(stars, f.name))[index] for f in fields(StarList)}


def _catalogue_stand_ins(visit: Visit, stars: StarList, rejected: NDArray, options: Options
                         ) -> StarList | None:
    """The catalogue stars that ``fits`` would list, matched to no star of ``stars``,
    within :data:`MERGE_RADIUS` of a rejected candidate (nearest first, each once)."""
    if visit.catalogue is None or not len(rejected):
        return None
    listed = detect_from_catalogue(visit, options.detection.magnitude_limit)
    free = ~np.isin(listed.catalogue_row, stars.catalogue_row) & (listed.catalogue_row != 0)
    chosen: list[int] = []
    for j in rejected:
        d = np.hypot(listed.x0 - stars.x0[j], listed.y0 - stars.y0[j])
        d[~free] = np.inf
        d[chosen] = np.inf
        i = int(np.argmin(d))
        if d[i] <= MERGE_RADIUS:
            chosen.append(i)
    return StarList(**_rows(listed, np.array(chosen, dtype=int))) if chosen else None


def refined_offsets(visit: Visit, model: FieldModel, stars: NDArray, frames: NDArray,
                    first: NDArray, passes: int = 2) -> NDArray:
    """Roll-0 corrections (n, 2) [pixel] to the modelled positions of ``stars``: the
    median shift fitted in the residuals (``first``: the fits at the modelled positions),
    then ``passes`` - 1 more fits at the corrected positions."""
    shift = _roll_zero_shift(visit, first, frames)
    for _ in range(passes - 1):
        shift = shift + _roll_zero_shift(visit, residual_fits(visit, model, stars, frames,
                                                              shift), frames)
    return shift


def vet_image_stars(visit: Visit, stars: StarList, model: FieldModel, options: Options
                    ) -> StarList:
    """``stars`` with those found only in the image vetted against ``model`` (its first
    ``stars.n_stars`` rows are ``stars``; see the module docstring): a candidate is kept
    when its median S/N in the residuals reaches ``detection_snr``, with its first-frame
    position refined; a rejected one is dropped, or replaced by the catalogue star it
    stands for. ``stars`` itself when nothing changes (no image-only star)."""
    candidates = np.flatnonzero(stars.catalogue_row < 0)
    candidates = candidates[candidates > 0]  # the target is where the DRP says
    if not len(candidates):
        return stars
    frames = _frames(visit)
    fits = residual_fits(visit, model, candidates, frames)
    kept = candidate_snr(fits) >= options.detection.detection_snr
    x0, y0 = stars.x0.copy(), stars.y0.copy()
    if kept.any():
        # the rejected ones' light is the known stars' own: not subtracted any more
        flux = np.array(model.flux, dtype=float)
        flux[candidates[~kept]] = 0.0
        cleared = replace(model, flux=flux, images=None)
        first = residual_fits(visit, cleared, candidates[kept], frames) if (~kept).any() \
            else fits[kept]
        shift = refined_offsets(visit, cleared, candidates[kept], frames, first)
        sx, sy = rotate_offsets(shift[:, 0], shift[:, 1], field_turn(visit)[0])
        x0[candidates[kept]] += sx
        y0[candidates[kept]] += sy
    keep = np.ones(stars.n_stars, dtype=bool)
    keep[candidates[~kept]] = False
    rows = _rows(replace(stars, x0=x0, y0=y0), np.flatnonzero(keep))
    stand_ins = _catalogue_stand_ins(visit, stars, candidates[~kept], options)
    if stand_ins is not None:
        rows = {name: np.concatenate([rows[name], getattr(stand_ins, name)]) for name in rows}
    return sort_by_distance(StarList(**rows))
