"""The Python entry point, home of the whole-visit steps: every step of the pipeline as a
function, usable in a notebook.

    from archi.api import load_visit, prepare, optimize_factors, extract
    from archi.options import Options

    options = Options(method="circle", initial_detect="fits", detect_mode="dynam")
    visit = load_visit("PR140063_TG002401_V0300", options)
    prepared = prepare(visit, options)                 # stars and their tracks
    result = optimize_factors(visit, prepared)         # factor grid, extensions, fine tune
    curves = extract(visit, prepared, result.factors)  # light curves of every star

The workflow runs the same steps as separate jobs: ``prepare``, the factor search's jobs
(:mod:`archi.search`) and ``extract`` (:func:`archi.pipeline.extract_job`); or, with
``search_jobs: visit``, one job per visit (:func:`archi.pipeline.process_visit`, which
:func:`archi.pipeline.run`, the whole visit in one call with its files, also calls). Their
``workers`` argument splits the frames of the costly passes among forked processes (the
same results). The search's rules are in :mod:`archi.optimize`, its runs in
:mod:`archi.runs` (re-exported here: :func:`aperture_for`, :func:`build_apertures`,
:func:`measure`, ...).
"""

from __future__ import annotations

import dataclasses
import math
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from archi import parallel
from archi.astrometry import measure_sky_transform, warn_astrometry
from archi.cdpp_table import CdppTable
from archi.contamination import RawSumsReader, neighbours_light_in_sums
from archi.cosmics import CosmicHits, find_cosmics, find_cosmics_in_residuals
from archi.detect import detect_stars
from archi.factors import round_factor
from archi.fieldfit import model_field, star_fluxes
from archi.fieldimage import measure_residual_sky
from archi.framequality import FLUX_OUTLIER, assess_frames, masked_cube
from archi.io import read_visit
from archi.io.factors_file import optimized_factors_for
from archi.metrics import NoiseMetric
from archi.noise import INVALID_CDPP
from archi.optimize import (
    choose_every_star,
    decide_round,
    fine_tune_plan,
    round_factors,
    search_warnings,
    searched_stars,
)
from archi.options import Options
from archi.photometry import (
    ApertureSums,
    cosmics_in_apertures,
    flux_errors,
    noise_per_pixel,
)
from archi.prepared import Prepared
from archi.psf import EmpiricalPsf
from archi.psfphot import CHUNK_FRAMES, psf_photometry, psf_rows, visit_psf_photometry
from archi.runs import (
    MeasuredRuns,
    aperture_for,
    build_apertures,
    cdpp_table,
    factor_table,
    measure,
    measure_runs,
    metric_for,
    score_runs,
    star_cdpp,
)
from archi.stars import (
    FLAG_BAD_FRAME,
    FLAG_COSMIC,
    FLAG_FLUX_OUTLIER,
    FLAG_NOT_MEASURED,
    FLAG_OUT_OF_BOUNDS,
    StarLightCurves,
    event_flags,
)
from archi.track import track_stars
from archi.variability import follow_varying_stars
from archi.visit import Visit, VisitContext

__all__ = ["OptimizationResult", "aperture_for", "build_apertures", "cdpp_table", "extract",
           "factor_table", "load_visit", "measure", "measure_runs", "optimize_factors",
           "prepare"]


def load_visit(folder: str | Path, options: Options, layout: str = "auto") -> Visit:
    """Read a visit with the DRP light curve named by ``options.official_curve``."""
    return read_visit(folder, layout=layout, aperture=options.official_curve)


FIRST_ASTROMETRY_CHANGE = 0.3
"""[pixel] The transform measured with the visit's first PSF (positions off by up to
~0.2 px at the field's edge: :func:`archi.astrometry.measure_sky_transform`) replaces the
assumed one for detection when it moves some position by more; the field model's PSF then
measures it again."""


