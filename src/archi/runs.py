"""Home of the runs of the factor search: one star measured with one mask factor.

Building each run's aperture (:func:`aperture_for`, :func:`build_apertures`), measuring
many runs in one pass over the cube (:func:`measure`, :func:`measure_runs`,
:func:`photometry_in_parts`), the runs known to be invalid without measuring them
(:func:`known_invalid`, :func:`engulfs_brighter_star`) and scoring them into a CDPP table
(:func:`star_cdpp`, :func:`score_runs`, :func:`factor_table`, :func:`cdpp_table`).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from archi import masks, parallel
from archi.cdpp_table import CdppTable
from archi.contamination import OwnLightBoxes, run_contamination
from archi.fieldimage import ResidualCube
from archi.framequality import FrameSubset
from archi.metrics import NoiseMetric, load_metric, score
from archi.noise import INVALID_CDPP
from archi.options import Options
from archi.photometry import (
    ApertureSums,
    aperture_photometry,
    flux_errors,
    surely_out_of_bounds,
)
from archi.prepared import Prepared
from archi.stars import Tracks
from archi.visit import Visit


def metric_for(options: Options, metric: NoiseMetric | None = None) -> NoiseMetric:
    """``metric`` if given, else the metric named by ``options.CDPP_type``."""
    return metric if metric is not None else load_metric(options.CDPP_type)


def star_regions(visit: Visit, prepared: Prepared) -> list:
    """Each star's region in the first good frame (the seed of its shape masks; a lost
    frame 0 holds no star)."""
    first = prepared.frame_quality().first_good()
    image = np.asarray(visit.cube[first], dtype=float)
    return masks.star_regions(image, prepared.tracks.x[:, first], prepared.tracks.y[:, first],
                              brightness=np.clip(prepared.stars.brightness, 1e-9, None))


def aperture_for(prepared: Prepared, star: int, factor: float, regions: list | None = None
                 ) -> masks.Aperture:
    """The mask of ``star`` with ``factor`` (circle radius or shape layers); shape masks
    need the stars' ``regions`` (:func:`star_regions`)."""
    options = prepared.options
    if options.star_method(star) == "circle":
        reference = (_first_position(prepared, star) if options.aperture_mode == "archi"
                     else None)
        return masks.CircleAperture(float(factor), mode=options.aperture_mode,
                                    grid=options.grid, reference=reference)
    if regions is None:
        raise ValueError("shape masks need the stars' regions (see star_regions)")
    first = prepared.frame_quality().first_good()  # the frame of the regions
    return masks.ShapeAperture(regions[star], prepared.tracks.x[star, first],
                               prepared.tracks.y[star, first], int(round(factor)),
                               shift=options.shape_shift, grid=options.grid)


def _first_position(prepared: Prepared, star: int) -> tuple[float, float]:
    """The star's first tracked position [pixel] (archi builds its masks there), NaN if
    it has none."""
    x, y = prepared.tracks.x[star], prepared.tracks.y[star]
    finite = np.flatnonzero(np.isfinite(x) & np.isfinite(y))
    return (float(x[finite[0]]), float(y[finite[0]])) if len(finite) else (np.nan, np.nan)


def _regions_if_needed(visit: Visit, prepared: Prepared, stars: Sequence[int]) -> list | None:
    needs_regions = any(prepared.options.star_method(j) == "shape" for j in set(stars))
    return star_regions(visit, prepared) if needs_regions else None


def build_apertures(visit: Visit, prepared: Prepared, factors: Mapping[int, float]
                    ) -> list[masks.Aperture | None]:
    """One aperture per star (None for stars without a factor)."""
    regions = _regions_if_needed(visit, prepared, list(factors))
    out: list[masks.Aperture | None] = [None] * prepared.stars.n_stars
    for j, factor in factors.items():
        if factor is not None and np.isfinite(factor):
            out[j] = aperture_for(prepared, j, factor, regions)
    return out


def measured_cube(visit: Visit, prepared: Prepared) -> tuple:
    """What the runs are measured on, and the cosmic hits the photometry replaces: the cube,
    or with a field model the cube minus the model (hits replaced before the subtraction),
    whose sums are the stars' own light once each star's own model is added back
    (:func:`photometry_in_parts`)."""
    if prepared.model is None:
        return visit.cube, prepared.cosmics
    return ResidualCube(visit.cube, prepared.model, cosmics=prepared.cosmics,
                        sky_values=prepared.residual_sky), None


