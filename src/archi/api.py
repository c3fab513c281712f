"""The Python entry point: every step of the pipeline as a function, usable in a notebook.

    from archi.api import load_visit, prepare, optimize_factors, extract
    from archi.options import Options

    options = Options(method="circle", initial_detect="fits", detect_mode="dynam")
    visit = load_visit("PR140063_TG002401_V0300", options)
    prepared = prepare(visit, options)                 # stars and their tracks
    result = optimize_factors(visit, prepared)         # factor grid, extensions, fine tune
    curves = extract(visit, prepared, result.factors)  # light curves of every star

The workflow runs the same steps as separate jobs: ``prepare``, one ``cdpp_table`` per
factor, a selection (:mod:`archi.optimize`) and ``extract``; or, with ``search_jobs:
visit``, ``prepare``, ``optimize_factors`` and ``extract`` in one job. Their ``workers``
argument splits the frames of the costly passes among forked processes (the same results).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from archi import masks
from archi import optimize as opt
from archi import parallel
from archi import search
from archi.detect import detect_stars
from archi.fieldmodel import EmpiricalPsf
from archi.io import read_visit
from archi.noise import load_metric, score
from archi.options import Options
from archi.cosmics import CosmicHits, find_cosmics
from archi.photometry import (ApertureSums, aperture_photometry, flux_errors,
                              noise_per_pixel, surely_out_of_bounds)
from archi.prepared import Prepared
from archi.stars import (FLAG_DRP_STATUS, FLAG_NOT_MEASURED, FLAG_OUT_OF_BOUNDS,
                         StarLightCurves, Tracks)
from archi.track import track_stars
from archi.visit import Visit

if TYPE_CHECKING:  # annotations only: per-factor jobs do not import pandas
    import pandas as pd

Metric = Callable[[np.ndarray, np.ndarray], float]


def load_visit(folder: str | Path, options: Options, layout: str = "auto") -> Visit:
    """Read a visit with the DRP light curve named by ``options.official_curve``."""
    return read_visit(folder, layout=layout, aperture=options.official_curve)


def prepare(visit: Visit, options: Options, layout: str = "auto", workers: int = 1
            ) -> Prepared:
    """Detect the stars (``initial_detect``) and track them (``detect_mode``).

    ``workers`` > 1: the cosmic-ray search runs in a forked process while the stars are
    detected, and the tracking's frames are split among the workers (the same results)."""
    needs_psf = "dynam" in options.initial_detect or "dynam" in options.detect_mode

    def detection() -> tuple:
        psf = EmpiricalPsf.from_visit(visit) if needs_psf else None
        return detect_stars(visit, options, psf=psf), psf

    def cosmic_rays() -> CosmicHits:
        return (find_cosmics(visit.cube, noise_per_pixel(visit), options.effective_chunk)
                if options.clean_cosmics else CosmicHits.empty())

    if workers > 1:
        # imported once here rather than in each forked process (measured: first prepare
        # of a 1000-frame visit with 2 workers 0.1 s faster, imports included)
        import cv2  # noqa: F401
        import scipy.ndimage  # noqa: F401
    (stars, psf), cosmics = parallel.run_forked([detection, cosmic_rays], workers)
    tracks = track_stars(visit, stars, options, psf=psf, cosmics=cosmics, workers=workers)
    return Prepared(visit.folder, layout, visit.visit_id.file_key, options, stars, tracks,
                    cosmics)


def _star_regions(visit: Visit, prepared: Prepared) -> list:
    """Each star's region in the first frame (the seed of its shape masks)."""
    frame0 = np.asarray(visit.cube[0], dtype=float)
    return masks.star_regions(frame0, prepared.tracks.x[:, 0], prepared.tracks.y[:, 0],
                              brightness=np.clip(prepared.stars.brightness, 1e-9, None))