def prepare(visit: Visit, options: Options, layout: str = "auto", workers: int = 1
            ) -> Prepared:
    """Measure the catalogue-to-pixel transform (:func:`archi.astrometry.
    measure_sky_transform`: every catalogue position and prediction follows it; its
    warnings are raised here), detect the stars (``initial_detect``) and track them
    (``detect_mode``); with ``decontaminate``, model the field
    (:func:`archi.contamination.model_field`: the tracks of ``dynam`` stars get better with
    it, stars found only in the image are vetted against it: :mod:`archi.vetting`). Every
    star's brightness is then its fitted flux [e], whichever way it was found.

    ``workers`` > 1: the cosmic-ray search runs in a forked process while the stars are
    detected; the frames of the tracking, of the field model's fits and PSF cut-outs, its
    images, the PSF photometry, the residual cosmic-ray search and sky, and of the frames'
    quality are split among the workers (the same results).

    Bad frames (:mod:`archi.framequality`: lost, empty, half-read images, total-flux
    outliers) are found first and read as NaN by every step here, so that they move no
    track and enter no PSF or fit; ``Prepared.frames`` records them."""
    quality = assess_frames(visit.cube, options.effective_chunk, workers)
    if quality.excluded.any():
        warnings.warn(frames_warning(visit.visit_id.file_key, quality), stacklevel=2)
    visit = dataclasses.replace(visit, cube=masked_cube(visit.cube, quality))
    needs_psf = ("dynam" in options.initial_detect or "dynam" in options.detect_mode
                 or visit.catalogue is not None)

    def detection() -> tuple:
        psf = EmpiricalPsf.from_visit(visit) if needs_psf else None
        astrometry = measure_sky_transform(visit, psf, min_change=FIRST_ASTROMETRY_CHANGE)
        located = dataclasses.replace(visit, sky=astrometry.transform)
        return detect_stars(located, options, psf=psf), psf, astrometry

    def cosmic_rays() -> CosmicHits:
        return (find_cosmics(visit.cube, noise_per_pixel(visit), options.effective_chunk)
                if options.clean_cosmics else CosmicHits.empty())

    if workers > 1:
        # imported once here rather than in each forked process (measured: first prepare
        # of a 1000-frame visit with 2 workers 0.1 s faster, imports included)
        import cv2  # noqa: F401
        import scipy.ndimage  # noqa: F401
    (stars, psf, astrometry), cosmics = parallel.run_forked([detection, cosmic_rays], workers)
    visit = dataclasses.replace(visit, sky=astrometry.transform)
    tracks = track_stars(visit, stars, options, psf=psf, cosmics=cosmics, workers=workers)
    if psf is not None:  # memory: filled again only if the stars are detected again
        psf.release_bank()
    model = None
    if options.decontaminate:
        stars, tracks, model = model_field(visit, stars, tracks, options, cosmics, workers)
        visit, stars, tracks, model, astrometry = _measured_again(
            visit, options, stars, tracks, model, astrometry, psf, cosmics, workers)
        model.psf.phase_stamps()  # the renderer's stamps taken from the bank, not recomputed
        model.psf.release_bank()  # no more tracking or fits with its gradients (memory)
        # rendered once for the PSF fits that find the stars that vary, and again only if
        # some do (their fluxes then change)
        model = model.rendered(options.effective_chunk, workers)
        followed = _following_varying_stars(visit, model, cosmics, options.effective_chunk,
                                            workers)
        if followed is not model:
            model = followed.rendered(options.effective_chunk, workers)
        if options.clean_cosmics:  # searched again once the stars are removed (see there)
            cosmics = find_cosmics_in_residuals(visit.cube, model.images,
                                                noise_per_pixel(visit), workers=workers)
        flux = np.asarray(model.flux)[:stars.n_stars]
        brightness = flux if flux.ndim == 1 else np.median(flux, axis=1)
        sky = measure_residual_sky(visit.cube, model, cosmics, options.effective_chunk,
                                   workers)
    else:
        brightness, sky = star_fluxes(visit, tracks, psf), None
    warn_astrometry(astrometry)
    stars = dataclasses.replace(stars, brightness=brightness)
    return Prepared(visit.folder, layout, visit.visit_id.file_key, options, stars, tracks,
                    cosmics, model, astrometry, quality, sky)


def _following_varying_stars(visit: Visit, model, cosmics, chunk: int, workers: int = 1):
    """The field model with per-frame fluxes for the stars that vary
    (:mod:`archi.variability`), from a PSF fit of every star in every frame."""
    fit = psf_photometry(visit.cube, model, noise_per_pixel(visit), cosmics,
                         chunk_frames=min(CHUNK_FRAMES, chunk), workers=workers)
    return follow_varying_stars(model, fit.flux, fit.flux_err)[0]