def photometry_in_parts(visit: Visit, tracks: Tracks, apertures: Sequence[masks.Aperture | None],
                        prepared: Prepared, workers: int = 1, stars: np.ndarray | None = None
                        ) -> ApertureSums:
    """:func:`aperture_photometry` of the visit (chunks and cosmics of ``prepared``), its
    frames split among ``workers`` processes. With a field model, of :func:`measured_cube`
    with each row's star's own modelled light added back: row i's sums are the own light
    of star ``stars[i]`` (default: star i)."""
    chunk = prepared.options.effective_chunk
    cube, cosmics = measured_cube(visit, prepared)
    boxes = None
    if prepared.model is not None:
        stars = np.arange(len(apertures)) if stars is None else stars
        boxes = OwnLightBoxes(prepared.model, stars, apertures)

    def part(frames: tuple[int, int]) -> Callable[[], ApertureSums]:
        return lambda: aperture_photometry(cube, tracks, apertures, chunk_frames=chunk,
                                           cosmics=cosmics, frames=frames, boxes=boxes)

    ranges = parallel.frame_ranges(visit.n_frames, chunk, workers) or [(0, 0)]
    sums = ApertureSums.joined(parallel.run_forked([part(r) for r in ranges], workers))
    return without_bad_frames(sums, prepared)


def without_bad_frames(sums: ApertureSums, prepared: Prepared) -> ApertureSums:
    """``sums`` with the frames that cannot be measured (:mod:`archi.framequality`) NaN
    and not out of bounds (the mask is not to blame), in place."""
    bad = prepared.frame_quality().unmeasurable
    if bad.any():
        sums.flux[:, bad] = np.nan
        sums.area[:, bad] = np.nan
        sums.out_of_bounds[:, bad] = False
    return sums


def measure(visit: Visit, prepared: Prepared, factors: Mapping[int, float], workers: int = 1
            ) -> tuple[ApertureSums, np.ndarray]:
    """Aperture sums and flux errors [e] of the stars in ``factors`` (frames split among
    ``workers`` processes)."""
    apertures = build_apertures(visit, prepared, factors)
    sums = photometry_in_parts(visit, prepared.tracks, apertures, prepared, workers)
    errors = flux_errors(sums.flux, sums.area, visit)
    return sums, errors


@dataclass(frozen=True)
class MeasuredRuns:
    """Runs (star, factor) measured in one pass over the cube: ``sums`` has one row per
    run, in the order of ``runs``; runs known to be invalid beforehand were not measured
    (``measured`` False: flux NaN, out of bounds everywhere)."""

    runs: list[tuple[int, float]]
    sums: ApertureSums
    measured: np.ndarray  # (n_runs,) bool
    # with a field model: each run's neighbours' light / own light (median over frames)
    contamination: np.ndarray | None = None


def measure_runs(visit: Visit, prepared: Prepared, factors: Mapping[int, Sequence[float]],
                 workers: int = 1) -> MeasuredRuns:
    """Aperture sums of every star of ``factors`` at each of its factors (star -> factors),
    all in one pass over the cube, its frames split among ``workers`` processes; runs
    known to be invalid (:func:`known_invalid`) are not measured."""
    runs = [(int(j), float(f)) for j, star_factors in factors.items() for f in star_factors]
    stars = np.array([j for j, _ in runs], dtype=np.int64)
    regions = _regions_if_needed(visit, prepared, stars.tolist())
    apertures = [aperture_for(prepared, j, f, regions) for j, f in runs]
    tracks = prepared.tracks
    run_tracks = Tracks(x=tracks.x[stars], y=tracks.y[stars], measured=tracks.measured[stars])
    skip = known_invalid(visit, prepared, runs, run_tracks, apertures)
    if skip.all():
        flux = np.full((len(runs), visit.n_frames), np.nan)
        sums = ApertureSums(flux, np.zeros_like(flux), np.ones(flux.shape, bool))
    else:
        kept = [None if s else a for a, s in zip(apertures, skip)]
        sums = photometry_in_parts(visit, run_tracks, kept, prepared, workers, stars)
        sums.out_of_bounds[skip] = True
    contamination = None
    if prepared.model is not None:
        contamination = run_contamination(prepared.model, prepared.tracks, stars, apertures,
                                          ~skip)
    return MeasuredRuns(runs, sums, ~skip, contamination)


