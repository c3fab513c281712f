"""The Python API end to end: one call writes every output; options and metrics from YAML."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import yaml

from archi import api, pipeline, runs
from archi.io.lightcurves import read_lightcurves_fits
from archi.io.lightcurves_text import read_lightcurves_text
from archi.cdpp_table import CdppTable
from archi.errors import ConfigError
from archi.options import Options


@pytest.fixture(scope="module")
def outputs(small_visit_module, tmp_path_factory):
    out = tmp_path_factory.mktemp("run")
    options = Options(val_range=(10, 24), step=2, optimization_extensions=1)
    return out, pipeline.run(small_visit_module.drp_folder, options, out, save_gif=True)


@pytest.fixture(scope="module")
def small_visit_module(tmp_path_factory):
    from archi.simulate import SimulationConfig, simulate_visit
    return simulate_visit(SimulationConfig(n_frames=60, seed=7, layouts=("drp",)),
                          tmp_path_factory.mktemp("sim") / "visit")


def test_run_writes_every_output(outputs):
    out, files = outputs
    curves = read_lightcurves_fits(files.lightcurves_fits)
    assert curves.n_frames == 60 and curves.n_stars >= 7
    assert np.all(np.isfinite(curves.flux[0])) and np.all(curves.flux_err[0] > 0)
    text = read_lightcurves_text(files.lightcurves_text)
    assert np.allclose(text.flux, curves.flux, equal_nan=True)
    info = yaml.safe_load(files.run_info.read_text())
    assert len(info["stars"]) == curves.n_stars
    import imageio.v3 as iio
    gif = iio.imread(files.gif, index=None)  # frames evenly spread over the visit
    assert gif.ndim == 4 and 2 <= gif.shape[0] <= curves.n_frames
    names = {p.name for p in files.plots}
    assert {"star_0.png", "field.png", "cdpp_vs_factor.png", "target_vs_drp.png"} <= names
    factors = yaml.safe_load(files.factors.read_text())
    assert curves.visit_key in factors["visits"]


def test_stored_factors_are_reused_without_optimising(outputs, small_visit_module, tmp_path):
    out, files = outputs
    first = read_lightcurves_fits(files.lightcurves_fits)
    again = pipeline.run(small_visit_module.drp_folder,
                    Options(val_range=(10, 24), step=2, optimization_extensions=1),
                    tmp_path, optimize=False, factors_file=files.factors, show_results=False,
                    debug=False)
    second = read_lightcurves_fits(again.lightcurves_fits)
    assert np.array_equal(first.factors, second.factors)
    assert np.allclose(first.flux, second.flux, equal_nan=True)


def test_custom_metric_from_yaml(small_visit_module, tmp_path):
    metric_file = tmp_path / "my_metric.py"
    metric_file.write_text("import numpy as np\n"
                           "def mad_ppm(flux, time):\n"
                           "    rel = flux / np.median(flux)\n"
                           "    return float(1e6 * np.median(np.abs(np.diff(rel))))\n")
    config = tmp_path / "options.yaml"
    config.write_text(f"CDPP_type: {metric_file}:mad_ppm\nval_range: [12, 16]\nstep: 4\n")
    options = Options.from_mapping(yaml.safe_load(config.read_text()), source=str(config))
    visit = api.load_visit(small_visit_module.drp_folder, options)
    prepared = api.prepare(visit, options)
    table = api.cdpp_table(visit, prepared, 12.0, stars=[0])
    sums, _ = api.measure(visit, prepared, {0: 12.0})
    rel = sums.flux[0] / np.median(sums.flux[0])
    assert table.cdpp[0] == pytest.approx(1e6 * np.median(np.abs(np.diff(rel))))


@pytest.mark.parametrize("options, message", [
    ({"method": "square"}, "method 'square' is not one of circle, shape"),
    ({"method": "circle+shape+circle"}, "primary\\+secondary"),
    ({"initial_detect": "gaia"}, "initial_detect 'gaia'"),
    ({"detect_mode": "dynam+psf"}, "detect_mode 'dynam\\+psf'"),
    ({"grid_bg": 400}, "grid_bg must be 0 or an odd multiple of 200"),
    ({"val_range": [10, 1]}, "val_range must be \\[low, high\\]"),
    ({"val_range": 5}, "val_range must be a \\[low, high\\] pair"),
    ({"step": 0}, "step must be > 0"),
    ({"official_curve": "BEST"}, "official_curve 'BEST'"),
    ({"method": "shape", "step": 0.5}, "whole pixel layers"),
    ({"repeat_removal": 99}, "repeat_removal must be within 0-10"),
    ({"radius": 3}, "unknown option\\(s\\) radius"),
    ({"CDPP_type": "nowhere.py:f"}, "nowhere.py"),
])
def test_every_bad_option_gets_a_clear_error(options, message, small_visit_module):
    with pytest.raises(ConfigError, match=message) as err:
        opts = Options.from_mapping(options, source="my.yaml")
        runs.metric_for(opts, None)  # a metric spec is checked when it is loaded
    assert "\n" not in str(err.value)


@pytest.mark.parametrize("options", [
    Options(method="shape", val_range=(1, 4), step=1),
    Options(method="circle", grid_bg=600, aperture_mode="binary", val_range=(45, 75), step=15,
            fine_tune_circle=False),
    Options(method="circle", aperture_mode="archi", val_range=(16, 28), step=6,
            optimization_extensions=0),
    # one factor grid serves both kinds (as in archi): radii for the target, layers for the rest
    Options(method="circle+shape", val_range=(8, 24), step=8, fine_tune_circle=False,
            optimization_extensions=0),
], ids=["shape", "grid_bg-binary", "archi-circles", "circle+shape"])
def test_other_mask_kinds_run_end_to_end(options, small_visit_module):
    visit = api.load_visit(small_visit_module.drp_folder, options)
    prepared = api.prepare(visit, options)
    result = api.optimize_factors(visit, prepared)
    assert result.valid[0]
    curves = api.extract(visit, prepared, result.factors)
    assert curves.methods[0] == options.star_method(0)
    assert np.all(np.isfinite(curves.flux[0])) and curves.npix[0] > 50
    # the target's FLUX is its own light in its mask: the simulator's noise-free image of
    # the target alone, summed through the same mask's weights
    own = _true_light_in_mask(small_visit_module, visit, prepared, result.factors, star=0)
    # (measured 0.9985-0.9988 for every kind; the DRP's DEFAULT flux was the reference
    # before, within 20 %)
    assert np.median(curves.flux[0, ::6] / own) == pytest.approx(1.0, abs=0.005)


def _true_light_in_mask(sim, visit, prepared, factors, star, every=6):
    """Noise-free light [e] of the true star nearest ``star`` alone, through ``star``'s mask
    at its tracked positions, on every ``every``-th frame (the simulator's PSF and positions,
    :func:`archi.simulate.render.render_stars`)."""
    from types import SimpleNamespace

    from archi.runs import build_apertures
    from archi.simulate import read_truth
    from archi.simulate.psf import PixelPsf
    from archi.simulate.render import render_stars

    truth = read_truth(sim.truth_path)
    frames = np.arange(0, visit.n_frames, every)
    x, y = prepared.tracks.x[star, frames], prepared.tracks.y[star, frames]
    k = int(np.argmin(np.hypot(truth.x[:, 0] - x[0], truth.y[:, 0] - y[0])))
    alone = SimpleNamespace(dx=np.array([float(truth.stars["DX0"][k])]),
                            dy=np.array([float(truth.stars["DY0"][k])]), n_stars=1)
    table = truth.frames
    images, _ = render_stars(
        PixelPsf(), alone, truth.field_turn[frames], np.asarray(table["TARGET_X"], float)[frames],
        np.asarray(table["TARGET_Y"], float)[frames], truth.flux[k:k + 1, frames],
        -360.0 / 98.77 * truth.texptime / 60.0, True)
    images[:, ~np.isfinite(np.asarray(visit.cube[0]))] = 0.0
    aperture = build_apertures(visit, prepared, factors)[star]
    weights, ix0, iy0 = aperture.weights(x, y)
    out = np.zeros(len(frames))
    for n in range(len(frames)):
        h, w = weights[n].shape
        padded = np.pad(images[n], max(h, w))
        y0, x0 = iy0[n] + max(h, w), ix0[n] + max(h, w)
        out[n] = np.sum(weights[n] * padded[y0:y0 + h, x0:x0 + w])
    return out


def test_archi_circles_keep_their_first_frame_pixels(small_visit_module):
    """aperture_mode archi: each star's mask is its first-frame binary circle moved by whole
    pixels, so its pixel count never changes; binary circles re-drawn at every sub-pixel
    position gain and lose pixels as the field rolls."""
    areas = {}
    for mode in ("archi", "binary"):
        options = Options(method="circle", aperture_mode=mode)
        visit = api.load_visit(small_visit_module.drp_folder, options)
        prepared = api.prepare(visit, options)
        sums, _ = api.measure(visit, prepared, {j: 6.5 for j in range(prepared.stars.n_stars)})
        assert not sums.out_of_bounds[0].any()
        areas[mode] = [a[~oob] for a, oob in zip(sums.area, sums.out_of_bounds) if (~oob).any()]
    assert len(areas["archi"]) >= 3 and all(np.all(a == a[0]) for a in areas["archi"])
    assert any(np.ptp(a) > 0 for a in areas["binary"])


def test_prepare_shared_among_processes_gives_the_same_stars_tracks_and_hits(
        small_visit_module):
    """Cosmic rays searched beside the detection, tracking frames split in three at chunk
    boundaries (chunks of 16 frames), and the field model's fits, PSF cut-outs, images,
    PSF photometry, residual hits and sky split likewise: the same result, bit for bit,
    as one process."""
    options = Options(chunk_frames=16, initial_detect="dynam", detect_mode="dynam")
    visit = api.load_visit(small_visit_module.drp_folder, options)
    serial = api.prepare(visit, options)
    shared = api.prepare(visit, options, workers=3)
    assert shared.stars.n_stars == serial.stars.n_stars >= 3
    np.testing.assert_array_equal(shared.stars.x0, serial.stars.x0)
    for name in ("x", "y", "measured"):
        np.testing.assert_array_equal(getattr(shared.tracks, name),
                                      getattr(serial.tracks, name))
    for name in ("frame", "y", "x", "value"):
        np.testing.assert_array_equal(getattr(shared.cosmics, name),
                                      getattr(serial.cosmics, name))
    assert len(serial.cosmics.frame) > 0 and serial.tracks.measured.any()
    np.testing.assert_array_equal(shared.stars.brightness, serial.stars.brightness)
    np.testing.assert_array_equal(shared.frames.problem, serial.frames.problem)
    np.testing.assert_array_equal(shared.residual_sky, serial.residual_sky)
    np.testing.assert_array_equal(shared.model.psf.stamp, serial.model.psf.stamp)
    for name in ("x", "y", "flux", "images"):
        np.testing.assert_array_equal(getattr(shared.model, name), getattr(serial.model, name))
    assert serial.model.images.shape[0] == visit.n_frames and serial.residual_sky.any()


@pytest.mark.parametrize("method", ["circle", "circle+shape"])
def test_one_pass_factor_table_equals_one_run_per_factor(method, small_visit_module):
    """The per-visit search measures each round in one pass: the same table as one
    cdpp_table per (star, factor), circles and shape masks alike."""
    options = Options(method=method, val_range=(4, 12), step=4)
    visit = api.load_visit(small_visit_module.drp_folder, options)
    prepared = api.prepare(visit, options)
    factors = {0: [4.0, 8.0, 12.5], 2: [8.0], 3: [4.0, 12.0]}
    table = api.factor_table(visit, prepared, factors)
    expected = CdppTable.merge([api.cdpp_table(visit, prepared, f, stars=[j])
                                for j, star_factors in factors.items()
                                for f in star_factors])
    assert len(table) == 6 and table.valid.any()
    assert_tables_equal(table, expected, rtol=1e-10)
    # the frames split among three processes at chunk boundaries (chunks of 16 frames):
    # the same table, bit for bit, as one pass with the same chunks
    chunked = replace(prepared, options=replace(prepared.options, chunk_frames=16))
    assert_tables_equal(api.factor_table(visit, chunked, factors, workers=3),
                        api.factor_table(visit, chunked, factors), rtol=0)


@pytest.mark.parametrize("method", ["circle", "circle+shape"])
def test_extraction_reuses_the_search_sums_of_the_chosen_runs(method, small_visit_module,
                                                              monkeypatch):
    """extract with the search that chose the factors takes the chosen runs' sums from it:
    the curves of measuring again, to rounding. Only stars whose chosen run the search did
    not measure (no valid run: the smallest factor, known to be out of bounds) and stars
    given other factors take a new pass."""
    options = Options(method=method, val_range=(6, 12), step=3, optimization_extensions=1)
    visit = api.load_visit(small_visit_module.drp_folder, options)
    prepared = api.prepare(visit, options)
    result = api.optimize_factors(visit, prepared)
    n = prepared.stars.n_stars
    assert result.sums.flux.shape == (n, visit.n_frames) and result.kept.sum() >= n - 2
    measured = api.extract(visit, prepared, result.factors)
    passes = []
    real_pass = runs.photometry_in_parts

    def counted_pass(visit, tracks, apertures, *args, **kw):
        passes.append([j for j, a in enumerate(apertures) if a is not None])
        return real_pass(visit, tracks, apertures, *args, **kw)

    monkeypatch.setattr(runs, "photometry_in_parts", counted_pass)
    reused = api.extract(visit, prepared, result.factors, search_result=result)
    assert passes == ([list(np.flatnonzero(~result.kept))] if not result.kept.all() else [])
    for name in ("flux", "flux_err", "npix", "cdpp"):
        np.testing.assert_allclose(getattr(reused, name), getattr(measured, name), rtol=1e-12)
    np.testing.assert_array_equal(reused.flag, measured.flag)
    assert np.isfinite(reused.flux).sum() > 0.5 * reused.flux.size
    kept_star = int(np.flatnonzero(result.kept)[0])
    other = {**result.factors, kept_star: result.factors[kept_star] + 1.0}
    passes.clear()
    moved = api.extract(visit, prepared, other, search_result=result)
    assert kept_star in passes[0] and not np.allclose(moved.flux[kept_star],
                                                      measured.flux[kept_star])


def test_runs_known_to_be_invalid_are_not_measured(small_visit_module, monkeypatch):
    """Radii that reach over the field's edge, or over a brighter star, are invalid
    whatever their sums: the search does not measure them, and its table is the one of
    measuring every run (the penalty for those, the same CDPPs to rounding for the rest)."""
    options = Options(method="circle", val_range=(10, 70), step=20)
    visit = api.load_visit(small_visit_module.drp_folder, options)
    prepared = api.prepare(visit, options)
    factors = {j: [10.0, 30.0, 50.0, 70.0] for j in range(prepared.stars.n_stars)}
    measured = api.measure_runs(visit, prepared, factors)
    skipped = ~measured.measured
    assert skipped.any() and measured.measured.any()
    assert np.isnan(measured.sums.flux[skipped]).all()
    table = api.factor_table(visit, prepared, factors)
    assert not table.valid[skipped].any()
    monkeypatch.setattr(runs, "known_invalid",
                        lambda visit, prepared, runs, *_: np.zeros(len(runs), bool))
    assert api.measure_runs(visit, prepared, factors).measured.all()
    everything = api.factor_table(visit, prepared, factors)
    assert_tables_equal(table, everything, rtol=1e-10)


def assert_tables_equal(table: CdppTable, expected: CdppTable, rtol: float) -> None:
    """The same rows: stars, factors and validity exactly, CDPPs within ``rtol``
    (``rtol=0``: bit for bit)."""
    assert len(table) == len(expected)
    for name in ("star", "factor", "valid"):
        np.testing.assert_array_equal(table[name], expected[name])
    if rtol:
        np.testing.assert_allclose(table.cdpp, expected.cdpp, rtol=rtol)
    else:
        np.testing.assert_array_equal(table.cdpp, expected.cdpp)


def test_whole_visit_reads_its_rendered_model_back_from_the_prepared_file(small_visit_module,
                                                                         tmp_path):
    """process_visit writes prepared.fits, then reads the rendered field model from it a
    chunk at a time (paged, not held whole): the file holds the model rendered again here,
    bit for bit, and the light curves are those of the model held in memory (to 1e-12 of
    FLUX_RAW; measured: 0)."""
    from archi.framequality import PagedArray

    options = Options(val_range=(12, 14), step=2, optimization_extensions=0)
    files = pipeline.VisitFiles(factors=tmp_path / "factors.yaml", table=tmp_path / "t.tsv",
                                fits=tmp_path / "lc.fits", info=tmp_path / "info.yaml",
                                prepared=tmp_path / "prepared.fits")
    done = pipeline.process_visit(small_visit_module.drp_folder, options, files)
    model = done.prepared.model
    assert isinstance(model.images, PagedArray)
    rendered = replace(model, images=None).rendered(options.effective_chunk).images
    assert np.array_equal(np.asarray(model.images), rendered, equal_nan=True)
    held = api.extract(done.visit, replace(done.prepared, model=replace(model, images=rendered)),
                       done.factors)
    scale = np.abs(done.curves.flux_raw)
    for name in ("flux", "flux_raw", "conta", "flux_err"):
        difference = np.abs(getattr(held, name) - getattr(done.curves, name))
        assert np.array_equal(np.isnan(difference), np.isnan(scale)), name
        assert np.nanmax(difference / scale) <= 1e-12, name
