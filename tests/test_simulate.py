"""Simulated visits: DRP structure, and truth consistency (flux, positions, noise levels)."""

from __future__ import annotations

import numpy as np
import pytest
from astropy.io import fits
from astropy.wcs import WCS

from archi.geometry import FIELD_CENTRE, sky_offsets
from archi.io import find_visit_products, read_visit
from archi.simulate.aperture_sums import circular_aperture_sums
from archi.simulate import SimulationConfig, StarSpec, read_truth, simulate_visit
from archi.simulate.psf import PixelPsf, enclosed_fraction
from conftest import REAL_LIGHTCURVES


def test_psf_matches_the_cheops_enclosed_energy():
    psf = PixelPsf()
    # real CHEOPS PSF (pycheops white PSF): 0.766, 0.890, 0.920, 0.934 at 15/20/25/30 px
    for radius, real in [(15, 0.766), (20, 0.890), (25, 0.920), (30, 0.934)]:
        assert enclosed_fraction(psf, radius) == pytest.approx(real, abs=0.01)
    assert np.allclose(psf.stamps.sum(axis=(2, 3)), 1.0)


def test_products_have_the_real_structure(small_visit):
    prods = find_visit_products(small_visit.drp_folder)
    assert prods.layout == "drp" and prods.star_catalogue is not None
    assert sorted(prods.lightcurves) == ["DEFAULT", "OPTIMAL", "RINF", "RSUP"]
    with fits.open(prods.subarray) as hdul:
        assert [h.name for h in hdul] == ["PRIMARY", "SCI_COR_SubArray",
                                          "SCI_COR_ImageMetadata", "PIP_COR_Centroid",
                                          "SCI_COR_SmearingRow", "SCI_COR_SmearingRowError"]
        assert hdul[0].header["BITPIX"] == 16 and hdul[0].header["NAXIS"] == 0
        cube = hdul[1].data
        assert cube.shape == (60, 200, 200) and cube.dtype == np.dtype(">f8")
        assert np.isnan(cube[:, 0, 0]).all() and np.isfinite(cube[:, 100, 100]).all()
        assert hdul[2].header["NAXIS1"] == 241 and len(hdul[2].columns) == 41
        assert hdul[3].header["NAXIS1"] == 61
        assert hdul[1].header["X_WINOFF"] == 193 and hdul[1].header["Y_WINOFF"] == 731
    with fits.open(prods.lightcurves["DEFAULT"]) as hdul:
        assert hdul[1].name == "SCI_COR_Lightcurve" and hdul[1].header["NAXIS1"] == 138
        with fits.open(REAL_LIGHTCURVES[0]) as real:
            assert hdul[1].columns.names == real[1].columns.names
            assert [c.format for c in hdul[1].columns] == [c.format for c in real[1].columns]
            assert [c.unit for c in hdul[1].columns] == [c.unit for c in real[1].columns]
        assert hdul[1].header["AP_RADI"] == 25.0 and hdul[1].header["TIMESYS"] == "TT"
    with fits.open(prods.star_catalogue) as hdul:
        assert hdul[1].header["NAXIS1"] == 89
        assert hdul[1].data["TARGET"][0] and not hdul[1].data["TARGET"][1:].any()
        assert np.all(np.diff(hdul[1].data["DISTANCE"]) >= 0)
        assert "MAG_GAIA" in hdul[1].columns.names


def test_both_layouts_read_the_same(small_visit):
    drp, sim = read_visit(small_visit.drp_folder), read_visit(small_visit.cheopsim_folder)
    assert sim.catalogue.magnitude_column == "MAG_CHEOPS"
    assert drp.catalogue.magnitude_column == "MAG_GAIA"
    assert np.array_equal(drp.cube[5], sim.cube[5], equal_nan=True)
    assert np.array_equal(drp.roll_angle, sim.roll_angle)
    assert drp.visit_id == sim.visit_id and drp.nexp == sim.nexp


