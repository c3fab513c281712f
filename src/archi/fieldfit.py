"""Home of fitting the field model to a visit: the visit's PSF rebuilt without its
neighbours' light, every tracked and catalogue star's flux, and the tracks that the better
PSF allows (:func:`model_field`, called by the prepare step).

The visit's PSF is the median of target-centred cut-outs at many roll angles; the
neighbours' halos, present at every roll, would stay in its wings, and so would the small
level the DRP's background subtraction leaves. So the PSF is rebuilt from the frames with
every other star's model and that level subtracted, a few times.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence
from dataclasses import replace

import numpy as np
from numpy.typing import NDArray

from archi import parallel
from archi.fieldimage import FieldModel, sky_residual
from archi.fieldmodel import fit_frame
from archi.framequality import first_good_frame
from archi.geometry import (
    FIELD_CENTRE,
    FIELD_RADIUS,
    catalogue_positions,
    field_turn,
    roll_per_exposure,
)
from archi.photometry import noise_per_pixel
from archi.psf import EmpiricalPsf, rotational_blur
from archi.stars import StarList, Tracks
from archi.visit import Visit

FLUX_SAMPLE_FRAMES = 24
"""Frames spread over the visit on which every star's flux is fitted (median taken)."""

PSF_RADIUS = 100
"""Radius of the field model's PSF stamp [pixel]. Wide: a bright target's halo reaches
its neighbours' apertures (60 px left 1 % errors in the light 20-30 px out on the crowded
test scene, 70 px 0.4 %), and a real PSF's structure reaches stars 100 px out
(:data:`WING_STRUCTURE_RADIUS`)."""

WING_STRUCTURE_RADIUS = 70
"""Beyond this radius [pixel] the model's PSF keeps only its structure about each ring's
median (:func:`archi.psf.ring_structure_only`: the mean there is degenerate with the sky)."""

PSF_FRAMES = 50
"""Frames (spread over the visit, so over many roll angles) whose median is the PSF (on
the crowded test scene the error of the target's modelled light in a 10 px circle 22 px
out scatters by 0.026 % of that star's own light with 25 frames, 0.015 % with 50)."""

PSF_ITERATIONS = 2
"""Times the PSF is rebuilt with the neighbours' model subtracted before the tracks are
final (their cores left out, two rebuilds do what four did without: the 1 % transit 22 px
from the target comes out 1.3 % shallow with 2, 1.8 % with 4, noise of the PSF's
median)."""

CORE_RADIUS = 16.0
"""Pixels within this distance of a neighbour [pixel] (the PSF's 80 % radius) are left out
of the PSF's median when enough other frames cover them: a neighbour's subtraction leaves
its variability there (on the crowded test scene a 1 % transit 22 px from the target
printed itself into the target's wing and came out 9-10 % shallow, 1.3 % with its core
left out)."""

CORE_MIN_FLUX = 0.005
"""Neighbours fainter than this fraction of the target's flux keep their cores in."""

FINAL_ITERATIONS = 1
"""Times the PSF is rebuilt once the tracks are final (:func:`model_field`), the neighbours
subtracted at their final positions (the first tracks' errors left 2-4 % too much light in
the PSF 20-40 px out on the crowded test scene; 0.2 % after this rebuild)."""

MIN_COVERED = 0.3
"""A star's flux is fitted when at least this fraction of its PSF falls on the field;
beyond, it comes from its catalogue magnitude (stars outside the field)."""


def fit_fluxes(visit: Visit, x: NDArray, y: NDArray, psf: EmpiricalPsf, droll_deg: float,
               n_frames: int = FLUX_SAMPLE_FRAMES, cube=None, workers: int = 1
               ) -> tuple[NDArray, NDArray]:
    """Every star's flux [e per stacked image] and the fraction of its PSF on the field's
    pixels: a simultaneous PSF fit of all stars at positions (x, y) (n_stars, n_frames) and
    of a constant level (the DRP's background residual; with the level taken beforehand as
    the median residual, fluxes came out 0.7-10 % low for G = 9-13 on the demo, fitted
    together within 0.2-0.7 %) on ``n_frames`` frames spread over the visit, medians
    taken; ``workers``: processes sharing those frames (each fitted on its own)."""
    index = np.unique(np.linspace(0, visit.n_frames - 1, min(n_frames, visit.n_frames))
                      .astype(int))
    variance = noise_per_pixel(visit)
    cube = visit.cube if cube is None else cube

    def fits(first: int, stop: int) -> tuple[NDArray, NDArray]:
        fluxes = np.full((stop - first, x.shape[0]), np.nan)
        covered = np.zeros_like(fluxes)
        for row, k in enumerate(index[first:stop]):
            ok = np.isfinite(x[:, k]) & np.isfinite(y[:, k])
            blur = rotational_blur(x[ok, k:k + 1], y[ok, k:k + 1], visit.target_x[k:k + 1],
                                   visit.target_y[k:k + 1], droll_deg)
            per_star = (None if blur is None else
                        [blur[:, j, 0, :] for j in range(int(ok.sum()))])
            fit = fit_frame(np.asarray(cube[k], dtype=float), x[ok, k], y[ok, k], psf,
                            variance_floor=float(variance[k]), blur=per_star, sky=True)
            fluxes[row, ok], covered[row, ok] = fit.flux, fit.covered
        return fluxes, covered

    if workers > 1:
        psf.fill_bank()
    parts = parallel.split_frames(fits, len(index), 1, workers)
    fluxes, covered = (np.concatenate([p[i] for p in parts]) for i in range(2))
    with warnings.catch_warnings():  # a star fitted in no frame: NaN
        warnings.simplefilter("ignore", RuntimeWarning)
        return np.nanmedian(fluxes, axis=0), np.median(covered, axis=0)