def aperture_for(prepared: Prepared, star: int, factor: float, regions: list | None = None
                 ) -> masks.Aperture:
    """The mask of ``star`` with ``factor`` (circle radius or shape layers)."""
    options = prepared.options
    if options.star_method(star) == "circle":
        reference = (_first_position(prepared, star) if options.aperture_mode == "archi"
                     else None)
        return masks.CircleAperture(float(factor), mode=options.aperture_mode,
                                    grid=options.grid, reference=reference)
    if regions is None:
        raise ValueError("shape masks need the stars' regions (see _star_regions)")
    return masks.ShapeAperture(regions[star], prepared.tracks.x[star, 0],
                               prepared.tracks.y[star, 0], int(round(factor)),
                               shift=options.shape_shift, grid=options.grid)


def _first_position(prepared: Prepared, star: int) -> tuple[float, float]:
    """The star's first tracked position [pixel] (archi builds its masks there), NaN if
    it has none."""
    x, y = prepared.tracks.x[star], prepared.tracks.y[star]
    finite = np.flatnonzero(np.isfinite(x) & np.isfinite(y))
    return (float(x[finite[0]]), float(y[finite[0]])) if len(finite) else (np.nan, np.nan)


def build_apertures(visit: Visit, prepared: Prepared, factors: Mapping[int, float]
                    ) -> list[masks.Aperture | None]:
    """One aperture per star (None for stars without a factor)."""
    needs_regions = any(prepared.options.star_method(j) == "shape" for j in factors)
    regions = _star_regions(visit, prepared) if needs_regions else None
    out: list[masks.Aperture | None] = [None] * prepared.stars.n_stars
    for j, factor in factors.items():
        if factor is not None and np.isfinite(factor):
            out[j] = aperture_for(prepared, j, factor, regions)
    return out


def measure(visit: Visit, prepared: Prepared, factors: Mapping[int, float], workers: int = 1
            ) -> tuple[ApertureSums, np.ndarray]:
    """Aperture sums and flux errors [e] of the stars in ``factors`` (frames split among
    ``workers`` processes)."""
    apertures = build_apertures(visit, prepared, factors)
    sums = photometry_in_parts(visit, prepared.tracks, apertures, prepared, workers)
    errors = flux_errors(sums.flux, sums.area, visit)
    return sums, errors


def _metric(options: Options, metric: Metric | None) -> Metric:
    return metric if metric is not None else load_metric(options.CDPP_type)


def star_cdpp(flux: np.ndarray, out_of_bounds: np.ndarray, time: np.ndarray,
              metric: Metric) -> tuple[float, bool]:
    """Noise metric of one star's light curve on its in-bounds frames, and whether the run
    is valid (archi: a mask out of bounds in any frame makes it invalid)."""
    good = ~out_of_bounds & np.isfinite(flux)
    valid = bool(good.all())
    value = score(metric, flux[good], time[good], valid=bool(good.sum() > 0))
    return value, valid


def cdpp_runs(visit: Visit, prepared: Prepared, factor: float | Mapping[int, float],
              stars: Sequence[int] | None = None, metric: Metric | None = None
              ) -> list[opt.Run]:
    """One photometry run -> the runs (star, factor, cdpp, valid) of ``stars`` (all), by
    star, as plain tuples (:func:`archi.optimize.write_runs` writes them without pandas)."""
    stars = sorted(set(range(prepared.stars.n_stars) if stars is None else stars))
    factors = ({j: float(factor[j]) for j in stars} if isinstance(factor, Mapping)
               else {j: float(factor) for j in stars})
    return factor_runs(visit, prepared, {j: [factors[j]] for j in stars}, metric)


def cdpp_table(visit: Visit, prepared: Prepared, factor: float | Mapping[int, float],
               stars: Sequence[int] | None = None, metric: Metric | None = None
               ) -> pd.DataFrame:
    """One photometry run -> CDPP table (star, factor, cdpp, valid) of ``stars`` (all)."""
    return opt.runs_table(cdpp_runs(visit, prepared, factor, stars, metric))


