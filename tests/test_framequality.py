"""Bad frames, short visits and the FLAG bits (issue 15, the data side).

A clean 120-frame visit and copies of it with 10 % of the frames lost (all NaN) or empty
(all zero), made by editing the SubArray cube (:mod:`archi.simulate.damage`); a 12-frame
visit, too short for the K2 CDPP. Truth: which frames were damaged, and the EVENT codes
the simulator wrote into its DRP light curve (read with astropy, decoded here).
"""

from __future__ import annotations

import dataclasses
import shutil
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
import yaml
from astropy.io import fits

from archi import api, framequality, pipeline
from archi.noise import k2_cdpp
from archi.io.factors_file import read_optimized_factors, write_search_factors
from archi.io.lightcurves import read_lightcurves_fits, write_lightcurves_fits
from archi.io.lightcurves_text import read_lightcurves_text, write_lightcurves_text
from archi.io.run_info import write_run_info
from archi.options import Options
from archi.simulate import SimulationConfig, simulate_visit
from archi.simulate.damage import damaged_copy
from archi.stars import (
    FLAG_BAD_FRAME,
    FLAG_EARTH,
    FLAG_FLUX_OUTLIER,
    FLAG_MOON,
    FLAG_REJECT,
    FLAG_SAA,
    FLAG_SUN,
    FLAG_TEMPERATURE,
)

ROOT = Path(__file__).parents[1]
N_FRAMES = 120
BAD = np.sort(np.random.default_rng(0).choice(np.arange(1, N_FRAMES), 12, replace=False))
"""10 % of the frames, never the first (detection looks at frame 0)."""
DRP_BITS = FLAG_SAA | FLAG_TEMPERATURE | FLAG_EARTH | FLAG_MOON | FLAG_SUN


def _process(folder):
    """prepare, search and extract one visit, warnings recorded."""
    options = Options()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        visit = api.load_visit(folder, options)
        prepared = api.prepare(visit, options)
        result = api.optimize_factors(visit, prepared)
        curves = api.extract(visit, prepared, result.factors, search_result=result)
    return visit, prepared, result, curves, [str(w.message) for w in caught]


@pytest.fixture(scope="module")
def clean(tmp_path_factory):
    root = tmp_path_factory.mktemp("frames") / "clean"
    sim = simulate_visit(SimulationConfig(n_frames=N_FRAMES, seed=3, layouts=("drp",)), root)
    return sim, _process(sim.drp_folder)


@pytest.fixture(scope="module", params=["nan", "zero"])
def damaged(request, clean, tmp_path_factory):
    sim = clean[0]
    dest = tmp_path_factory.mktemp(request.param) / sim.drp_folder.name
    damaged_copy(sim.drp_folder, dest, BAD, request.param)
    return request.param, _process(dest)


def test_bad_frames_are_found_and_their_flux_is_nan(damaged):
    kind, (_, prepared, _, curves, messages) = damaged
    quality = prepared.frame_quality()
    assert np.array_equal(np.flatnonzero(quality.unmeasurable), BAD)
    assert np.array_equal(np.flatnonzero(quality.excluded), BAD)  # no outlier among the rest
    assert np.isnan(curves.flux[:, BAD]).all() and np.isnan(curves.flux_err[:, BAD]).all()
    assert np.isnan(curves.conta[:, BAD]).all()
    assert ((curves.flag[:, BAD] & FLAG_BAD_FRAME) != 0).all()
    good = np.setdiff1d(np.arange(N_FRAMES), BAD)
    assert ((curves.flag[:, good] & FLAG_BAD_FRAME) == 0).all()
    assert np.isfinite(curves.flux[:6, good]).all()  # stars inside the field
    assert any(f"12 of {N_FRAMES} frames left out (12 all_{kind}" in m for m in messages)