class _SkyCorrected:
    """The cube minus the model of ``stars`` and minus each frame's sky residual (measured
    against the whole model), read frame by frame: what the PSF and the fluxes are fitted
    on from the second iteration on."""

    def __init__(self, cube: NDArray, model: FieldModel, stars: Sequence[int]):
        self.cube, self.model, self.stars = cube, model, list(stars)
        self.shape = cube.shape
        self.excluded = getattr(cube, "excluded", None)  # bad frames: no PSF is built on them

    def __getitem__(self, k: int) -> NDArray[np.float64]:
        frame = np.asarray(self.cube[k], dtype=float)
        whole = self.model.render(slice(k, k + 1))[0]
        sky = sky_residual((frame - whole)[None])[0]
        part = self.model.render(slice(k, k + 1), self.stars)[0] if self.stars else 0.0
        return frame - part - sky


def _neighbour_cores(model: FieldModel, shape: tuple[int, int]
                     ) -> Callable[[int], NDArray[np.bool_]]:
    """``exclude`` for :meth:`EmpiricalPsf.from_visit`: the pixels of frame k within
    :data:`CORE_RADIUS` of every star but the target brighter than :data:`CORE_MIN_FLUX`
    of it."""
    flux = np.asarray(model.flux, dtype=float)
    flux = flux if flux.ndim == 1 else np.nanmedian(flux, axis=1)
    bright = np.flatnonzero(flux >= CORE_MIN_FLUX * flux[0])
    bright = bright[bright != 0]
    yy, xx = np.indices(shape)

    def cores(k: int) -> NDArray[np.bool_]:
        out = np.zeros(shape, dtype=bool)
        for j in bright:
            x, y = model.x[j, k], model.y[j, k]
            if np.isfinite(x) and np.isfinite(y):
                # on the core's box (a pixel wider: every pixel left out is farther than
                # CORE_RADIUS), not the whole frame
                box = (slice(max(int(np.floor(y - CORE_RADIUS)) - 1, 0),
                             max(int(np.ceil(y + CORE_RADIUS)) + 2, 0)),
                       slice(max(int(np.floor(x - CORE_RADIUS)) - 1, 0),
                             max(int(np.ceil(x + CORE_RADIUS)) + 2, 0)))
                out[box] |= (xx[box] - x) ** 2 + (yy[box] - y) ** 2 <= CORE_RADIUS ** 2
        return out

    return cores


def _catalogue_extras(visit: Visit, stars: StarList, reach: float
                      ) -> tuple[NDArray, NDArray, NDArray]:
    """Catalogue stars not among ``stars`` whose light can reach the field (within
    ``reach`` pixels of the field's edge at some frame): positions (m, n_frames) from the
    catalogue and the roll (the visit's :class:`~archi.geometry.SkyTransform`), and their
    magnitudes."""
    cat = visit.catalogue
    if cat is None or len(cat) == 0:
        empty = np.zeros((0, visit.n_frames))
        return empty, empty, np.zeros(0)
    rows = np.setdiff1d(np.arange(len(cat)), stars.catalogue_row[stars.catalogue_row >= 0])
    x, y = catalogue_positions(visit, np.arange(visit.n_frames))
    x, y = x[rows], y[rows]
    near = (np.hypot(x - FIELD_CENTRE[0], y - FIELD_CENTRE[1])
            <= FIELD_RADIUS + reach).any(axis=1) & np.isfinite(cat.mag[rows])
    return x[near], y[near], cat.mag[rows][near]


def _model_fluxes(fitted: NDArray, covered: NDArray, mag: NDArray, target_flux: float,
                  target_mag: float) -> NDArray:
    """Fitted fluxes where enough of a star's PSF is on the field, else (stars outside it)
    the target's flux scaled by the catalogue magnitudes; never negative."""
    from_mag = target_flux * 10 ** (-0.4 * (mag - target_mag))
    use_fit = (covered >= MIN_COVERED) & np.isfinite(fitted)
    flux = np.where(use_fit, fitted, np.where(np.isfinite(from_mag), from_mag, 0.0))
    return np.clip(np.nan_to_num(flux), 0.0, None)