def engulfs_brighter_star(prepared: Prepared, factors: Mapping[int, float]) -> dict[int, bool]:
    """True for a circle that reaches the centre of a brighter star.

    Such a light curve is mostly the neighbour's, and its CDPP is low only because the
    brighter star's flux dilutes the fainter one's noise: archi's optimiser happily grows
    apertures over neighbours; here those runs are invalid, like masks out of the field.
    """
    options = prepared.options
    stars = prepared.stars
    x, y = prepared.tracks.x[:, 0], prepared.tracks.y[:, 0]
    out = {}
    for j, factor in factors.items():
        if options.star_method(j) != "circle":
            out[j] = False
            continue
        radius = float(factor) / options.grid
        d = np.hypot(x - x[j], y - y[j])
        brighter = stars.brightness > stars.brightness[j]
        out[j] = bool(np.any(brighter & (d < radius)))
    return out


@dataclass(frozen=True)
class OptimizationResult:
    factors: dict[int, float]  # chosen factor per star
    cdpp: dict[int, float]  # its metric [ppm]
    valid: dict[int, bool]  # False: no run of this star stayed inside the field
    table: pd.DataFrame  # every run (star, factor, cdpp, valid)
    # the chosen runs' aperture sums, one row per star (n_stars, n_frames): what
    # :func:`extract` would measure again with ``factors`` (None: not kept); ``kept``
    # tells the stars whose chosen run was measured (not one known to be invalid)
    sums: ApertureSums | None = None
    kept: np.ndarray | None = None  # (n_stars,) bool


@dataclass(frozen=True)
class MeasuredRuns:
    """Runs (star, factor) measured in one pass over the cube: ``sums`` has one row per
    run, in the order of ``runs``; runs known to be invalid beforehand were not measured
    (``measured`` False: flux NaN, out of bounds everywhere)."""

    runs: list[tuple[int, float]]
    sums: ApertureSums
    measured: np.ndarray  # (n_runs,) bool


def choose(table: pd.DataFrame) -> tuple[dict[int, float], dict[int, float], dict[int, bool]]:
    """Best factor per star; a star with no valid run takes its lowest-metric run
    computed on in-bounds frames (its out-of-bounds frames are flagged at extraction)."""
    best = opt.best_factors(table)
    factors, cdpp, valid = {}, {}, {}
    for row in best.itertuples():
        star = int(row.star)
        if row.valid:
            factors[star], cdpp[star], valid[star] = float(row.factor), float(row.cdpp), True
        else:
            runs = table[table.star == star].sort_values(["cdpp", "factor"])
            factors[star] = float(runs.factor.iloc[0])
            cdpp[star], valid[star] = float(runs.cdpp.iloc[0]), False
    return factors, cdpp, valid


def factor_table(visit: Visit, prepared: Prepared, factors: Mapping[int, Sequence[float]],
                 metric: Metric | None = None, workers: int = 1) -> pd.DataFrame:
    """CDPP table of every star of ``factors`` at each of its factors (star -> factors), all
    runs measured in one pass over the cube (the same numbers as one :func:`cdpp_table`
    per factor). ``workers`` > 1 splits the frames among that many processes
    (:mod:`archi.parallel`: same numbers, bit for bit)."""
    return _table(factor_runs(visit, prepared, factors, metric, workers))


def _table(runs: Sequence[opt.Run]) -> pd.DataFrame:
    """The CDPP table of runs, one row per (star, factor)."""
    return search.merge_tables([opt.runs_table(runs)])


def factor_runs(visit: Visit, prepared: Prepared, factors: Mapping[int, Sequence[float]],
                metric: Metric | None = None, workers: int = 1) -> list[opt.Run]:
    """:func:`factor_table` as plain runs (star, factor, cdpp, valid), in the order of
    ``factors``."""
    return score_runs(visit, prepared, measure_runs(visit, prepared, factors, workers), metric)