def test_bad_frames_change_nothing_but_the_frames_lost(clean, damaged):
    """The damaged visit's factors are as good as those the clean one chooses when scored
    without those frames: on the clean visit, their CDPP is at most 3 % above (measured
    0.945-1.001x). Not always the same factors to one grid step (2 px), as the issue asked:
    where a star's CDPP is flat within 1-3 % over several pixels, its minimum moves with
    the noise of the metric itself. Against the clean visit scored on the same frames, the
    factors differ by up to 3.0 px here (one star; 120 frames) and by at most 2.0 and 0.3 px
    on two 300-frame visits (seeds 3 and 5, this test with 300 frames); against the
    clean visit on all its frames, by up to 4.1 px, since 10 % more frames is another
    sample of the noise. Neither choosing the smallest factor within 0.5-3 % of the minimum
    nor smoothing the CDPP over 0.5-2 px of factor made the choices agree. Its light curves at the
    clean visit's factors match the clean ones on the good frames (measured max relative
    difference 7.6e-4, star 6; 3e-5 for the target)."""
    _, (visit0, prepared0, result0, curves0, _) = clean
    _, (visit, prepared, result, curves, _) = damaged
    without = dataclasses.replace(prepared0, frames=prepared.frames)
    best = api.extract(visit0, without, api.optimize_factors(visit0, without).factors)
    chosen = api.extract(visit0, without, result.factors)
    scored = np.isfinite(best.cdpp) & np.isfinite(chosen.cdpp)
    assert scored.sum() >= 6
    assert np.all(chosen.cdpp[scored] <= 1.03 * best.cdpp[scored]), chosen.cdpp / best.cdpp
    same = api.extract(visit, prepared, result0.factors)
    good = ~prepared.frame_quality().excluded
    inside = np.isfinite(curves0.flux[:, good]).all(axis=1)
    ratio = same.flux[inside][:, good] / curves0.flux[inside][:, good]
    assert np.nanmax(np.abs(ratio - 1)) < 1.5e-3
    assert np.abs(ratio[0] - 1).max() < 1e-4  # target


def test_nan_and_zero_frames_give_the_same_result(clean, tmp_path_factory):
    sim = clean[0]
    outs = []
    for kind in ("nan", "zero"):
        dest = tmp_path_factory.mktemp(f"same-{kind}") / sim.drp_folder.name
        options = Options(decontaminate=False)  # fast: the same code path for the frames
        visit = api.load_visit(damaged_copy(sim.drp_folder, dest, BAD, kind), options)
        prepared = api.prepare(visit, options)
        outs.append(api.extract(visit, prepared, {j: 10.0 for j in
                                                  range(prepared.stars.n_stars)}))
    np.testing.assert_array_equal(outs[0].flux, outs[1].flux)
    np.testing.assert_array_equal(outs[0].flag, outs[1].flag)


def test_a_lost_first_frame(clean, tmp_path):
    """The field model takes the field of view from the first good frame."""
    sim, (_, _, result0, curves0, _) = clean
    dest = damaged_copy(sim.drp_folder, tmp_path / sim.drp_folder.name, [0, 1], "nan")
    options = Options()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        visit = api.load_visit(dest, options)
        prepared = api.prepare(visit, options)
    curves = api.extract(visit, prepared, result0.factors)
    assert np.isnan(curves.flux[:, :2]).all()
    inside = np.isfinite(curves0.flux).all(axis=1)
    ratio = curves.flux[inside, 2:] / curves0.flux[inside, 2:]
    # measured 1.1e-3 (2.9e-4 with the PSF cut at 70 px: its structure 70-100 px out, which
    # fewer frames cover, moves more with the frames chosen)
    assert np.abs(ratio - 1).max() < 2e-3


@pytest.mark.parametrize("settings, factor, tolerance", [
    # measured on this visit: 1.3e-3 (stars found in frame 2: positions differ by ~0.01 px)
    ({"initial_detect": "dynam", "detect_mode": "dynam"}, 12.0, 3e-3),
    # the regions come from frame 2, where the field has turned, so the masks differ a
    # little: measured 4.5e-2 (the faintest star; the others <= 1e-2). The old code: -95 %
    ({"method": "shape"}, 3.0, 0.1)])
def test_a_lost_first_frame_with_stars_from_the_image_or_shape_masks(clean, tmp_path, settings,
                                                                    factor, tolerance):
    """Stars found in the image and shape masks take the first good frame: a lost frame 0
    (all NaN) neither stops the detection nor leaves the masks empty (as it did: "no star
    found in the first frame", shape FLUX 20x too low). The same stars and FLUX as the
    clean visit's to the tolerance."""
    sim = clean[0]
    dest = damaged_copy(sim.drp_folder, tmp_path / sim.drp_folder.name, [0, 1], "nan")
    options = Options.from_mapping(settings, source="test")
    runs = []
    for folder in (sim.drp_folder, dest):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            visit = api.load_visit(folder, options)
            prepared = api.prepare(visit, options)
        factors = {j: factor for j in range(prepared.stars.n_stars)}
        runs.append((prepared, api.extract(visit, prepared, factors)))
    (prepared0, curves0), (prepared, curves) = runs
    assert prepared.stars.n_stars == prepared0.stars.n_stars
    np.testing.assert_allclose(prepared.tracks.x[:, 2:], prepared0.tracks.x[:, 2:], atol=0.05)
    assert np.isnan(curves.flux[:, :2]).all()
    inside = np.isfinite(curves0.flux).all(axis=1)
    ratio = np.nanmedian(curves.flux[inside, 2:] / curves0.flux[inside, 2:], axis=1)
    assert inside.sum() >= 5 and np.abs(ratio - 1).max() < tolerance, ratio