def test_visit_series_agree_with_truth(small_visit):
    visit = read_visit(small_visit.drp_folder)
    truth = read_truth(small_visit.truth_path)
    frames = truth.frames
    assert np.allclose(visit.roll_angle, frames["ROLL_ANGLE"])
    assert np.allclose(visit.mjd_time, frames["MJD_TIME"])
    assert np.allclose(visit.target_x, frames["TARGET_X"], atol=1e-4)
    assert np.allclose(visit.ron_electrons, frames["READ_NOISE"])
    # the DRP-like background is what the simulated DRP subtracted
    assert np.allclose(visit.background_per_pixel(), frames["BACKGROUND_ESTIMATE"])
    mean_dark = frames["DARK"] / truth.texptime
    assert np.allclose(visit.dark_per_pixel() / truth.texptime, mean_dark, rtol=0.5)
    # times are TT and BJD_TDB like the real products
    assert 0 < np.median(visit.bjd_time - visit.mjd_time - 2400000.5) * 1440 < 8.4 or \
        -8.4 < np.median(visit.bjd_time - visit.mjd_time - 2400000.5) * 1440 < 0


def test_positions_rotate_with_the_roll_and_match_the_catalogue(small_visit):
    visit = read_visit(small_visit.drp_folder)
    truth = read_truth(small_visit.truth_path)
    stars = truth.stars
    # distances to the target stay constant while the angle turns with the roll
    dx, dy = truth.x - truth.x[0], truth.y - truth.y[0]
    assert np.allclose(np.hypot(dx, dy), stars["DISTANCE"][:, None], atol=1e-6)
    angle = np.unwrap(np.arctan2(dy[4], dx[4]))
    roll = np.unwrap(np.radians(truth.frames["ROLL_ANGLE"]))
    assert np.allclose(angle - angle[0], -(roll - roll[0]), atol=1e-9)
    # catalogue RA/DEC map back to the true offsets (PIPE's mapping)
    cat = visit.catalogue
    rows = stars["CATALOGUE_ROW"]
    listed = rows >= 0
    cx, cy = sky_offsets(cat.ra[rows[listed]], cat.dec[rows[listed]], cat.centre_ra,
                         cat.centre_dec)
    assert np.allclose(cx, stars["DX0"][listed], atol=1e-3)
    assert np.allclose(cy, stars["DY0"][listed], atol=1e-3)
    # the per-frame WCS of the COR metadata puts each star on its true position
    with fits.open(visit.subarray_path) as hdul:
        meta = hdul["SCI_COR_ImageMetadata"].data
        k = 17
        header = fits.Header({key: meta[key][k] for key in
                              ("CTYPE1", "CTYPE2", "CRPIX1", "CRPIX2", "CRVAL1", "CRVAL2",
                               "CD1_1", "CD1_2", "CD2_1", "CD2_2")})
    x, y = WCS(header).all_world2pix(stars["RA"], stars["DEC"], 0)
    # exact TAN projection vs PIPE's flat-sky mapping: < 0.03 px within 140 px of the target
    assert np.allclose(x, truth.x[:, k], atol=0.05) and np.allclose(y, truth.y[:, k], atol=0.05)


def test_isolated_star_image_centroid_is_at_its_true_position(small_visit):
    visit = read_visit(small_visit.drp_folder)
    truth = read_truth(small_visit.truth_path)
    star = 4  # isolated, transiting, target+1 mag
    for k in (0, 30, 59):
        x0, y0 = truth.x[star, k], truth.y[star, k]
        yy, xx = np.mgrid[int(y0) - 6:int(y0) + 7, int(x0) - 6:int(x0) + 7]
        img = np.asarray(visit.cube[k])[yy, xx]
        # the three-lobed PSF's light centre sits ~0.3 px off its nominal centre
        cx, cy = (img * xx).sum() / img.sum(), (img * yy).sum() / img.sum()
        assert np.hypot(cx - x0, cy - y0) < 1.5