def measure_runs(visit: Visit, prepared: Prepared, factors: Mapping[int, Sequence[float]],
                 workers: int = 1) -> MeasuredRuns:
    """Aperture sums of every star of ``factors`` at each of its factors (star -> factors),
    all in one pass over the cube, its frames split among ``workers`` processes; runs
    known to be invalid (:func:`known_invalid`) are not measured."""
    runs = [(int(j), float(f)) for j, star_factors in factors.items() for f in star_factors]
    stars = np.array([j for j, _ in runs], dtype=np.int64)
    needs_regions = any(prepared.options.star_method(j) == "shape"
                        for j in set(stars.tolist()))
    regions = _star_regions(visit, prepared) if needs_regions else None
    apertures = [aperture_for(prepared, j, f, regions) for j, f in runs]
    tracks = prepared.tracks
    run_tracks = Tracks(x=tracks.x[stars], y=tracks.y[stars], measured=tracks.measured[stars])
    skip = known_invalid(visit, prepared, runs, run_tracks, apertures)
    if skip.all():
        flux = np.full((len(runs), visit.n_frames), np.nan)
        sums = ApertureSums(flux, np.zeros_like(flux), np.ones(flux.shape, bool))
    else:
        sums = photometry_in_parts(visit, run_tracks,
                                   [None if s else a for a, s in zip(apertures, skip)],
                                   prepared, workers)
        sums.out_of_bounds[skip] = True
    return MeasuredRuns(runs, sums, ~skip)


def known_invalid(visit: Visit, prepared: Prepared, runs: Sequence[tuple[int, float]],
                  tracks: Tracks, apertures: Sequence[masks.Aperture]) -> np.ndarray:
    """Runs (star, factor) that are invalid whatever their sums, so need not be measured:
    circles over a brighter star, or surely out of bounds (whole NaN or off-image pixels
    inside; :func:`archi.photometry.surely_out_of_bounds`); their CDPP is the penalty. The
    search's largest radii often reach the corners of the field of view. ``tracks`` and
    ``apertures``: one per run."""
    skip = surely_out_of_bounds(visit.cube, tracks.x, tracks.y, apertures)
    skip |= np.array([engulfs_brighter_star(prepared, {j: f})[j] for j, f in runs], bool)
    return skip


def score_runs(visit: Visit, prepared: Prepared, measured: MeasuredRuns,
               metric: Metric | None = None) -> list[opt.Run]:
    """The runs (star, factor, cdpp, valid) of measured sums."""
    fn = _metric(prepared.options, metric)
    sums = measured.sums
    rows = []
    for i, (j, f) in enumerate(measured.runs):
        value, valid = star_cdpp(sums.flux[i], sums.out_of_bounds[i], visit.mjd_time, fn)
        rows.append((j, f, value, valid and not engulfs_brighter_star(prepared, {j: f})[j]))
    return opt.checked_runs(rows)


def photometry_in_parts(visit: Visit, tracks: Tracks, apertures: Sequence[masks.Aperture | None],
                        prepared: Prepared, workers: int = 1) -> ApertureSums:
    """:func:`aperture_photometry` of the visit (chunks and cosmics of ``prepared``), its
    frames split among ``workers`` processes."""
    chunk = prepared.options.effective_chunk

    def part(frames: tuple[int, int]) -> Callable[[], ApertureSums]:
        return lambda: aperture_photometry(visit.cube, tracks, apertures, chunk_frames=chunk,
                                           cosmics=prepared.cosmics, frames=frames)

    ranges = parallel.frame_ranges(visit.n_frames, chunk, workers) or [(0, 0)]
    return ApertureSums.joined(parallel.run_forked([part(r) for r in ranges], workers))


def optimize_factors(visit: Visit, prepared: Prepared, metric: Metric | None = None,
                     workers: int = 1) -> OptimizationResult:
    """archi's search, in process (:mod:`archi.search`): the factor grid, range extensions
    for stars whose best factor is at the top edge, then the circle fine tune. The same
    runs as the workflow's per-factor jobs, each round (every star, every factor) measured
    in one pass over the cube, its frames split among ``workers`` processes. The chosen
    runs' sums are kept (``sums``), so that :func:`extract` need not measure them again:
    every run's sums stay in memory until the choice (runs x frames x 17 bytes, 5 MB for
    300 runs of 1000 frames)."""
    options = prepared.options
    stars = range(prepared.stars.n_stars)
    rounds: list[MeasuredRuns] = []
    tables: list[pd.DataFrame] = []

    def measure_round(factors: Mapping[int, Sequence[float]]) -> None:
        rounds.append(measure_runs(visit, prepared, factors, workers))
        tables.append(_table(score_runs(visit, prepared, rounds[-1], metric)))

    grid = search.round_factors(options, 0)
    measure_round({j: grid for j in stars})
    decision = search.decide_round(search.merge_tables(tables), options, 0)
    while not decision.done:
        next_round = decision.round_index + 1
        grid = search.round_factors(options, next_round)
        measure_round({j: grid for j in decision.extend})
        decision = search.decide_round(search.merge_tables(tables), options, next_round)
    measure_round(search.fine_tune_plan(search.merge_tables(tables), options))
    table = search.merge_tables(tables)
    factors, cdpp, valid = choose(table)
    sums, kept = _chosen_sums(rounds, factors, prepared.stars.n_stars, visit.n_frames)
    return OptimizationResult(factors, cdpp, valid, table, sums=sums, kept=kept)


