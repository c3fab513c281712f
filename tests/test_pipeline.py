"""The photometry of every star, measured against the truth of a simulated visit.

One realistic 260-frame visit (about 5 h, the default crowded field: a blended pair 14.6 px
apart, a transiting and a variable star, stars down to target+4.5 mag, a star crossing the
field edge) is simulated once for detection, tracking, blends and the transit; a sparse
field (most real fields are sparse) for the precision of isolated stars, whose noise in the
crowded field also carries the photon noise of the bright stars' halos.
"""

from __future__ import annotations

import numpy as np
import pytest

from archi import api
from archi.geometry import FIELD_CENTRE, FIELD_RADIUS
from archi.noise import k2_cdpp
from archi.options import Options
from archi.photometry import aperture_photometry
from archi.simulate import SimulationConfig, StarSpec, read_truth, simulate_visit
from archi.stars import FLAG_OUT_OF_BOUNDS, Tracks

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def sim(tmp_path_factory):
    paths = simulate_visit(SimulationConfig(n_frames=260, seed=11, layouts=("drp",)),
                           tmp_path_factory.mktemp("pipeline") / "visit")
    return paths, read_truth(paths.truth_path)


@pytest.fixture(scope="module")
def sparse(tmp_path_factory):
    """A sparse field (as most real ones are): the target and three isolated stars."""
    field = (StarSpec(65.0, 20.0, 1.0), StarSpec(70.0, 140.0, 2.0), StarSpec(60.0, 260.0, 3.0))
    paths = simulate_visit(SimulationConfig(n_frames=260, seed=11, layouts=("drp",),
                                            field=field),
                           tmp_path_factory.mktemp("sparse") / "visit")
    return read_truth(paths.truth_path), run_modes(paths)


MODES = {
    "fits/offsets": Options(initial_detect="fits", detect_mode="offsets"),
    "dynam/dynam": Options(initial_detect="dynam", detect_mode="dynam"),
}


def run_modes(paths) -> dict:
    """prepare + optimise + extract for the catalogue/offsets and image/dynam modes."""
    out = {}
    for name, options in MODES.items():
        visit = api.load_visit(paths.drp_folder, options)
        prepared = api.prepare(visit, options)
        result = api.optimize_factors(visit, prepared)
        out[name] = (visit, prepared, result, api.extract(visit, prepared, result.factors))
    return out


@pytest.fixture(scope="module")
def runs(sim):
    return run_modes(sim[0])


def match(truth, x0, y0) -> np.ndarray:
    """Index of the true star nearest each first-frame position."""
    d = np.hypot(truth.x[:, 0][None, :] - np.asarray(x0)[:, None],
                 truth.y[:, 0][None, :] - np.asarray(y0)[:, None])
    return np.argmin(d, axis=1)


def entirely_inside(truth, margin: float = 20.0) -> np.ndarray:
    r = np.hypot(truth.x - FIELD_CENTRE[0], truth.y - FIELD_CENTRE[1])
    return (r + margin <= FIELD_RADIUS).all(axis=1)


def isolated(truth, distance: float = 45.0) -> np.ndarray:
    """True stars (of the visible ones) with no other visible star within ``distance``."""
    visible = truth.stars["MAG"] <= truth.stars["MAG"][0] + 5
    d = np.hypot(truth.x[:, 0][:, None] - truth.x[:, 0][None, :],
                 truth.y[:, 0][:, None] - truth.y[:, 0][None, :])
    np.fill_diagonal(d, np.inf)
    return ~((d < distance) & visible[None, :]).any(axis=1)


def robust_scatter(values: np.ndarray) -> float:
    """Point-to-point scatter (robust to cosmic-ray outliers) of one sample."""
    d = np.diff(values[np.isfinite(values)])
    return float(1.4826 * np.median(np.abs(d - np.median(d))) / np.sqrt(2))