def test_noise_free_flux_is_conserved_within_one_percent(tmp_path):
    cfg = SimulationConfig(n_frames=12, noise_free=True, background_rate=0.0,
                           stray_light_rate=0.0,
                           field=(StarSpec(60.0, 45.0, 1.0),), layouts=("drp",))
    visit_paths = simulate_visit(cfg, tmp_path / "v")
    visit = read_visit(visit_paths.drp_folder)
    truth = read_truth(visit_paths.truth_path)
    # add back what the DRP subtracted (its background estimate picks up PSF wings)
    images = np.asarray(visit.cube) + truth.frames["BACKGROUND_ESTIMATE"][:, None, None]
    target, _, _ = circular_aperture_sums(images, truth.x[0], truth.y[0], 64.0)
    # the PSF reaches 100 px, so 2 % of the target's light falls outside this aperture, and
    # the other star's halo reaches into it: count the share of each inside it
    assert np.allclose(target, _spill(truth, 0, 0) + _spill(truth, 1, 0), rtol=0.01)  # 1e-5
    assert np.all(_spill(truth, 0, 0) < 0.99 * truth.flux[0])  # the far wings are there
    inside = np.hypot(truth.x[1] - FIELD_CENTRE[0], truth.y[1] - FIELD_CENTRE[1]) < 35
    if inside.any():
        star, _, _ = circular_aperture_sums(images[inside], truth.x[1][inside],
                                            truth.y[1][inside], 64.0)
        assert np.allclose(star, truth.flux[1][inside], rtol=0.01)


def _spill(truth, source: int, into: int) -> np.ndarray:
    """Flux of star ``source`` within 64 px of star ``into`` (from the PSF model; the
    model is normalised to the star's flux over its 100 px reach)."""
    psf = PixelPsf()
    out = np.zeros(truth.flux.shape[1])
    for k in range(len(out)):
        img = np.zeros((200, 200))
        psf.add_star(img, truth.x[source, k], truth.y[source, k], truth.flux[source, k])
        out[k] = circular_aperture_sums(img[None], truth.x[into, k:k + 1],
                                        truth.y[into, k:k + 1], 64.0)[0][0]
    return out


def test_background_and_noise_levels_are_realistic(small_visit):
    truth = read_truth(small_visit.truth_path)
    texp = truth.texptime
    sky = truth.frames["BACKGROUND"] / texp
    assert 3.0 <= np.median(sky) <= 4.5  # e/px/s, as in real 2023-24 visits
    assert np.median(truth.frames["DARK"]) / texp == pytest.approx(0.8, rel=0.5)
    assert np.all(truth.frames["READ_NOISE"] == 14.0)
    assert len(truth.cosmics) > 0


def test_a_real_timeline_drives_the_simulation(tmp_path):
    real = REAL_LIGHTCURVES[1]  # TOI-3362: 60 s x 1
    cfg = SimulationConfig(n_frames=30, timeline=str(real), layouts=("cheopsim",))
    paths = simulate_visit(cfg, tmp_path / "v")
    assert paths.drp_folder is None
    visit = read_visit(paths.cheopsim_folder)
    from archi.io import read_lightcurve
    _, cols, _ = read_lightcurve(real)
    assert np.allclose(visit.roll_angle, cols["ROLL_ANGLE"][:30])
    assert np.allclose(visit.mjd_time, cols["MJD_TIME"][:30], atol=1e-9)
    assert visit.exptime == 60.0 and visit.nexp == 1
    assert np.allclose(visit.centroid_x, cols["CENTROID_X"][:30], atol=1e-4)


def test_transit_is_injected_in_the_truth(tmp_path):
    cfg = SimulationConfig(n_frames=200, layouts=("drp",))
    truth = read_truth(simulate_visit(cfg, tmp_path / "v").truth_path)
    transiting = np.flatnonzero(np.char.strip(truth.stars["SIGNAL"]) == "transit")[0]
    relative = truth.flux[transiting] / truth.flux[transiting].max()
    assert 1 - relative.min() == pytest.approx(truth.stars["DEPTH"][transiting], rel=1e-6)