def _chosen_sums(rounds: Sequence[MeasuredRuns], factors: Mapping[int, float], n_stars: int,
                 n_frames: int) -> tuple[ApertureSums, np.ndarray]:
    """The sums of each star's run at its chosen factor (the first measured, as the table
    keeps it), and which stars have them (not those whose chosen run was not measured)."""
    row_of: dict[tuple[int, float], tuple[int, int]] = {}
    for r, measured in enumerate(rounds):
        for i, (j, f) in enumerate(measured.runs):  # the table's factors are rounded
            if measured.measured[i]:
                row_of.setdefault((j, opt.round_factor(f)), (r, i))
    flux = np.full((n_stars, n_frames), np.nan)
    sums = ApertureSums(flux, np.zeros_like(flux), np.ones(flux.shape, bool))
    kept = np.zeros(n_stars, bool)
    for j in range(n_stars):
        at = row_of.get((j, factors.get(j)))
        if at is not None:
            r, i = at
            for name in ("flux", "area", "out_of_bounds"):
                getattr(sums, name)[j] = getattr(rounds[r].sums, name)[i]
            kept[j] = True
    return sums, kept


def _reusable(search: OptimizationResult | None, factors: Mapping[int, float]) -> np.ndarray:
    """Which stars (every star of ``factors``, in order) the search measured at these very
    factors, so that their sums need no new pass."""
    if search is None or search.sums is None or search.kept is None:
        return np.zeros(len(factors), bool)
    return np.array([bool(search.kept[j]) and search.factors.get(j) == f
                     for j, f in factors.items()], bool)


def extract(visit: Visit, prepared: Prepared, factors: Mapping[int, float],
            metric: Metric | None = None, workers: int = 1,
            search_result: OptimizationResult | None = None) -> StarLightCurves:
    """Light curves of every star with the given mask factors (frames split among
    ``workers`` processes: the same curves). With the ``search_result`` that chose these
    factors, its runs' sums are used instead of measuring those stars again (the same
    curves to rounding: the search summed each run among other runs); only the stars it
    did not measure at their factor take a pass over the cube."""
    options = prepared.options
    n = prepared.stars.n_stars
    factors = {j: float(factors[j]) for j in range(n)}
    reuse = _reusable(search_result, factors)
    if len(reuse) and reuse.all():
        sums = search_result.sums
    else:  # a pass over the cube for the others only
        sums, _ = measure(visit, prepared, {j: f for j, f in factors.items() if not reuse[j]},
                          workers)
        if reuse.any():
            for name in ("flux", "area", "out_of_bounds"):
                getattr(sums, name)[reuse] = getattr(search_result.sums, name)[reuse]
    errors = flux_errors(sums.flux, sums.area, visit)
    flag = np.zeros(sums.flux.shape, dtype=np.int32)
    flag |= np.where(sums.out_of_bounds, FLAG_OUT_OF_BOUNDS, 0).astype(np.int32)
    flag |= np.where(visit.status[None, :] != 0, FLAG_DRP_STATUS, 0).astype(np.int32)
    flag |= np.where(~prepared.tracks.measured, FLAG_NOT_MEASURED, 0).astype(np.int32)
    fn = _metric(options, metric)
    cdpp = np.array([star_cdpp(sums.flux[j], sums.out_of_bounds[j], visit.mjd_time, fn)[0]
                     for j in range(n)])
    if not options.uncertainties:
        errors = np.full_like(errors, np.nan)
    return StarLightCurves(
        visit_key=prepared.visit_key, mjd_time=visit.mjd_time, bjd_time=visit.bjd_time,
        roll_angle=visit.roll_angle, stars=prepared.stars, tracks=prepared.tracks,
        flux=sums.flux, flux_err=errors, flag=flag,
        methods=tuple(options.star_method(j) for j in range(n)),
        factors=np.array([factors[j] for j in range(n)]),
        npix=np.nanmean(sums.area, axis=1), cdpp=cdpp,
        options={**options.to_dict(), "visit_folder": str(visit.folder)})