@pytest.mark.parametrize("initial_detect", ["fits", "dynam", "fits+dynam", "dynam+fits"])
def test_every_star_brighter_than_13_inside_the_field_is_found(sim, initial_detect):
    paths, truth = sim
    options = Options(initial_detect=initial_detect)
    visit = api.load_visit(paths.drp_folder, options)
    from archi.detect import detect_stars
    stars = detect_stars(visit, options)
    wanted = np.flatnonzero(entirely_inside(truth) & (truth.stars["MAG"] <= 13.0))
    assert len(wanted) >= 6
    for k in wanted:
        d = np.hypot(stars.x0 - truth.x[k, 0], stars.y0 - truth.y[k, 0])
        # measured at most 2.3e-5 px in every mode: a detection matched to a catalogue star
        # takes the catalogue's position, mapped from the sky (PIPE's formula)
        assert d.min() < 0.01, f"star {k} (G={truth.stars['MAG'][k]:.1f}) missed: {d.min():.2f}"
    # one detection per star: no two within the merge radius
    sep = np.hypot(stars.x0[:, None] - stars.x0[None], stars.y0[:, None] - stars.y0[None])
    np.fill_diagonal(sep, np.inf)
    assert sep.min() > 6.0
    assert np.hypot(stars.x0[0] - truth.x[0, 0], stars.y0[0] - truth.y[0, 0]) < 0.5


@pytest.mark.parametrize("mode", ["fits/offsets", "dynam/dynam"])
def test_no_spurious_star(runs, sim, mode):
    """Every star the pipeline reports is a true one: its first-frame position within 0.1 px
    of a simulated star (measured: at most 2.3e-5 px with fits/offsets, 0.031 px with
    dynam/dynam; image detection's candidates are vetted against the field model)."""
    _, truth = sim
    _, prepared, _, _ = runs[mode]
    for j in range(prepared.stars.n_stars):
        d = np.hypot(truth.x[:, 0] - prepared.tracks.x[j, 0],
                     truth.y[:, 0] - prepared.tracks.y[j, 0])
        assert d.min() < 0.1, (mode, j, d.min())


def test_blended_pair_is_two_stars_and_faint_stars_are_tracked(runs, sim):
    _, truth = sim
    visit, prepared, _, curves = runs["dynam/dynam"]
    notes = np.char.strip(truth.stars["NOTE"])
    pair = [i for i, n in enumerate(notes) if n.startswith("blended pair")]
    assert len(pair) == 2
    found = match(truth, prepared.stars.x0, prepared.stars.y0)
    for k in pair:
        j = np.flatnonzero(found == k)
        assert len(j) == 1
        assert np.hypot(prepared.stars.x0[j[0]] - truth.x[k, 0],
                        prepared.stars.y0[j[0]] - truth.y[k, 0]) < 0.01  # measured 2.3e-5
    # the target+4 mag star is measured in (nearly) every frame of the visit
    faint = int(np.flatnonzero(np.isclose(truth.stars["MAG"], truth.stars["MAG"][0] + 4))[0])
    j = int(np.flatnonzero(found == faint)[0])
    assert prepared.tracks.measured[j].mean() > 0.95
    rms = np.sqrt(np.mean((prepared.tracks.x[j] - truth.x[faint]) ** 2
                          + (prepared.tracks.y[j] - truth.y[faint]) ** 2))
    assert rms < 0.5


@pytest.mark.parametrize("mode", ["fits/offsets", "dynam/dynam"])
def test_tracking_of_isolated_stars(runs, sim, mode):
    _, truth = sim
    _, prepared, _, _ = runs[mode]
    found = match(truth, prepared.stars.x0, prepared.stars.y0)
    targets = [j for j, k in enumerate(found)
               if isolated(truth)[k] and entirely_inside(truth)[k]]
    assert len(targets) >= 2
    for j in targets:
        k = found[j]
        rms = np.sqrt(np.mean((prepared.tracks.x[j] - truth.x[k]) ** 2
                              + (prepared.tracks.y[j] - truth.y[k]) ** 2))
        # measured: 2e-5 px with offsets (the catalogue and the roll: exact here, the
        # mapping itself is checked by hand in test_sky_mapping.py), 0.004-0.009 px with
        # dynam (the field model's PSF fits, fixed in the turning field)
        assert rms <= 0.02, f"star {k}: rms {rms:.3f} px"