def _measured_again(visit: Visit, options: Options, stars, tracks, model, astrometry,
                    psf, cosmics, workers: int) -> tuple:
    """The catalogue-to-pixel transform measured again with the field model's PSF (the
    first holds the neighbours' light); when it changes, the catalogue stars placed, the
    stars tracked and the field modelled again with it. Returns (visit, stars, tracks,
    model, astrometry)."""
    astrometry = measure_sky_transform(visit, model.psf, start=astrometry)
    if astrometry.transform != visit.sky:
        visit = dataclasses.replace(visit, sky=astrometry.transform)
        if "fits" in options.detection.methods:
            stars = detect_stars(visit, options, psf=psf)
        tracks = track_stars(visit, stars, options, psf=model.psf, cosmics=cosmics,
                             workers=workers)
        stars, tracks, model = model_field(visit, stars, tracks, options, cosmics, workers,
                                           psf=model.psf)
    return visit, stars, tracks, model, astrometry


@dataclass(frozen=True)
class OptimizationResult:
    factors: dict[int, float]  # chosen factor per star
    cdpp: dict[int, float]  # its metric [ppm]
    valid: dict[int, bool]  # False: no run of this star stayed inside the field
    table: CdppTable  # every run (star, factor, cdpp, valid)
    # the chosen runs' aperture sums, one row per star (n_stars, n_frames): what
    # :func:`extract` would measure again with ``factors`` (None: not kept); ``kept``
    # tells the stars whose chosen run was measured (not one known to be invalid)
    sums: ApertureSums | None = None
    kept: np.ndarray | None = None  # (n_stars,) bool


def optimize_factors(visit: Visit, prepared: Prepared, metric: NoiseMetric | None = None,
                     workers: int = 1) -> OptimizationResult:
    """archi's search, in process (:mod:`archi.optimize`): the factor grid, range extensions
    for stars whose best factor is at the top edge, then the circle fine tune. The same
    runs as the workflow's per-factor jobs, each round (every star, every factor) measured
    in one pass over the cube, its frames split among ``workers`` processes. The chosen
    runs' sums are kept (``sums``), so that :func:`extract` need not measure them again:
    every run's sums stay in memory until the choice (runs x frames x 17 bytes, 5 MB for
    300 runs of 1000 frames)."""
    options = prepared.options
    rounds: list[MeasuredRuns] = []
    tables: list[CdppTable] = []

    def measure_round(factors: Mapping[int, Sequence[float]]) -> CdppTable:
        rounds.append(measure_runs(visit, prepared, factors, workers))
        tables.append(score_runs(visit, prepared, rounds[-1], metric))
        return CdppTable.merge(tables)

    n_stars = prepared.stars.n_stars
    searched = searched_stars(options, n_stars)
    if not searched:  # every star by PSF fits (method psf): no mask to choose
        return OptimizationResult(*choose_every_star(CdppTable.empty(), options, n_stars),
                                  CdppTable.empty())
    grid = round_factors(options, 0)
    decision = decide_round(measure_round({j: grid for j in searched}), options, 0)
    while not decision.done:
        grid = round_factors(options, decision.next_round)
        table = measure_round({j: grid for j in decision.extend})
        decision = decide_round(table, options, decision.next_round)
    table = measure_round(fine_tune_plan(CdppTable.merge(tables), options))
    factors, cdpp, valid = choose_every_star(table, options, n_stars)
    for line in _search_warnings(prepared, factors, valid):
        warnings.warn(line, stacklevel=2)
    sums, kept = _chosen_sums(rounds, factors, n_stars, visit.n_frames)
    return OptimizationResult(factors, cdpp, valid, table, sums=sums, kept=kept)


def frames_warning(visit_key: str, quality) -> str:
    """The one line that says which frames a visit lost (:mod:`archi.framequality`)."""
    return (f"{visit_key}: {quality.describe()}; their FLUX is NaN (bad_frame) or flagged "
            "(flux_outlier), and they are left out of the search and the CDPP")