def engulfs_brighter_star(prepared: Prepared, factors: Mapping[int, float]) -> dict[int, bool]:
    """True for a circle that reaches the centre of a brighter star.

    Such a light curve is mostly the neighbour's, and its CDPP is low only because the
    brighter star's flux dilutes the fainter one's noise: archi's optimiser happily grows
    apertures over neighbours; here those runs are invalid, like masks out of the field.
    With a field model too: the star's FLUX would then rest on the model of a brighter one.
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


def known_invalid(visit: Visit, prepared: Prepared, runs: Sequence[tuple[int, float]],
                  tracks: Tracks, apertures: Sequence[masks.Aperture]) -> np.ndarray:
    """Runs (star, factor) that are invalid whatever their sums, so need not be measured:
    circles over a brighter star, or surely out of bounds (whole NaN or off-image pixels
    inside; :func:`archi.photometry.surely_out_of_bounds`); their CDPP is the penalty. The
    search's largest radii often reach the corners of the field of view. ``tracks`` and
    ``apertures``: one per run."""
    usable = np.flatnonzero(~prepared.frame_quality().unmeasurable)  # a lost frame: no hint
    skip = surely_out_of_bounds(FrameSubset(visit.cube, usable), tracks.x[:, usable],
                                tracks.y[:, usable], apertures)
    skip |= np.array([engulfs_brighter_star(prepared, {j: f})[j] for j, f in runs], bool)
    return skip


def too_contaminated(prepared: Prepared, measured: MeasuredRuns) -> np.ndarray:
    """Runs whose circle reaches a brighter star's centre, and (with a field model) runs
    whose neighbours' light exceeds ``max_contamination`` times the star's own. Both: a
    circle over a brighter star can stay under the limit when that star sits near its
    rim, and its FLUX then rests on the model of a star brighter than itself."""
    over = np.array([engulfs_brighter_star(prepared, {j: f})[j] for j, f in measured.runs],
                    bool).reshape(-1)
    if measured.contamination is not None:
        over |= ~(measured.contamination <= prepared.options.max_contamination)
    return over


def star_cdpp(flux: np.ndarray, out_of_bounds: np.ndarray, time: np.ndarray,
              metric: NoiseMetric, excluded: np.ndarray | None = None) -> tuple[float, bool]:
    """Noise metric of one star's light curve on its in-bounds frames, and whether the run
    is valid (archi: a mask out of bounds in any frame makes it invalid). ``excluded``:
    bad frames (:attr:`archi.framequality.FrameQuality.excluded`), left out of both."""
    kept = np.ones(len(flux), bool) if excluded is None else ~np.asarray(excluded, bool)
    good = ~out_of_bounds & np.isfinite(flux) & kept
    value = score(metric, flux[good], time[good], valid=bool(good.sum() > 0))
    # a run the metric cannot score (too few frames, ...) is no better than any other
    return value, bool(good[kept].all()) and value != INVALID_CDPP


def score_runs(visit: Visit, prepared: Prepared, measured: MeasuredRuns,
               metric: NoiseMetric | None = None) -> CdppTable:
    """The CDPP table of measured runs, one row per run in their order."""
    fn = metric_for(prepared.options, metric)
    sums = measured.sums
    rejected = too_contaminated(prepared, measured)
    excluded = prepared.frame_quality().excluded
    rows = []
    for i, (j, f) in enumerate(measured.runs):
        value, valid = star_cdpp(sums.flux[i], sums.out_of_bounds[i], visit.mjd_time, fn,
                                 excluded)
        rows.append((j, f, value, valid and not rejected[i]))
    return CdppTable.from_runs(rows)


def factor_table(visit: Visit, prepared: Prepared, factors: Mapping[int, Sequence[float]],
                 metric: NoiseMetric | None = None, workers: int = 1) -> CdppTable:
    """CDPP table of every star of ``factors`` at each of its factors (star -> factors), all
    runs measured in one pass over the cube, one row per (star, factor), sorted (the same
    numbers as one :func:`cdpp_table` per factor). ``workers`` > 1 splits the frames among
    that many processes (:mod:`archi.parallel`: same numbers, bit for bit)."""
    measured = measure_runs(visit, prepared, factors, workers)
    return CdppTable.merge([score_runs(visit, prepared, measured, metric)])


def cdpp_table(visit: Visit, prepared: Prepared, factor: float | Mapping[int, float],
               stars: Sequence[int] | None = None, metric: NoiseMetric | None = None
               ) -> CdppTable:
    """One photometry run -> CDPP table of ``stars`` (all) at ``factor`` (one for all, or
    star -> factor)."""
    stars = sorted(set(range(prepared.stars.n_stars) if stars is None else stars))
    factors = ({j: [float(factor[j])] for j in stars} if isinstance(factor, Mapping)
               else {j: [float(factor)] for j in stars})
    return factor_table(visit, prepared, factors, metric)
