"""Tracking: the position of every star in every frame.

``detect_mode`` (archi's names; ``P+S`` = one mode for the target, another for the rest):

* ``static``: first-frame positions turned by the roll-angle change about the target's
  first-frame position (no pointing jitter).
* ``offsets``: as static, but about the target's DRP centroid of each frame, so the whole
  field follows the pointing jitter.
* ``dynam``: measured in each frame. Each star is fitted with the visit's empirical PSF on a
  25x25-pixel window about its ``offsets`` prediction, solving for a small shift, all
  frames of a chunk at once (:func:`archi.fieldmodel.fit_shifts`); neighbours whose light
  reaches the window are modelled with their own fits, iterated (blends are modelled, not
  ignored). Cosmic-ray hits found by prepare are replaced first. A shift larger than
  ``track_tolerance`` or a star too faint or off the field in that frame falls back to the
  prediction (``Tracks.measured`` False).

Roll angles must be finite (the reader estimates NaN ones from time).
"""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray

from archi import parallel
from archi.cosmics import CosmicHits
from archi.fieldmodel import fit_shifts
from archi.psf import EmpiricalPsf, rotational_blur
from archi.geometry import (field_turn, predicted_positions, roll_offsets, roll_per_exposure,
                            rotate_offsets)
from archi.options import Options, TrackingOptions
from archi.photometry import noise_per_pixel
from archi.stars import StarList, Tracks
from archi.visit import Visit

MIN_TRACK_SNR = 5.0
"""dynam: a frame's fit must measure the star's flux at this S/N to trust its position."""


def _static(visit: Visit, stars: StarList) -> tuple[NDArray, NDArray]:
    dx, dy = stars.x0 - stars.x0[0], stars.y0 - stars.y0[0]
    turn = field_turn(visit) - field_turn(visit)[0]
    rx, ry = rotate_offsets(dx[:, None], dy[:, None], turn[None, :])
    return stars.x0[0] + rx, stars.y0[0] + ry


def _offsets(visit: Visit, stars: StarList) -> tuple[NDArray, NDArray]:
    dx0, dy0 = roll_offsets(visit, stars.x0, stars.y0)
    # keep the target's own first-frame offset from its DRP centroid (e.g. image detection)
    bias_x = stars.x0[0] - visit.target_x[0]
    bias_y = stars.y0[0] - visit.target_y[0]
    dx0 = dx0 - dx0[0]
    dy0 = dy0 - dy0[0]
    x, y = predicted_positions(visit, dx0, dy0, np.arange(visit.n_frames))
    return x + bias_x, y + bias_y


def _dynam(visit: Visit, x_pred: NDArray, y_pred: NDArray, tracking: TrackingOptions,
           chunk: int, psf: EmpiricalPsf, cosmics: CosmicHits | None = None, workers: int = 1
           ) -> tuple[NDArray, NDArray, NDArray]:
    """Measured positions and whether measured, (n_stars, n_frames) each, fitted in chunks
    of ``chunk`` frames; the frames split among ``workers`` processes at chunk boundaries
    (chunks are fitted independently)."""

    def part(span: tuple[int, int]):
        return lambda: _dynam_frames(visit, x_pred, y_pred, tracking, chunk, psf, cosmics,
                                     span)

    spans = parallel.frame_ranges(x_pred.shape[1], chunk, workers) or [(0, 0)]
    if len(spans) > 1:
        psf.fill_bank()  # once here, not in each process
    parts = parallel.run_forked([part(span) for span in spans], workers)
    return tuple(np.concatenate([p[i] for p in parts], axis=1) for i in range(3))


def _dynam_frames(visit: Visit, x_pred: NDArray, y_pred: NDArray, tracking: TrackingOptions,
                  chunk: int, psf: EmpiricalPsf, cosmics: CosmicHits | None,
                  span: tuple[int, int]) -> tuple[NDArray, NDArray, NDArray]:
    """:func:`_dynam` of the frames ``first..stop-1`` of ``span`` (the result's columns)."""
    first, stop = span
    x, y = x_pred[:, first:stop].copy(), y_pred[:, first:stop].copy()
    measured = np.zeros(x.shape, dtype=bool)
    droll = roll_per_exposure(visit)
    variance = noise_per_pixel(visit)
    for start in range(first, stop, chunk):
        sl = slice(start, min(start + chunk, stop))
        out = slice(sl.start - first, sl.stop - first)
        frames = np.array(visit.cube[sl], dtype=float)
        if cosmics is not None:
            cosmics.patch(frames, start)
        blur = rotational_blur(x_pred[:, sl], y_pred[:, sl], visit.target_x[sl],
                               visit.target_y[sl], droll)
        fit = fit_shifts(frames, x_pred[:, sl], y_pred[:, sl], psf, variance[sl], blur=blur)
        with np.errstate(divide="ignore", invalid="ignore"):
            snr = np.where(fit.flux_err > 0, fit.flux / fit.flux_err, 0.0)
        ok = ((snr >= MIN_TRACK_SNR) & (fit.covered > 0.5)
              & (np.hypot(fit.dx, fit.dy) <= tracking.track_tolerance))
        x[:, out] += np.where(ok, fit.dx, 0.0)
        y[:, out] += np.where(ok, fit.dy, 0.0)
        measured[:, out] = ok
    return x, y, measured


def track_stars(visit: Visit, stars: StarList, options: Options,
                psf: EmpiricalPsf | None = None, cosmics: CosmicHits | None = None,
                workers: int = 1) -> Tracks:
    """Positions (n_stars, n_frames) of ``stars`` through the visit; ``cosmics``: hits
    replaced before ``dynam`` fits; ``workers``: processes sharing the ``dynam`` frames."""
    modes = [options.tracking.star_tracking(j) for j in range(stars.n_stars)]
    x = np.empty((stars.n_stars, visit.n_frames))
    y = np.empty_like(x)
    measured = np.ones(x.shape, dtype=bool)
    if "static" in modes:
        sx, sy = _static(visit, stars)
        rows = [j for j, m in enumerate(modes) if m == "static"]
        x[rows], y[rows] = sx[rows], sy[rows]
    if "offsets" in modes or "dynam" in modes:
        ox, oy = _offsets(visit, stars)
        rows = [j for j, m in enumerate(modes) if m != "static"]
        x[rows], y[rows] = ox[rows], oy[rows]
        if "dynam" in modes:
            psf = psf or EmpiricalPsf.from_visit(visit)
            dxs, dys, meas = _dynam(visit, ox, oy, options.tracking, options.effective_chunk,
                                    psf, cosmics, workers)
            rows = [j for j, m in enumerate(modes) if m == "dynam"]
            x[rows], y[rows], measured[rows] = dxs[rows], dys[rows], meas[rows]
    return Tracks(x=x, y=y, measured=measured)