def field_model(visit: Visit, stars: StarList, tracks: Tracks,
                psf: EmpiricalPsf | None = None, iterations: int = PSF_ITERATIONS,
                psf_radius: int = PSF_RADIUS, psf_frames: int = PSF_FRAMES, workers: int = 1
                ) -> FieldModel:
    """The field model of a visit: its tracked ``stars`` (rows 0..n-1, the same order) and
    every other catalogue star whose light can reach the field (after them), fluxes fitted
    on the images.

    The visit's PSF is the median of target-centred cut-outs at many roll angles; the
    neighbours' halos, present at every roll, would stay in its wings (measured on the demo:
    twice the true light 30-60 px out). So the PSF is rebuilt ``iterations`` times from
    the frames with every other star's model subtracted. ``workers``: processes sharing
    the frames of each fit.
    """
    droll = roll_per_exposure(visit)
    usable = np.isfinite(np.asarray(visit.cube[first_good_frame(visit.cube)]))  # a lost frame 0
    psf = psf or EmpiricalPsf.from_visit(visit, psf_radius, psf_frames,
                                         structure_beyond=WING_STRUCTURE_RADIUS)
    ex, ey, emag = _catalogue_extras(visit, stars, float(psf.radius))
    x, y = np.vstack([tracks.x, ex]), np.vstack([tracks.y, ey])
    mag = np.concatenate([stars.mag, emag])
    model = None
    for _ in range(iterations + 1):
        if model is not None:
            others = list(range(1, model.n_stars))
            if workers > 1:  # the renderer's stamps, made once rather than in each process
                model.psf.phase_stamps()
            cleaned = replace(visit, cube=_SkyCorrected(visit.cube, model, others))
            psf = EmpiricalPsf.from_visit(cleaned, psf_radius, psf_frames,
                                          exclude=_neighbour_cores(model, visit.cube.shape[1:]),
                                          turn_deg=field_turn(visit), workers=workers,
                                          structure_beyond=WING_STRUCTURE_RADIUS)
            model.psf.release_bank()  # memory: no more fits with the older PSF
        fitted, covered = fit_fluxes(visit, x, y, psf, droll, workers=workers)
        target_mag = mag[0] if np.isfinite(mag[0]) else np.nan
        flux = _model_fluxes(fitted, covered, mag, float(fitted[0]), target_mag)
        model = FieldModel(psf, x, y, visit.target_x, visit.target_y, flux, droll,
                           tuple(visit.cube.shape[1:]), usable)
    return model


def star_fluxes(visit: Visit, tracks: Tracks, psf: EmpiricalPsf | None = None,
                n_frames: int = 8) -> NDArray[np.float64]:
    """Every tracked star's flux [e per stacked image], fitted with the visit's PSF on
    ``n_frames`` frames (0 where it cannot be fitted): one brightness scale for every star,
    whichever way it was found (catalogue or image)."""
    psf = psf or EmpiricalPsf.from_visit(visit)
    fitted, _ = fit_fluxes(visit, tracks.x, tracks.y, psf, roll_per_exposure(visit), n_frames)
    return np.clip(np.nan_to_num(fitted), 0.0, None)


def model_field(visit: Visit, stars: StarList, tracks: Tracks, options, cosmics=None,
                workers: int = 1, psf: EmpiricalPsf | None = None
                ) -> tuple[StarList, Tracks, FieldModel]:
    """The stars, the field model, and the tracks it makes possible.

    Stars found only in the image are vetted against the first model
    (:func:`archi.vetting.vet_image_stars`: lobes of known stars dropped, positions
    refined). The PSF cleaned of the neighbours' light (:func:`field_model`) tracks the
    stars better than the first one: ``dynam`` stars are tracked again with it, then fixed
    in the turning field (:func:`archi.astrometry.rigid_tracks`, about the DRP's centroid
    of the target), and the fluxes fitted again at those positions. ``psf``: a cleaned PSF
    already built (the model of an earlier call), used as it is."""
    from archi.astrometry import rigid_tracks
    from archi.track import track_stars
    from archi.vetting import vet_image_stars

    first = (field_model(visit, stars, tracks, workers=workers) if psf is None else
             field_model(visit, stars, tracks, psf=psf, iterations=0, workers=workers))
    vetted = vet_image_stars(visit, stars, first, options)
    dynam = any(options.star_tracking(j) == "dynam" for j in range(vetted.n_stars))
    if dynam or vetted is not stars:
        tracks = track_stars(visit, vetted, options, psf=first.psf, cosmics=cosmics,
                             workers=workers)
    if dynam:
        tracks = rigid_tracks(tracks, field_turn(visit), visit.target_x, visit.target_y)
    return vetted, tracks, field_model(visit, vetted, tracks, psf=first.psf,
                                       iterations=FINAL_ITERATIONS, workers=workers)
