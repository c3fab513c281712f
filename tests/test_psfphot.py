"""PSF photometry (``method: psf``, archi.psfphot) against the simulator's truth (issue 14).

The crowded scene (tests/data/crowded_scene.yaml): a G = 9 target, two blended pairs, a
bright star just outside the field, a 1 % transit on a star 22 px from the target. The
truth is each star's true flux (truth.fits), and the noise floor of a PSF fit is computed
from the simulator's own PSF at the true positions (not the fitted one).
"""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import yaml

from archi import api
from archi.errors import ConfigError, CorruptProductError
from archi.io.factors_file import read_optimized_factors, stored_factors, write_optimized_factors
from archi.geometry import FIELD_CENTRE, FIELD_RADIUS, SUBARRAY_SIZE
from archi.io.lightcurves import read_lightcurves_fits
from archi.io.lightcurves_text import read_lightcurves_text
from archi.options import Options
from archi.psfphot import visit_psf_photometry
from archi.simulate import SimulationConfig, simulate_visit
from archi.simulate.psf import PixelPsf
from archi.simulate.render import render_stars
from archi.simulate.truth import read_truth

SCENE = Path(__file__).parent / "data" / "crowded_scene.yaml"
FLOOR_FRAMES = np.arange(0, 150, 30)  # frames on which the fit's noise floor is computed


@pytest.fixture(scope="module")
def crowded(tmp_path_factory):
    root = tmp_path_factory.mktemp("crowded_psf")
    sim = simulate_visit(SimulationConfig.from_yaml(SCENE), root)
    options = Options(initial_detect="fits", detect_mode="dynam", method="psf")
    visit = api.load_visit(sim.drp_folder, options)
    prepared = api.prepare(visit, options)
    truth = read_truth(root / "truth.fits")
    fit = visit_psf_photometry(visit, prepared)
    tracks = prepared.tracks
    match = np.array([int(np.argmin(np.hypot(truth.x[:, 0] - x, truth.y[:, 0] - y)))
                      for x, y in zip(tracks.x[:, 0], tracks.y[:, 0])])
    return SimpleNamespace(visit=visit, prepared=prepared, truth=truth, fit=fit, match=match,
                           n=tracks.n_stars)


def _mag(crowded, j):
    return float(crowded.truth.stars["MAG"][crowded.match[j]])


def _fit_floor(truth, frames):
    """Relative error (n_true_stars, len(frames)) of each true star's flux in a fit of every
    star on the field and a constant level: the simulator's PSF at the true positions, the
    photon noise of all the light, sky, dark and read noise (the inverse Fisher matrix);
    NaN for stars with less than half their light on the field."""
    table = truth.frames
    roll = np.asarray(table["ROLL_ANGLE"], float)[frames]
    tx, ty = (np.asarray(table[c], float)[frames] for c in ("TARGET_X", "TARGET_Y"))
    droll = -360.0 / 98.77 * truth.texptime / 60.0
    psf = PixelPsf()
    yy, xx = np.indices((SUBARRAY_SIZE, SUBARRAY_SIZE))
    fov = np.hypot(xx - FIELD_CENTRE[0], yy - FIELD_CENTRE[1]) <= FIELD_RADIUS
    stars = truth.stars
    images = np.array([render_stars(psf, SimpleNamespace(dx=np.array([float(stars["DX0"][i])]),
                                                         dy=np.array([float(stars["DY0"][i])]),
                                                         n_stars=1),
                                    roll, tx, ty, truth.flux[i:i + 1, frames], droll, True)[0]
                       for i in range(len(stars))])[:, :, fov]  # (stars, frames, pixels)
    sky = (np.asarray(table["BACKGROUND"], float) + np.asarray(table["DARK"], float)
           + np.asarray(table["READ_NOISE"], float) ** 2 * truth.nexp)[frames]
    out = np.full((len(stars), len(frames)), np.nan)
    for k in range(len(frames)):
        flux = truth.flux[:, frames[k]]
        on_field = images[:, k].sum(axis=1) >= 0.5 * flux
        design = np.vstack([images[on_field, k] / flux[on_field, None],
                            np.ones(fov.sum())])
        variance = images[:, k].sum(axis=0) + sky[k]
        cov = np.linalg.inv((design / variance) @ design.T)
        out[on_field, k] = np.sqrt(np.diag(cov)[:-1]) / flux[on_field]
    return out