def _search_warnings(prepared: Prepared, factors: Mapping[int, float],
                     valid: Mapping[int, bool]) -> list[str]:
    """:func:`archi.optimize.search_warnings` of a prepared visit."""
    good = int(np.count_nonzero(~prepared.frame_quality().excluded))
    return search_warnings(prepared.visit_key, prepared.options, valid, factors, good)


def visit_warnings(prepared: Prepared, factors_path: str | Path) -> list[str]:
    """The warnings recorded in a visit's run info: its lost frames and the stars whose
    stored factor is a fallback (``valid: false`` in ``factors_path``)."""
    stored = optimized_factors_for(factors_path, prepared.visit_key).stars
    valid = {j: s.valid for j, s in stored.items()}
    factors = {j: math.nan if s.factor is None else s.factor for j, s in stored.items()}
    quality = prepared.frame_quality()
    lines = [frames_warning(prepared.visit_key, quality)] if quality.excluded.any() else []
    return lines + _search_warnings(prepared, factors, valid)


def _chosen_sums(rounds: Sequence[MeasuredRuns], factors: Mapping[int, float], n_stars: int,
                 n_frames: int) -> tuple[ApertureSums, np.ndarray]:
    """The sums of each star's run at its chosen factor (the first measured, as the table
    keeps it), and which stars have them (not those whose chosen run was not measured)."""
    row_of: dict[tuple[int, float], tuple[int, int]] = {}
    for r, measured in enumerate(rounds):
        for i, (j, f) in enumerate(measured.runs):  # the table's factors are rounded
            if measured.measured[i]:
                row_of.setdefault((j, round_factor(f)), (r, i))
    sums = _unmeasured(n_stars, n_frames)
    kept = np.zeros(n_stars, bool)
    for j in range(n_stars):
        at = row_of.get((j, factors.get(j)))
        if at is not None:
            r, i = at
            for name in ("flux", "area", "out_of_bounds"):
                getattr(sums, name)[j] = getattr(rounds[r].sums, name)[i]
            kept[j] = True
    return sums, kept


def _unmeasured(n_stars: int, n_frames: int) -> ApertureSums:
    """Sums of stars not measured: NaN, no area, out of bounds."""
    flux = np.full((n_stars, n_frames), np.nan)
    return ApertureSums(flux, np.zeros_like(flux), np.ones(flux.shape, bool))


def _reusable(search: OptimizationResult | None, factors: Mapping[int, float]) -> np.ndarray:
    """Which stars (every star of ``factors``, in order) the search measured at these very
    factors, so that their sums need no new pass."""
    if search is None or search.sums is None or search.kept is None:
        return np.zeros(len(factors), bool)
    return np.array([bool(search.kept[j]) and search.factors.get(j) == f
                     for j, f in factors.items()], bool)


def _sums_for(visit: Visit, prepared: Prepared, factors: dict[int, float], workers: int,
              search_result: OptimizationResult | None) -> ApertureSums:
    """The sums of every star at its factor: the search's where it measured them, one
    pass over the cube for the others (none for stars without a mask: factor NaN)."""
    reuse = _reusable(search_result, factors)
    if len(reuse) and reuse.all():
        return search_result.sums
    todo = {j: f for j, f in factors.items() if not reuse[j] and math.isfinite(f)}
    sums = (measure(visit, prepared, todo, workers)[0] if todo
            else _unmeasured(len(factors), visit.n_frames))
    if reuse.any():
        for name in ("flux", "area", "out_of_bounds"):
            getattr(sums, name)[reuse] = getattr(search_result.sums, name)[reuse]
    return sums


def _flags(visit: Visit, prepared: Prepared, sums: ApertureSums,
           cosmic: np.ndarray) -> np.ndarray:
    """Each star's FLAG per frame (:data:`archi.stars.FLAG_NAMES`): its mask out of
    bounds, a bad frame or an outlier frame (:mod:`archi.framequality`), its position
    predicted, a cosmic ray patched in its mask (``cosmic``), and the DRP's conditions of
    the frame decoded from EVENT."""
    quality = prepared.frame_quality()
    bits = [(sums.out_of_bounds, FLAG_OUT_OF_BOUNDS),
            (quality.unmeasurable[None, :], FLAG_BAD_FRAME),
            (~prepared.tracks.measured, FLAG_NOT_MEASURED),
            (((quality.problem & FLUX_OUTLIER) != 0)[None, :], FLAG_FLUX_OUTLIER),
            (cosmic, FLAG_COSMIC)]
    flag = np.zeros(sums.flux.shape, dtype=np.int32)
    for where, bit in bits:
        flag |= np.where(where, bit, 0).astype(np.int32)
    return flag | event_flags(visit.event)[None, :]