def test_assess_frames_tells_each_problem(clean):
    sim = clean[0]
    cube = np.array(api.load_visit(sim.drp_folder, Options()).cube[:60], dtype=float)
    assert not framequality.assess_frames(cube).excluded.any()
    cube[5] = np.nan
    cube[10] = 0.0
    cube[15, :, 40:] = np.nan  # 80 % of the field lost
    cube[20] *= 0.5  # half the light: a total-flux outlier
    cube[30:45] *= 0.7  # a 30 % eclipse, 15 frames long: not an outlier (running median)
    quality = framequality.assess_frames(cube, chunk_frames=16)
    assert quality.problem[5] == framequality.ALL_NAN
    assert quality.problem[10] == framequality.ALL_ZERO
    assert quality.problem[15] == framequality.MOSTLY_NONFINITE
    assert quality.problem[20] == framequality.FLUX_OUTLIER
    assert np.flatnonzero(quality.excluded).tolist() == [5, 10, 15, 20]
    assert np.flatnonzero(quality.unmeasurable).tolist() == [5, 10, 15]


def test_outlier_frames_are_measured_flagged_and_left_out_of_the_cdpp(clean,
                                                                       tmp_path_factory):
    sim, (_, _, result0, curves0, _) = clean
    dest = tmp_path_factory.mktemp("scaled") / sim.drp_folder.name
    damaged_copy(sim.drp_folder, dest, BAD[:3], "scaled")
    options = Options()
    visit = api.load_visit(dest, options)
    prepared = api.prepare(visit, options)
    assert np.flatnonzero(prepared.frame_quality().excluded).tolist() == BAD[:3].tolist()
    curves = api.extract(visit, prepared, result0.factors)
    assert ((curves.flag[:, BAD[:3]] & FLAG_FLUX_OUTLIER) != 0).all()
    # measured: half the light, less the other half of the neighbours' light in the mask
    # (the field model subtracts all of it): measured 0.487-0.489
    ratio = curves.flux[0, BAD[:3]] / curves0.flux[0, BAD[:3]]
    np.testing.assert_allclose(ratio, 0.5, atol=0.025)
    # left out of the CDPP: the target's is that of its other frames (the K2 CDPP clips
    # such outliers itself: 44.5 ppm with them; 49.3 without, the clean visit 45.5)
    kept = np.setdiff1d(np.arange(N_FRAMES), BAD[:3])
    assert curves.cdpp[0] == k2_cdpp(curves.flux[0, kept], visit.mjd_time[kept])


