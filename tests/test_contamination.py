"""The field model's neighbours' light against the simulator's truth (issue 14).

The crowded scene (tests/data/crowded_scene.yaml): a G = 9 target, two blended pairs, a
bright star just outside the field, a transit on a star whose aperture is mostly the
target's light. The truth is each true star's noise-free light in the same circles,
rendered with the simulator's own PSF (archi.simulate.neighbours), not the fitted one.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from archi import api
from archi.contamination import RawSumsReader, decontaminate
from archi.masks import CircleAperture
from archi.options import Options
from archi.photometry import aperture_photometry
from archi.runs import too_contaminated
from archi.simulate import SimulationConfig, simulate_visit
from archi.simulate.neighbours import floor_light_in_circles, light_in_circles
from archi.simulate.truth import read_truth
from archi.stars import FLAG_OUT_OF_BOUNDS

SCENE = Path(__file__).parent / "data" / "crowded_scene.yaml"
RADIUS = 10.0  # [pixel] every star's circle in these tests
EVERY = 3  # truth on every third frame (photutils is slow)


@pytest.fixture(scope="module")
def crowded(tmp_path_factory):
    root = tmp_path_factory.mktemp("crowded")
    cfg = SimulationConfig.from_yaml(SCENE)
    sim = simulate_visit(cfg, root)
    options = Options(initial_detect="fits", detect_mode="dynam")
    visit = api.load_visit(sim.drp_folder, options)
    prepared = api.prepare(visit, options)  # decontaminate: the field model too
    truth = read_truth(root / "truth.fits")
    tracks, model = prepared.tracks, prepared.model
    apertures = [CircleAperture(RADIUS) for _ in range(tracks.n_stars)]
    result = decontaminate(visit.cube, model, tracks, apertures, cosmics=prepared.cosmics)
    frames = np.arange(0, visit.n_frames, EVERY)
    light = light_in_circles(truth, tracks.x, tracks.y, np.full(tracks.n_stars, RADIUS), frames)
    match = np.array([int(np.argmin(np.hypot(truth.x[:, 0] - x, truth.y[:, 0] - y)))
                      for x, y in zip(tracks.x[:, 0], tracks.y[:, 0])])
    own = light[match, np.arange(tracks.n_stars)]  # (n_stars, frames)
    neighbours = light.sum(axis=0) - own
    floor = floor_light_in_circles(truth, tracks.x, tracks.y, np.full(tracks.n_stars, RADIUS),
                                   frames)
    return dict(visit=visit, prepared=prepared, tracks=tracks, truth=truth, result=result, frames=frames,
                own=own, neighbours=neighbours, match=match, model=model,
                above_floor=neighbours - _neighbours_floor(floor, match))


def _neighbours_floor(floor, match):
    """The neighbours' flat PSF floor in each star's circle (n_stars, frames) [e]: sky-like
    light that the backgrounds take, not CONTA (0.2-2.3 % of the own light of G = 12-13
    stars here)."""
    return floor.sum(axis=0) - floor[match, np.arange(len(match))]


def _true_index(crowded, j):
    return int(crowded["match"][j])


def _mag(crowded, j):
    return float(crowded["truth"].stars["MAG"][_true_index(crowded, j)])


def _noise_floor(crowded, j):
    """Relative noise per frame of star j's own light: photon noise of all the light in its
    circle, sky, dark and read noise (from the truth), on the tested frames."""
    truth, frames = crowded["truth"], crowded["frames"]
    table = truth.frames
    sky = (np.asarray(table["BACKGROUND"], float) + np.asarray(table["DARK"], float)
           + np.asarray(table["READ_NOISE"], float) ** 2 * truth.nexp)[frames]
    own, neighbours = crowded["own"][j], crowded["neighbours"][j]
    return np.median(np.sqrt(own + neighbours + np.pi * RADIUS ** 2 * sky) / own)


def _far_from_brighter(crowded, j, limit=8.0):
    truth, i = crowded["truth"], _true_index(crowded, j)
    brighter = truth.stars["MAG"] < truth.stars["MAG"][i]
    d = np.hypot(truth.x[:, 0] - truth.x[i, 0], truth.y[:, 0] - truth.y[i, 0])
    return not np.any(brighter & (d < limit))


def test_tracks_follow_the_true_positions(crowded):
    """Tracked again with the cleaned PSF and fixed in the turning field: RMS against the
    true positions <= 0.1 px for every star G <= 12 (measured: 0.001-0.07 px)."""
    truth, tracks = crowded["truth"], crowded["tracks"]
    for j in range(tracks.n_stars):
        if _mag(crowded, j) > 12.0:
            continue
        i = _true_index(crowded, j)
        rms = np.hypot(np.std(tracks.x[j] - truth.x[i]), np.std(tracks.y[j] - truth.y[i]))
        bias = np.hypot(np.mean(tracks.x[j] - truth.x[i]), np.mean(tracks.y[j] - truth.y[i]))
        assert rms <= 0.1 and bias <= 0.05, (j, rms, bias)


def test_neighbours_light_matches_the_truth(crowded):
    """CONTA within 10 % of the true neighbours' light above their flat PSF floor in the
    same circle (median over frames), or within 0.5 % of the star's own light where that
    is larger, for every star G <= 12.5 at least 8 px from any brighter star (measured:
    within 4 % where the neighbours' light is over 5 % of the own, 0.1-0.4 % of the own
    light elsewhere). The floor (2.5 % of each star's light spread over 100 px, the real
    PSF's far wings) is sky to the field model, taken by the DRP's background and the
    fitted level: 0.1-3 % of the own light here; against the whole neighbours' light CONTA
    is up to 28 % low where that is small (stars far from the target)."""
    result, frames = crowded["result"], crowded["frames"]
    checked = 0
    for j in range(result.conta.shape[0]):
        if _mag(crowded, j) > 12.5 or not _far_from_brighter(crowded, j):
            continue
        model = np.median(result.conta[j, frames])
        true = np.median(crowded["above_floor"][j])
        own = np.median(crowded["own"][j])
        assert abs(model - true) <= max(0.10 * true, 0.005 * own), (j, model, true, own)
        checked += 1
    assert checked >= 10


def test_decontaminated_flux_is_the_stars_own_light(crowded):
    """FLUX / true own light in the circle: median within 2 % for every star G <= 12, where
    the raw sum is up to 2.3x it (measured: within 0.3 %)."""
    result, frames = crowded["result"], crowded["frames"]
    raw_excess = []
    for j in range(result.flux.shape[0]):
        if _mag(crowded, j) > 12.0:
            continue
        ratio = np.median(result.flux[j, frames] / crowded["own"][j])
        assert abs(ratio - 1.0) <= 0.02, (j, ratio)
        raw_excess.append(np.median(result.flux_raw[j, frames] / crowded["own"][j]))
    assert max(raw_excess) > 1.5  # the scene is crowded: some raw sums are mostly others'


def test_decontaminated_flux_scatters_near_its_noise_floor(crowded):
    """Scatter of FLUX against the true own light, relative to the noise floor, <= 1.3 for
    every star G <= 12 (issue 14 asks 1.5). Measured with 10 px circles on this scene:
    0.85-1.14 (1.26 with the PSF's frames spread in time rather than roll; 1.65 for a
    G = 11 star before cosmic-ray tracks over bright stars were searched for on the field
    model's residual: 6-sigma outliers)."""
    result, frames = crowded["result"], crowded["frames"]
    for j in range(result.flux.shape[0]):
        if _mag(crowded, j) > 12.0:
            continue
        scatter = np.std(result.flux[j, frames] / crowded["own"][j])
        assert scatter <= 1.3 * _noise_floor(crowded, j), (j, scatter / _noise_floor(crowded, j))


def test_transit_depth_from_the_decontaminated_flux(crowded):
    """The 1 % transit of the star 22 px from the target, whose circle holds a third as much
    of the target's light as its own: the depth from FLUX with a linear baseline (no
    decorrelation) is within 5 % of the injected one, as issue 14 asks (measured: 2.0 %
    deep; the depth's photon noise is ~1.3 %. It was 7-10 % shallow while the transiting
    star's core stayed in the PSF's median);
    the raw sum, whose contamination turns with the roll, scatters a hundred times more."""
    truth, result, visit = crowded["truth"], crowded["result"], crowded["visit"]
    i = int(np.flatnonzero(np.char.strip(truth.stars["SIGNAL"].astype(str)) == "transit")[0])
    j = int(np.flatnonzero(crowded["match"] == i)[0])
    depth_true = float(truth.stars["DEPTH"][i])
    t = (visit.mjd_time - visit.mjd_time[0])
    t0, duration = float(truth.stars["T0"][i]), float(truth.stars["DURATION"][i])
    inside = np.abs(t - t0) < 0.35 * duration
    outside = np.abs(t - t0) > 0.6 * duration

    def depth(flux):
        baseline = np.polyval(np.polyfit(t[outside], flux[outside], 1), t[inside])
        return 1.0 - np.mean(flux[inside] / baseline)

    assert depth(result.flux[j]) == pytest.approx(depth_true, rel=0.05)

    def scatter(flux):
        return np.std(flux[outside] / np.polyval(np.polyfit(t[outside], flux[outside], 1),
                                                 t[outside]))

    assert scatter(result.flux_raw[j]) > 30 * scatter(result.flux[j])


@pytest.fixture(scope="module")
def searched(crowded):
    """The whole pipeline on the crowded scene: the factor search on each star's own light,
    then the extraction; and the truth of each star's light in its chosen circle."""
    visit, prepared, truth = crowded["visit"], crowded["prepared"], crowded["truth"]
    result = api.optimize_factors(visit, prepared)
    curves = api.extract(visit, prepared, result.factors, search_result=result)
    radius = np.array([result.factors[j] for j in range(curves.n_stars)])
    frames = crowded["frames"]
    light = light_in_circles(truth, curves.tracks.x, curves.tracks.y, radius, frames)
    floor = floor_light_in_circles(truth, curves.tracks.x, curves.tracks.y, radius, frames)
    match = crowded["match"]
    own = light[match, np.arange(curves.n_stars)]
    neighbours = light.sum(axis=0) - own
    return dict(curves=curves, result=result, own=own, neighbours=neighbours,
                above_floor=neighbours - _neighbours_floor(floor, match))


def test_the_search_does_not_swallow_brighter_neighbours(crowded, searched):
    """Scored on its own light, no star G <= 12.5 gets a circle reaching a brighter star's
    centre, and no circle chosen as valid holds more neighbours' light than
    max_contamination x its own (archi's search grew star 1 of the demo to 25 px, 6x its
    own light); a star without any valid circle (pair 1's fainter star, 13 px from a
    brighter one) is one whose smallest circle is truly over the limit."""
    truth, curves = crowded["truth"], searched["curves"]
    limit = crowded["prepared"].options.max_contamination
    for j in range(curves.n_stars):
        i = _true_index(crowded, j)
        if truth.stars["MAG"][i] > 12.5:
            continue
        brighter = truth.stars["MAG"] < truth.stars["MAG"][i]
        d = np.hypot(truth.x[:, 0] - truth.x[i, 0], truth.y[:, 0] - truth.y[i, 0])
        radius = searched["result"].factors[j]
        assert not np.any(brighter & (d < radius)), (j, radius)
        true_ratio = np.median(searched["neighbours"][j]) / np.median(searched["own"][j])
        if searched["result"].valid[j]:
            assert true_ratio <= 1.1 * limit, (j, radius, true_ratio)
        elif not (curves.flag[j] & FLAG_OUT_OF_BOUNDS).any():  # not an edge star
            assert true_ratio > 0.9 * limit, (j, radius, true_ratio)


def test_pipeline_flux_is_each_stars_own_light(crowded, searched):
    """After the search and the extraction: FLUX / true own light in the chosen circle
    within 2 % (median; 3 % for a star without any valid circle, whose smallest one holds
    more of its neighbour's light than its own) and CONTA within 10 % of the
    truth above the neighbours' flat PSF floor or 0.5 % of the own light (measured: FLUX
    within 0.3 %, CONTA within 2.6 % or 0.4 % of the own light), for every star G <= 12
    (FLUX_RAW - CONTA - FLUX is the DRP's background residual x area)."""
    curves, frames = searched["curves"], crowded["frames"]
    for j in range(curves.n_stars):
        if _mag(crowded, j) > 12.0:
            continue
        own, true_conta = searched["own"][j], searched["above_floor"][j]
        tolerance = 0.02 if searched["result"].valid[j] else 0.03
        assert np.median(curves.flux[j, frames] / own) == pytest.approx(1.0, abs=tolerance), j
        model = np.median(curves.conta[j, frames])
        assert abs(model - np.median(true_conta)) <= max(0.1 * np.median(true_conta),
                                                         0.005 * np.median(own)), j


def test_without_decontamination_flux_is_the_masks_sum(crowded):
    """decontaminate: false keeps archi's FLUX (the mask's sum) and models nothing."""
    visit, prepared = crowded["visit"], crowded["prepared"]
    plain_options = prepared.options.replace(decontaminate=False)
    plain = api.prepare(visit, plain_options)
    assert plain.model is None
    factors = {j: 10.0 for j in range(plain.stars.n_stars)}
    curves = api.extract(visit, plain, factors)
    assert curves.conta is None and curves.flux_raw is None
    sums, _ = api.measure(visit, plain, factors)
    np.testing.assert_array_equal(curves.flux, sums.flux)


@pytest.mark.parametrize("limit, ratios, rejected", [
    (1.0, [0.0, 0.99, 1.0, 1.01, 5.0, np.nan], [False, False, False, True, True, True]),
    (0.3, [0.1, 0.3, 0.31], [False, False, True]),
])
def test_contamination_limit_decides_which_runs_are_valid(limit, ratios, rejected):
    """A run is invalid when its neighbours' light exceeds max_contamination x its own
    light, or cannot be measured (NaN); star 1's circles (8-13 px) stay clear of the
    brighter star 0, 40 px away."""
    prepared = _two_stars(limit, separation=40.0)
    measured = _runs_with_contamination(ratios)
    assert too_contaminated(prepared, measured).tolist() == rejected


def test_a_circle_over_a_brighter_star_is_invalid_under_the_limit_too():
    """Star 1's circles of 8-13 px against the brighter star 0, 10.5 px away: from 11 px
    on they reach its centre and are invalid, however little light they are measured to
    hold (a star near the rim can keep a circle under the limit)."""
    prepared = _two_stars(1.0, separation=10.5)
    measured = _runs_with_contamination([0.1] * 6)
    assert too_contaminated(prepared, measured).tolist() == [False] * 3 + [True] * 3


def _two_stars(limit: float, separation: float):
    """A prepared visit reduced to what the validity rules read: star 0 (the brighter)
    and star 1, ``separation`` px apart."""
    from types import SimpleNamespace

    x = np.array([[100.0], [100.0 + separation]])
    return SimpleNamespace(options=Options(max_contamination=limit),
                           stars=SimpleNamespace(brightness=np.array([1e6, 1e5])),
                           tracks=SimpleNamespace(x=x, y=np.full_like(x, 100.0)))


def _runs_with_contamination(ratios):
    """Runs of star 1 at 8, 9, ... px whose measured neighbours' light / own is ``ratios``."""
    from archi.photometry import ApertureSums
    from archi.runs import MeasuredRuns

    n = len(ratios)
    sums = ApertureSums(np.ones((n, 3)), np.ones((n, 3)), np.zeros((n, 3), bool))
    return MeasuredRuns([(1, 8.0 + i) for i in range(n)], sums, np.ones(n, bool),
                        np.array(ratios, float))


def test_own_light_matches_a_direct_sum_for_every_kind_of_mask(crowded):
    """A star's own modelled light in its mask, as the search adds it back (summed on a
    box that follows the star, moved by whole pixels): for exact and binary circles, for
    archi's own circles and shape masks (anchored to a reference position: a whole-pixel
    move keeps them exact), equal to the mask's weights times the star's rendered image,
    summed here directly on whole frames."""
    from archi.contamination import own_light
    from archi.masks import ShapeAperture
    from archi.segmentation import star_regions

    visit, prepared = crowded["visit"], crowded["prepared"]
    model, tracks = prepared.model, prepared.tracks
    j = 3
    frame0 = np.asarray(visit.cube[0], float)
    regions = star_regions(frame0, tracks.x[:, 0], tracks.y[:, 0],
                           brightness=np.clip(prepared.stars.brightness, 1e-9, None))
    masks = [CircleAperture(9.3), CircleAperture(9.0, mode="binary"),
             CircleAperture(9.0, mode="archi", reference=(tracks.x[j, 0], tracks.y[j, 0])),
             ShapeAperture(regions[j], tracks.x[j, 0], tracks.y[j, 0], 2)]
    frames = [0, 37, 111]
    for mask in masks:
        ours = own_light(model, tracks, [mask], j)[0]
        for k in frames:
            image = model.render(slice(k, k + 1), [j])[0]
            w, ix0, iy0 = mask.weights(tracks.x[j, k:k + 1], tracks.y[j, k:k + 1])
            h, wd = w.shape[1:]
            padded = np.pad(np.nan_to_num(image), ((h, h), (wd, wd)))
            patch = padded[iy0[0] + h:iy0[0] + 2 * h, ix0[0] + wd:ix0[0] + 2 * wd]
            assert ours[k] == pytest.approx(float((w[0] * patch).sum()), rel=1e-9), (mask, k)


def test_a_neighbours_transit_is_not_printed_into_the_target(crowded):
    """The field model follows the stars that vary (archi.variability): the target's 25 px
    circle holds 14 % as much of the transiting star's light as of its own, so a model with
    one flux per star would print a false 0.14 % dip into the target's FLUX (measured 0.12 %
    before); with the star's fitted flux followed frame by frame the dip is under 0.03 %
    (measured -0.02 %; the target's photon noise over the transit is ~0.005 %)."""
    truth, visit, prepared = crowded["truth"], crowded["visit"], crowded["prepared"]
    i = int(np.flatnonzero(np.char.strip(truth.stars["SIGNAL"].astype(str)) == "transit")[0])
    j = int(np.flatnonzero(crowded["match"] == i)[0])
    assert np.ndim(prepared.model.flux) == 2
    flux = np.asarray(prepared.model.flux)
    relative = flux / np.median(flux, axis=1)[:, None]
    varying = np.flatnonzero(np.ptp(relative, axis=1) > 0)
    assert j in varying and 0 not in varying  # the transiting star, not the steady target
    tracks = crowded["tracks"]
    apertures = [CircleAperture(25.0)] + [None] * (tracks.n_stars - 1)
    target = decontaminate(visit.cube, prepared.model, tracks, apertures,
                           cosmics=prepared.cosmics).flux[0]
    t = visit.mjd_time - visit.mjd_time[0]
    t0, duration = float(truth.stars["T0"][i]), float(truth.stars["DURATION"][i])
    inside = np.abs(t - t0) < 0.35 * duration
    outside = np.abs(t - t0) > 0.6 * duration
    baseline = np.polyval(np.polyfit(t[outside], target[outside], 1), t[inside])
    assert abs(1.0 - np.mean(target[inside] / baseline)) < 3e-4


def test_no_roll_periodic_error_in_the_flux(crowded):
    """The PSF is the median of frames spread evenly in roll, so what is left of the
    neighbours' light in it has no side: FLUX of stars G <= 12.5 (at least 8 px from any
    brighter star) shows no first or second harmonic of the roll above 0.8x its noise per
    frame (the noise alone gives about 0.25; measured 0.06-0.53. With the frames spread
    evenly in time instead, stars 22-50 px from the target had 0.94-1.28 in the first
    harmonic: the PSF's wings had a 2-6 % dipole 30-70 px out)."""
    result, frames = crowded["result"], crowded["frames"]
    roll = np.radians(np.asarray(crowded["truth"].frames["ROLL_ANGLE"], float)[frames])
    design = np.column_stack([np.ones_like(roll), np.sin(roll), np.cos(roll),
                              np.sin(2 * roll), np.cos(2 * roll)])
    for j in range(result.flux.shape[0]):
        if _mag(crowded, j) > 12.5 or not _far_from_brighter(crowded, j):
            continue
        ratio = result.flux[j, frames] / crowded["own"][j]
        coef, *_ = np.linalg.lstsq(design, ratio / np.median(ratio) - 1, rcond=None)
        amplitude = np.hypot(coef[1:4:2], coef[2:5:2]) / _noise_floor(crowded, j)
        assert np.all(amplitude <= 0.8), (j, amplitude)


class _CountingCube:
    """A cube that counts how often each frame is read (by slices, as the passes read)."""

    def __init__(self, cube):
        self.cube, self.shape = cube, cube.shape
        self.reads = np.zeros(cube.shape[0], int)

    def __len__(self) -> int:
        return self.shape[0]

    def __getitem__(self, key):
        if isinstance(key, slice):
            self.reads[key] += 1
        return self.cube[key]


def test_decontaminate_reads_each_frame_once_and_sums_the_data_in_the_mask(crowded):
    """FLUX_RAW, FLUX and CONTA come from one read of each frame (the fixture's numbers,
    bit for bit), and FLUX_RAW is the data (cosmic hits replaced) weighed by the circle's
    pixel overlaps, summed here directly: within 1e-12 relative (measured: 8e-16)."""
    visit, prepared, tracks = crowded["visit"], crowded["prepared"], crowded["tracks"]
    counting = _CountingCube(visit.cube)
    apertures = [CircleAperture(RADIUS) for _ in range(tracks.n_stars)]
    result = decontaminate(counting, prepared.model, tracks, apertures,
                           cosmics=prepared.cosmics)
    assert (counting.reads == 1).all()
    for name in ("flux", "flux_raw", "conta", "sky"):
        assert np.array_equal(getattr(result, name), getattr(crowded["result"], name)), name
    worst = 0.0
    for k in crowded["frames"][::4]:
        frame = np.array(visit.cube[k:k + 1], dtype=float)
        prepared.cosmics.patch(frame, k)
        for j in range(tracks.n_stars):
            w, ix0, iy0 = apertures[j].weights(tracks.x[j, [k]], tracks.y[j, [k]])
            h, wd = w.shape[1:]
            if ix0[0] < 0 or iy0[0] < 0 or ix0[0] + wd > 200 or iy0[0] + h > 200:
                continue  # the circle leaves the image: a direct sum needs no edge cases
            cut = frame[0, iy0[0]:iy0[0] + h, ix0[0]:ix0[0] + wd]
            direct = np.sum(np.where(np.isfinite(cut), cut, 0.0) * w[0])
            worst = max(worst, abs(result.flux_raw[j, k] - direct) / abs(direct))
    assert worst < 1e-12


def test_raw_sums_of_frames_not_read_are_measured_afterwards(crowded):
    """Frames a reader did not see (read by forked processes) are summed by ``sums()``:
    every frame's raw sums are those of a pass of their own over the cube, bit for bit."""
    visit, prepared, tracks = crowded["visit"], crowded["prepared"], crowded["tracks"]
    apertures = [CircleAperture(RADIUS) for _ in range(tracks.n_stars)]
    apertures[1] = None
    reader = RawSumsReader(visit.cube, tracks, apertures, prepared.cosmics, 16)
    reader[0:16], reader[40:56]
    sums = reader.sums()
    whole = aperture_photometry(visit.cube, tracks, apertures, 16, prepared.cosmics)
    for name in ("flux", "area", "out_of_bounds"):
        assert np.array_equal(getattr(sums, name), getattr(whole, name), equal_nan=True), name


def test_extraction_reads_each_frame_once(crowded):
    """api.extract with a field model: one read of each frame gives FLUX, FLUX_RAW and
    CONTA, those of :func:`decontaminate` with the same circles (to 1e-12 relative of
    FLUX_RAW; measured: 0) on the frames it measures."""
    visit, prepared = crowded["visit"], crowded["prepared"]
    counting = _CountingCube(visit.cube)
    curves = api.extract(replace(visit, cube=counting), prepared,
                         {j: RADIUS for j in range(prepared.stars.n_stars)})
    assert (counting.reads == 1).all()
    reference = crowded["result"]
    good = ~prepared.frame_quality().unmeasurable
    scale = np.abs(reference.flux_raw[:, good])
    for name in ("flux", "flux_raw", "conta"):
        difference = np.abs(getattr(curves, name)[:, good] - getattr(reference, name)[:, good])
        assert (difference <= 1e-12 * scale).all(), name