def test_psf_fluxes_are_the_true_fluxes(crowded):
    """PSF flux / true flux: one scale for all stars, each star within 1 % of it for G <= 12
    (measured: 0.3 %), 2.5 % for the G = 13 ones (measured: 0.9 % high for the one 15 px
    from the G = 9 target). The scale is the part of a star's light its fitted PSF holds:
    the simulated PSF has 1.7 % of its light beyond the model's 70 px and a flat floor
    that the fitted level takes as sky (measured 0.973; the simulator's PSF holds 0.983
    within 70 px)."""
    fit, truth = crowded.fit, crowded.truth
    ratio = np.array([np.median(fit.flux[j] / truth.flux[crowded.match[j]])
                      for j in range(crowded.n)])
    bright = np.array([_mag(crowded, j) <= 12.0 for j in range(crowded.n)])
    scale = np.median(ratio[bright])
    assert 0.95 <= scale <= 0.983
    for j in range(crowded.n):
        limit = 0.01 if bright[j] else 0.025
        assert abs(ratio[j] / scale - 1.0) <= limit, (j, ratio[j] / scale)
    assert not fit.off_field[:crowded.n].any()


def test_psf_flux_scatter_near_the_fits_noise_floor(crowded):
    """Scatter of PSF flux / true flux over the floor of a PSF fit with the true PSF at the
    true positions, for every star G <= 12.5: at most 2.5 (measured 0.98-1.53: the fitted
    PSF is the visit's own, the positions tracked; 1.9 for the G = 13 star 15 px from the
    target, not checked); the fit's own FLUX_ERR within 8 % of that floor (measured
    0-3.6 % above)."""
    fit, truth = crowded.fit, crowded.truth
    floor = np.median(_fit_floor(truth, FLOOR_FRAMES), axis=1)
    for j in range(crowded.n):
        if _mag(crowded, j) > 12.5:
            continue
        i = crowded.match[j]
        ratio = fit.flux[j] / truth.flux[i]
        assert np.std(ratio) <= 2.5 * floor[i], (j, np.std(ratio) / floor[i])
        relative_err = np.median(fit.flux_err[j] / fit.flux[j])
        assert relative_err == pytest.approx(floor[i], rel=0.08), (j, relative_err / floor[i])


def test_transit_depth_from_psf_fluxes(crowded):
    """The 1 % transit of the star 22 px from the target (its 10 px circle holds a third as
    much of the target's light as its own): the depth from the PSF flux with a linear
    baseline (no roll decorrelation) is within 5 % of the injected one, as issue 14 asks
    (measured: 3.3 % deep; the depth's photon noise is ~1.3 %. It was 6.1 % shallow while
    the transiting star's core stayed in the PSF's median: the PSF's wings then wobbled
    with the roll under the target's light)."""
    truth, visit, fit = crowded.truth, crowded.visit, crowded.fit
    i = int(np.flatnonzero(np.char.strip(truth.stars["SIGNAL"].astype(str)) == "transit")[0])
    j = int(np.flatnonzero(crowded.match == i)[0])
    t = visit.mjd_time - visit.mjd_time[0]
    t0, duration = float(truth.stars["T0"][i]), float(truth.stars["DURATION"][i])
    inside = np.abs(t - t0) < 0.35 * duration
    outside = np.abs(t - t0) > 0.6 * duration
    baseline = np.polyval(np.polyfit(t[outside], fit.flux[j, outside], 1), t[inside])
    depth = 1.0 - np.mean(fit.flux[j, inside] / baseline)
    assert depth == pytest.approx(float(truth.stars["DEPTH"][i]), rel=0.05)


def test_extraction_writes_the_psf_fluxes(crowded):
    """method psf: FLUX, FLUX_ERR are the fit's; CONTA the neighbours' fitted light under
    the star's PSF (positive, largest for the faint star beside the target); FLUX_RAW =
    FLUX + CONTA; no mask (factor and NPIX NaN); the search measures nothing."""
    visit, prepared, fit, n = crowded.visit, crowded.prepared, crowded.fit, crowded.n
    result = api.optimize_factors(visit, prepared)
    assert len(result.table) == 0 and all(np.isnan(f) for f in result.factors.values())
    curves = api.extract(visit, prepared, result.factors, search_result=result)
    np.testing.assert_array_equal(curves.flux, fit.flux[:n])
    np.testing.assert_array_equal(curves.flux_err, fit.flux_err[:n])
    np.testing.assert_allclose(curves.flux_raw, curves.flux + curves.conta, rtol=1e-12)
    assert curves.methods == ("psf",) * n
    assert np.isnan(curves.factors).all() and np.isnan(curves.npix).all()
    assert (curves.contamination > 0).all()
    faint = [j for j in range(n) if _mag(crowded, j) == 13.0]
    closest = min(faint, key=lambda j: curves.stars.distance[j])
    assert np.argmax(curves.contamination) == closest