def test_flags_decode_the_simulated_events_at_real_rates(clean):
    sim, (visit, prepared, _, curves, _) = clean
    (lc_path,) = sim.drp_folder.glob("*_Lightcurve-DEFAULT_*.fits")
    event = np.asarray(fits.getdata(lc_path, 1)["EVENT"], np.int64)
    status = np.asarray(fits.getdata(lc_path, 1)["STATUS"], np.int64)
    expected = np.zeros(N_FRAMES, np.int64)  # pycheops' digits, decoded independently
    for digit, bit in ((0, FLAG_SAA), (1, FLAG_TEMPERATURE), (2, FLAG_EARTH), (3, FLAG_MOON),
                       (4, FLAG_SUN)):
        expected |= np.where(event // 10**digit % 10 > 0, bit, 0)
    for j in range(curves.n_stars):
        np.testing.assert_array_equal(curves.flag[j] & DRP_BITS, expected)
    np.testing.assert_array_equal(curves.event, event)
    np.testing.assert_array_equal(curves.status, status)
    # real DRP visits flag 0.5-4.6 % of their frames (tests/data); the simulator 4.2 % here
    assert 0.005 <= np.mean(status != 0) <= 0.06
    assert (expected & FLAG_EARTH).any() and (expected & FLAG_SAA).any()
    # the target keeps most frames: rejected only for the DRP's conditions (no lost frame)
    assert np.mean((curves.flag[0] & FLAG_REJECT) != 0) <= 0.06


@pytest.mark.parametrize("damaged", ["nan"], indirect=True)
def test_files_carry_nan_flags_events_and_warnings(damaged, tmp_path):
    _, (visit, prepared, result, curves, _) = damaged
    files = pipeline.VisitFiles(factors=tmp_path / "f.yaml", table=tmp_path / "t.tsv",
                                fits=tmp_path / "lc.fits", info=tmp_path / "info.yaml",
                                text=tmp_path / "lc.txt")
    write_search_factors(files.factors, prepared.options, prepared.visit_key,
                         result.factors, result.cdpp, result.valid)
    write_lightcurves_fits(curves, files.fits)
    write_lightcurves_text(curves, files.text)
    write_run_info(files.info, visit_folder=visit.folder, options={}, lc=curves,
                   warnings=api.visit_warnings(prepared, files.factors))
    back = read_lightcurves_fits(files.fits)
    assert np.isnan(back.flux[:, BAD]).all() and ((back.flag[:, BAD] & FLAG_BAD_FRAME) != 0).all()
    np.testing.assert_array_equal(back.event, visit.event)
    text = read_lightcurves_text(files.text)
    assert np.isnan(text.flux[:, BAD]).all() and ((text.flag[:, BAD] & FLAG_BAD_FRAME) != 0).all()
    with fits.open(files.fits) as hdul:
        assert hdul[0].header["FLAGB1"] == "bad_frame"
    info = yaml.safe_load(files.info.read_text())
    assert any("frames left out" in line for line in info["warnings"])


@pytest.fixture(scope="module")
def short(tmp_path_factory):
    root = tmp_path_factory.mktemp("short")
    sim = simulate_visit(SimulationConfig(n_frames=12, seed=5, layouts=("drp",)),
                         root / "visit")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        out = pipeline.run(sim.drp_folder, Options(decontaminate=False), root / "out",
                      show_results=False, debug=False)
    return out, [str(w.message) for w in caught]


def test_a_short_visit_says_so(short):
    out, messages = short
    lines = [m for m in messages if "fewer than the 41 the K2 CDPP needs" in m]
    assert len(lines) == 1 and "\n" not in lines[0] and "valid: false" in lines[0]
    (visit,) = read_optimized_factors(out.factors).values()
    assert all(not s.valid and s.cdpp is None and s.factor == 8.0
               for s in visit.stars.values())
    curves = read_lightcurves_fits(out.lightcurves_fits)
    assert np.isnan(curves.cdpp).all()
    info = yaml.safe_load(out.run_info.read_text())
    assert info["warnings"] == lines
    assert all(s["cdpp"] is None for s in info["stars"])
    assert "20000000" not in out.lightcurves_text.read_text()


@pytest.mark.slow
def test_the_workflow_handles_lost_frames(clean, tmp_path):
    """One Snakemake run (-j2, the per-factor search jobs) of the visit with 10 % of its
    frames lost: NaN and bad_frame there, the frames and the fallback star in run_info."""
    sim = clean[0]
    folder = damaged_copy(sim.drp_folder, tmp_path / "lost" / sim.drp_folder.name, BAD, "nan")
    work = tmp_path / "work"
    shutil.copytree(ROOT / "config", work / "config")
    config = yaml.safe_load((work / "config" / "config.yaml").read_text())
    config["photometry"].update({"val_range": [12, 20], "step": 4,
                                 "optimization_extensions": 1})
    config["outputs"].update({"save_gif": False})
    (work / "config" / "config.yaml").write_text(yaml.safe_dump(config))
    (work / "config" / "visits.tsv").write_text(
        f"visit\tpath\tdata_type\tsimulation\nlost\t{folder}\treal\t\n")
    run = subprocess.run([sys.executable, "-m", "snakemake", "--snakefile",
                          str(ROOT / "workflow" / "Snakefile"), "--directory", str(work),
                          "-j2"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                         timeout=900)
    assert run.returncode == 0, run.stdout[-3000:]
    out = work / "results" / "lost"
    curves = read_lightcurves_fits(out / "lightcurves.fits")
    assert np.isnan(curves.flux[:, BAD]).all()
    assert ((curves.flag[:, BAD] & FLAG_BAD_FRAME) != 0).all()
    assert np.isfinite(curves.flux[0, np.setdiff1d(np.arange(N_FRAMES), BAD)]).all()
    text = read_lightcurves_text(out / "lightcurves.txt")
    assert ((text.flag[:, BAD] & FLAG_BAD_FRAME) != 0).all()
    info = yaml.safe_load((out / "run_info.yaml").read_text())
    assert any(f"12 of {N_FRAMES} frames left out" in line for line in info["warnings"])
    assert "nan" not in (work / "results" / "summary.tsv").read_text().split("\n")[1]