@pytest.mark.parametrize("mode", ["fits/offsets", "dynam/dynam"])
def test_isolated_stars_reach_their_noise_floor_and_errors_match(sparse, mode):
    truth, runs = sparse
    visit, prepared, result, curves = runs[mode]
    found = match(truth, prepared.stars.x0, prepared.stars.y0)
    assert sorted(found) == list(range(4))
    normalised = []
    for j, k in enumerate(found):
        if j == 0:
            continue
        good = (curves.flag[j] & FLAG_OUT_OF_BOUNDS) == 0
        flux = curves.flux[j]
        # divide out the injected signal, then compare the scatter with the theoretical floor
        relative = flux / truth.flux[k] * np.median(truth.flux[k])
        scatter = robust_scatter(relative[good])
        frames = truth.frames
        # photon noise of the star's light inside the aperture, not of its total flux
        variance = (np.median(flux[good]) + curves.npix[j] * (
            frames["BACKGROUND"] + frames["DARK"] + truth.nexp * frames["READ_NOISE"] ** 2))
        floor = float(np.sqrt(np.median(variance)))
        # 1.4: the CDPP (30-cadence means) picks among radii whose CDPPs differ by < 1 %
        # but whose point-to-point scatter differs by up to 7 %, and a robust scatter of 260
        # frames is itself uncertain by ~6 %; measured 1.09-1.34 x floor (1.15-1.23 with the
        # simulator's earlier noise draw), with and without decontamination alike
        assert scatter <= 1.4 * floor, f"star {k}: {scatter / floor:.2f} x floor"
        normalised.append(((flux - np.median(flux / truth.flux[k]) * truth.flux[k])
                           / curves.flux_err[j])[good])
    # FLUX_ERR against the scatter about the truth, all three stars pooled (780 frames: the
    # ratio is known to 2.5 %): within 0.9-1.1 as issue 18 asks. Measured 0.946 in both
    # modes (0.90 in another noise draw of this visit; FLUX_ERR has the photon, sky, dark
    # and read noise, not the noise of the sky level subtracted in each frame). With
    # decontaminate false it is 0.80: the DRP's background estimate is noisy.
    pooled = np.concatenate(normalised)
    assert 0.9 <= 1.0 / np.std(pooled[np.abs(pooled) < 5]) <= 1.1


def test_target_precision_matches_the_drp(runs):
    visit, prepared, result, curves = runs["fits/offsets"]
    drp = visit.lightcurves["DEFAULT"]
    ours = k2_cdpp(curves.flux[0], visit.mjd_time)
    theirs = k2_cdpp(drp.flux, visit.mjd_time)
    assert ours <= 1.10 * theirs


def test_stars_with_bright_neighbours_do_no_worse_than_true_positions(runs, sim):
    """Tracking: the same masks at the true positions give no better CDPP. Both curves hold
    the same neighbours' light, so this says nothing of contamination: that is
    test_contamination's (FLUX against each star's true own light, and its scatter against
    the noise floor)."""
    paths, truth = sim
    visit, prepared, result, curves = runs["fits/offsets"]
    found = match(truth, prepared.stars.x0, prepared.stars.y0)
    crowded = [j for j, k in enumerate(found) if j > 0 and not isolated(truth)[k]
               and entirely_inside(truth)[k]]
    assert crowded
    true_tracks = Tracks(x=truth.x[found], y=truth.y[found],
                         measured=np.ones(truth.x[found].shape, bool))
    apertures = api.build_apertures(visit, prepared, dict(enumerate(curves.factors)))
    reference = aperture_photometry(visit.cube, true_tracks, apertures)
    for j in crowded:
        ours = k2_cdpp(curves.flux[j], visit.mjd_time)
        ideal = k2_cdpp(reference.flux[j], visit.mjd_time)
        assert ours <= 1.05 * ideal, f"star {found[j]}: {ours:.0f} vs {ideal:.0f} ppm"


def test_the_injected_transit_is_recovered(runs, sim):
    _, truth = sim
    k = int(np.flatnonzero(np.char.strip(truth.stars["SIGNAL"]) == "transit")[0])
    days = truth.frames["MJD_TIME"] - truth.frames["MJD_TIME"][0]
    t0, duration, depth = (truth.stars[c][k] for c in ("T0", "DURATION", "DEPTH"))
    full = np.abs(days - t0) < 0.35 * duration
    out = np.abs(days - t0) > 0.6 * duration
    assert full.sum() > 10 and out.sum() > 50
    for mode in ("fits/offsets", "dynam/dynam"):
        visit, prepared, result, curves = runs[mode]
        j = int(np.flatnonzero(match(truth, prepared.stars.x0, prepared.stars.y0) == k)[0])
        flux = curves.flux[j]
        measured = 1 - np.median(flux[full]) / np.median(flux[out])
        assert measured == pytest.approx(depth, rel=0.05), mode