def test_target_by_circle_others_by_psf(crowded):
    """circle+psf: only the target's factor is searched; the others' rows are the PSF
    fits, the target's its circle's own light."""
    visit, prepared, fit, n = crowded.visit, crowded.prepared, crowded.fit, crowded.n
    mixed = dataclasses.replace(prepared, options=prepared.options.replace(method="circle+psf"))
    result = api.optimize_factors(visit, mixed)
    assert set(result.table.star.tolist()) == {0}
    assert result.factors[0] > 0 and all(np.isnan(result.factors[j]) for j in range(1, n))
    curves = api.extract(visit, mixed, result.factors, search_result=result)
    np.testing.assert_array_equal(curves.flux[1:], fit.flux[1:n])
    assert curves.methods[:2] == ("circle", "psf") and curves.npix[0] > 0
    assert np.median(curves.flux[0] / crowded.truth.flux[crowded.match[0]]) < 1.0


def test_psf_needs_the_field_model():
    """decontaminate: false with method psf is a one-line configuration error."""
    with pytest.raises(ConfigError, match="needs decontaminate: true") as error:
        Options.from_mapping({"method": "circle+psf", "decontaminate": False}, source="cfg")
    assert "\n" not in str(error.value) and str(error.value).startswith("cfg: ")
    assert not Options(method="psf").apertures.uses_masks
    assert Options(method="psf+shape").apertures.uses_masks


def test_factors_file_keeps_psf_stars_without_a_factor(tmp_path):
    """A psf star is stored with no factor, valid, and read back as NaN; a psf entry with a
    factor is refused, naming the file."""
    path = tmp_path / "factors.yaml"
    write_optimized_factors(path, {0: 10.25, 1: math.nan}, methods="circle+psf", visit_id="V",
                            cdpp={0: 50.0, 1: math.nan})
    (entry,) = yaml.safe_load(path.read_text())["visits"].values()
    assert entry["stars"][1] == {"method": "psf", "factor": None, "cdpp": None, "valid": True}
    factors = stored_factors(path, "V", 2)
    assert factors[0] == 10.25 and math.isnan(factors[1])
    path.write_text(path.read_text().replace("factor: null", "factor: 3"))
    with pytest.raises(CorruptProductError, match="factors.yaml.*psf star has no mask"):
        read_optimized_factors(path)


@pytest.mark.slow
def test_workflow_with_method_psf(tmp_path):
    """The workflow with method psf: no factor-search job is planned; the light curves, their
    text and the summary say psf, and read back."""
    from test_workflow import job_counts, make_workdir, snakemake

    work = make_workdir(tmp_path, {"small_psf": 5}, photometry={"method": "psf"})
    dry = snakemake(work, "-n")
    assert dry.returncode == 0, dry.stdout
    jobs = job_counts(dry.stdout)
    assert not {"photometry", "select_round", "plan_fine_tune", "fine_tune"} & set(jobs)
    run = snakemake(work, "-j2")
    assert run.returncode == 0, run.stdout[-3000:]
    out = work / "results" / "small_psf"
    curves = read_lightcurves_fits(out / "lightcurves.fits")
    assert curves.options["method"] == "psf" and set(curves.methods) == {"psf"}
    assert np.isnan(curves.factors).all() and np.isfinite(curves.flux[0]).mean() > 0.9
    text = read_lightcurves_text(out / "lightcurves.txt")
    np.testing.assert_allclose(text.flux, curves.flux, rtol=1e-12)
    summary = (work / "results" / "summary.tsv").read_text().splitlines()
    assert all("\tpsf\t" in line for line in summary[1:])
    stored = yaml.safe_load((out / "optimization" / "optimized_factors.yaml").read_text())
    (entry,) = stored["visits"].values()
    assert {s["method"] for s in entry["stars"].values()} == {"psf"}
    bad = make_workdir(tmp_path / "bad", {"small_psf": 5},
                       photometry={"method": "psf", "decontaminate": False})
    refused = snakemake(bad, "-n")
    assert refused.returncode != 0 and "needs decontaminate: true" in refused.stdout