def extract(visit: Visit, prepared: Prepared, factors: Mapping[int, float],
            metric: NoiseMetric | None = None, workers: int = 1,
            search_result: OptimizationResult | None = None) -> StarLightCurves:
    """Light curves of every star with the given mask factors (frames split among
    ``workers`` processes: the same curves). With the ``search_result`` that chose these
    factors, its runs' sums are used instead of measuring those stars again (the same
    curves to rounding: the search summed each run among other runs); only the stars it
    did not measure at their factor take a pass over the cube.

    With a field model (``decontaminate``) FLUX is each star's own light; the mask's sum
    (``flux_raw``) and the neighbours' modelled light in it (``conta``) come with it, and
    the errors count the photon noise of all the light in the mask.

    ``psf`` stars have no mask (their factors are ignored): their rows are the field
    model's PSF fits (:mod:`archi.psfphot`, :func:`archi.psfphot.psf_rows`)."""
    options = prepared.options
    n = prepared.stars.n_stars
    psf = np.array([options.star_method(j) == "psf" for j in range(n)], bool)
    factors = {j: math.nan if psf[j] else float(factors[j]) for j in range(n)}
    apertures = build_apertures(visit, prepared, factors)
    reader = None  # with a model, the raw sums taken from the reads of the measuring pass
    if prepared.model is not None and not psf.all():
        reader = RawSumsReader(visit.cube, prepared.tracks, apertures, prepared.cosmics,
                               options.effective_chunk)
    sums = _sums_for(visit if reader is None else dataclasses.replace(visit, cube=reader),
                     prepared, factors, workers, search_result)
    raw, conta = sums.flux, None
    if reader is not None:
        raw = reader.sums().flux  # a pass of its own for frames the search's sums spared
        sky = prepared.residual_sky
        if sky is None:  # a prepared file from before it was stored
            sky = measure_residual_sky(visit.cube, prepared.model, prepared.cosmics,
                                       options.effective_chunk)
        conta = neighbours_light_in_sums(raw, sums.flux, sums.area, sky)
    errors = flux_errors(raw, sums.area, visit)
    if psf.any():
        sums, errors, raw, conta = psf_rows(psf, visit_psf_photometry(visit, prepared), sums,
                                            errors, raw, conta)
    quality = prepared.frame_quality()
    for values in (sums.flux, errors, raw, conta):  # lost frames: NaN, never a number
        if values is not None:
            values[:, quality.unmeasurable] = np.nan
    sums.out_of_bounds[:, quality.unmeasurable] = False  # the frame is to blame, not the mask
    fn = metric_for(options, metric)
    cdpp = np.array([star_cdpp(sums.flux[j], sums.out_of_bounds[j], visit.mjd_time, fn,
                               quality.excluded)[0] for j in range(n)])
    cdpp[cdpp == INVALID_CDPP] = np.nan  # not scored: no number at all
    if not options.uncertainties:
        errors = np.full_like(errors, np.nan)
    cosmic = cosmics_in_apertures(prepared.cosmics, prepared.tracks, apertures)
    return StarLightCurves(
        visit_key=prepared.visit_key, mjd_time=visit.mjd_time, bjd_time=visit.bjd_time,
        roll_angle=visit.roll_angle, stars=prepared.stars, tracks=prepared.tracks,
        flux=sums.flux, flux_err=errors, flag=_flags(visit, prepared, sums, cosmic),
        methods=tuple(options.star_method(j) for j in range(n)),
        factors=np.array([factors[j] for j in range(n)]),
        npix=np.where(psf, np.nan, np.nanmean(sums.area, axis=1)), cdpp=cdpp,
        options={**options.to_dict(), "visit_folder": str(visit.folder)},
        flux_raw=None if conta is None else raw, conta=conta,
        event=np.asarray(visit.event, np.int32), status=np.asarray(visit.status, np.int32),
        context=VisitContext.of(visit))