@dataclass(frozen=True)
class RunOutputs:
    """Files written by :func:`run` (under ``out_dir``)."""

    lightcurves_fits: Path
    lightcurves_text: Path | None
    run_info: Path
    cdpp_table: Path
    factors: Path
    plots: list[Path]
    gif: Path | None


def run(folder: str | Path, options: Options, out_dir: str | Path, *, layout: str = "auto",
        optimize: bool = True, factors_file: str | Path | None = None,
        export_text: bool = True, show_results: bool = True, debug: bool = True,
        save_gif: bool = False, metric: Metric | None = None, workers: int = 1) -> RunOutputs:
    """A whole visit in one call, like archi's controller: prepare, optimise the factors
    (or take them from ``factors_file`` when ``optimize`` is False), extract, and write
    the light curves (FITS, text), the run info, the CDPP table, the optimised factors and
    the plots (and GIF) under ``out_dir``. ``workers``: processes that share the frames
    of the costly passes (tracking, the factor search, extraction)."""
    from archi import export, plots

    out = Path(out_dir)
    (out / "plots").mkdir(parents=True, exist_ok=True)
    visit = load_visit(folder, options, layout)
    prepared = prepare(visit, options, layout, workers)
    factors_path = Path(factors_file) if factors_file else out / "optimized_factors.yaml"
    if optimize:
        result = optimize_factors(visit, prepared, metric, workers)
        factors, table = result.factors, result.table
        opt.write_optimized_factors(
            factors_path, factors, methods=options.method, visit_id=prepared.visit_key,
            cdpp=result.cdpp, settings={"initial_detect": options.initial_detect,
                                        "detect_mode": options.detect_mode,
                                        "grid_bg": options.grid_bg})
    else:
        stored = opt.optimized_factors_for(factors_path, prepared.visit_key)
        missing = [j for j in range(prepared.stars.n_stars) if stored.factors.get(j) is None]
        if missing:
            from archi.errors import ConfigError
            raise ConfigError(f"{factors_path}: no factor for star(s) {missing} of "
                              f"{prepared.visit_key}; run the optimisation first")
        factors = {j: float(stored.factors[j]) for j in range(prepared.stars.n_stars)}
        table = opt.make_cdpp_table({}, {})  # no search was run
        result = None
    curves = extract(visit, prepared, factors, metric, workers,
                     search_result=result)
    cdpp_path = out / "cdpp_table.tsv"
    opt.write_cdpp_table(table, cdpp_path)
    fits_path = export.write_lightcurves_fits(curves, out / "lightcurves.fits")
    text_path = export.write_lightcurves_text(curves, out / "lightcurves.txt") \
        if export_text else None
    info = export.write_run_info(out / "run_info.yaml", visit_folder=visit.folder,
                                 options=options.to_dict(), lc=curves)
    figures: list[Path] = []
    if show_results:
        figures += plots.plot_star_lightcurves(curves, out / "plots")
        figures.append(plots.plot_field(visit, curves, out / "plots" / "field.png"))
        if len(table):
            figures.append(plots.plot_cdpp_vs_factor(table, out / "plots" / "cdpp_vs_factor.png",
                                                     chosen=factors))
    if debug:
        figures.append(plots.plot_target_vs_drp(
            curves, visit, out / "plots" / "target_vs_drp.png",
            official_curve=visit.reference_aperture, metric=_metric(options, metric)))
    gif = plots.save_gif(visit, curves, out / "star_tracking.gif") if save_gif else None
    return RunOutputs(fits_path, text_path, info, cdpp_path, factors_path, figures, gif)
