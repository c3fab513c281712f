"""Export of light curves: FITS and text round trips, run-info file, atomic writing."""

from __future__ import annotations

import math
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import yaml
from astropy.io import fits

import archi
from archi.errors import CorruptProductError, ProductNotFoundError
from archi.io import lightcurves_text, read_visit
from archi.io.lightcurves import read_lightcurves_fits, write_lightcurves_fits
from archi.io.lightcurves_text import (
    read_lightcurves_text,
    read_star_text,
    write_lightcurves_text,
    write_star_texts,
)
from archi.io.run_info import write_run_info
from archi.simulate import SimulationConfig, read_truth, simulate_visit
from archi.stars import (
    FLAG_NOT_MEASURED,
    FLAG_OUT_OF_BOUNDS,
    FLAG_REJECT,
    StarLightCurves,
    StarList,
    Tracks,
    event_flags,
)

UNMATCHED = 2  # star made image-only (no catalogue match) in the test light curves


def make_lightcurves(sim, options: dict | None = None) -> StarLightCurves:
    """Realistic light curves of a simulated visit: truth fluxes plus noise, truth positions."""
    visit = read_visit(sim.drp_folder)
    truth = read_truth(sim.truth_path)
    rng = np.random.default_rng(3)
    n_stars, n_frames = truth.flux.shape
    flux_err = np.sqrt(truth.flux + 400.0)
    flux = truth.flux + rng.normal(0.0, 1.0, truth.flux.shape) * flux_err
    flag = np.zeros((n_stars, n_frames), dtype=np.int32)
    flag |= event_flags(visit.event)[None, :]
    flag[n_stars - 1, :5] |= FLAG_OUT_OF_BOUNDS
    measured = np.ones((n_stars, n_frames), dtype=bool)
    measured[1, 7] = False
    flag[1, 7] |= FLAG_NOT_MEASURED
    s = truth.stars
    row = np.asarray(s["CATALOGUE_ROW"], dtype=np.int64).copy()
    ids = np.asarray(s["ID"]).astype(str)
    ra, dec, mag = (np.asarray(s[c], dtype=float).copy() for c in ("RA", "DEC", "MAG"))
    row[UNMATCHED] = -1
    ids[UNMATCHED] = ""
    ra[UNMATCHED] = dec[UNMATCHED] = mag[UNMATCHED] = np.nan
    stars = StarList(x0=truth.x[:, 0].copy(), y0=truth.y[:, 0].copy(), catalogue_row=row,
                     source_id=ids, ra=ra, dec=dec, mag=mag,
                     brightness=np.asarray(s["RATE"], dtype=float) * truth.texptime)
    methods = tuple("circle" if k % 3 else "shape" for k in range(n_stars))
    factors = np.array([5.5 + 0.25 * k if m == "circle" else float(2 + k % 4)
                        for k, m in enumerate(methods)])
    # a simple point-to-point scatter [ppm] (the K2 CDPP needs more than 40 frames)
    cdpp = np.std(np.diff(flux, axis=1), axis=1) / np.median(flux, axis=1) * 1e6
    cdpp[n_stars - 1] = np.nan  # undefined metric: must be left out of the FITS header
    return StarLightCurves(
        visit_key=visit.visit_id.file_key, mjd_time=visit.mjd_time, bjd_time=visit.bjd_time,
        roll_angle=visit.roll_angle, stars=stars,
        tracks=Tracks(x=truth.x.copy(), y=truth.y.copy(), measured=measured),
        flux=flux, flux_err=flux_err, flag=flag, methods=methods, factors=factors,
        npix=np.pi * factors**2, cdpp=cdpp,
        options=options if options is not None else {
            "method": "circle", "initial_detect": "fits", "detect_mode": "dynam",
            "grid_bg": 0, "CDPP_type": "K2"})


@pytest.fixture(scope="module")
def sim(tmp_path_factory):
    root = tmp_path_factory.mktemp("export_sim") / "visit"
    return simulate_visit(SimulationConfig(n_frames=40, layouts=("drp",)), root)


@pytest.fixture(scope="module")
def lc(sim):
    return make_lightcurves(sim)


# --------------------------------------------------------------------------------------------
# FITS
# --------------------------------------------------------------------------------------------

def test_fits_round_trip_preserves_everything(lc, tmp_path):
    path = write_lightcurves_fits(lc, tmp_path / "out" / "lc.fits")
    back = read_lightcurves_fits(path)
    assert back.visit_key == lc.visit_key
    assert back.options == lc.options
    for name in ("mjd_time", "bjd_time", "roll_angle", "flux", "flux_err", "flag", "factors",
                 "npix", "cdpp"):
        np.testing.assert_array_equal(getattr(back, name), getattr(lc, name), err_msg=name)
    for name in ("x", "y", "measured"):
        np.testing.assert_array_equal(getattr(back.tracks, name), getattr(lc.tracks, name))
    for name in ("x0", "y0", "catalogue_row", "source_id", "ra", "dec", "mag", "brightness"):
        np.testing.assert_array_equal(getattr(back.stars, name), getattr(lc.stars, name),
                                      err_msg=name)
    assert back.methods == lc.methods
    assert back.mjd_time.dtype == np.float64 and back.flag.dtype == np.int32


def test_fits_layout_keywords_units_and_types(lc, tmp_path):
    path = write_lightcurves_fits(lc, tmp_path / "lc.fits", software_version="9.8.7")
    with fits.open(path) as hdul:
        primary = hdul[0].header
        assert hdul[0].data is None
        assert (primary["METHOD"], primary["INITIAL"], primary["DETECT"], primary["GRID"],
                primary["CDPPTYPE"]) == ("circle", "fits", "dynam", 0, "K2")
        assert primary["NSTARS"] == lc.n_stars and primary["VISIT"] == lc.visit_key
        assert primary["VERSION"] == "9.8.7" and primary["FORMAT"] == "archi-lightcurves"
        assert [h.name for h in hdul[1:]] == [f"STAR_{k}" for k in range(lc.n_stars)]
        units = {"TIME": "d", "MJD_TIME": "d", "BJD_TIME": "d", "ROLL_ANGLE": "deg",
                 "FLUX": "ct", "FLUX_ERR": "ct", "FLUX_RAW": "ct", "CONTA": "ct",
                 "XC": "pixel", "YC": "pixel", "CENTROID_X": "pixel", "CENTROID_Y": "pixel",
                 "BACKGROUND": "ct/pixel", "FLAG": None, "EVENT": None, "STATUS": None}
        for k, hdu in enumerate(hdul[1:]):
            assert isinstance(hdu, fits.BinTableHDU)
            assert hdu.columns.names == list(units)
            assert {c.name: c.unit for c in hdu.columns} == units
            assert [c.format for c in hdu.columns] == ["D"] * 13 + ["J"] * 3
            # no field model: FLUX is the mask's sum, the neighbours' light unknown
            assert np.array_equal(hdu.data["FLUX_RAW"], hdu.data["FLUX"])
            assert np.isnan(hdu.data["CONTA"]).all() and "CONTAM" not in hdu.header
            assert hdu.data["MJD_TIME"].dtype.kind == "f" and hdu.data["MJD_TIME"].itemsize == 8
            h = hdu.header
            assert h["STAR"] == k
            assert h["X0"] == lc.tracks.x[k, 0] and h["Y0"] == lc.tracks.y[k, 0]
            assert h["DIST"] == pytest.approx(math.hypot(h["X0"] - lc.stars.x0[0],
                                                         h["Y0"] - lc.stars.y0[0]))
            assert h["MASKSIZE"] == lc.factors[k] and h["MASKTYPE"] == lc.methods[k]
            assert h["NPIX"] == lc.npix[k]
            if k == UNMATCHED:
                for key in ("RA", "DEC", "MAG", "CATID"):
                    assert key not in h, key
                assert h["CATROW"] == -1
            else:
                assert (h["RA"], h["DEC"], h["MAG"]) == (lc.stars.ra[k], lc.stars.dec[k],
                                                        lc.stars.mag[k])
                assert h["CATID"] == lc.stars.source_id[k]
            if k == lc.n_stars - 1:
                assert "CDPP" not in h  # NaN metric left out
            else:
                assert h["CDPP"] == lc.cdpp[k]
        # one-minute cadence survives (float32 times collapsed it to ~6 min: B17)
        assert np.all(np.diff(hdul["STAR_0"].data["MJD_TIME"]) > 0)


def test_fits_round_trip_of_the_neighbours_light(lc, tmp_path):
    """With a field model the file carries the mask's sum and the neighbours' light beside
    the star's own, and CONTAM = median CONTA / median FLUX on good frames."""
    rng = np.random.default_rng(5)
    conta = lc.flux * rng.uniform(0.1, 2.0, (lc.n_stars, 1))
    decontaminated = replace(lc, flux_raw=lc.flux + conta, conta=conta)
    path = write_lightcurves_fits(decontaminated, tmp_path / "lc.fits")
    back = read_lightcurves_fits(path)
    np.testing.assert_array_equal(back.flux_raw, decontaminated.flux_raw)
    np.testing.assert_array_equal(back.conta, conta)
    with fits.open(path) as hdul:
        for k in range(lc.n_stars):
            good = lc.flag[k] == 0
            expected = np.median(conta[k, good]) / np.median(lc.flux[k, good])
            assert hdul[f"STAR_{k}"].header["CONTAM"] == pytest.approx(expected, rel=1e-12)
    assert np.isnan(read_lightcurves_fits(write_lightcurves_fits(
        lc, tmp_path / "plain.fits")).contamination).all()


def test_fits_header_survives_callable_and_long_options(lc, tmp_path):
    def my_metric(flux, time):
        return 1.0

    opts = dict(lc.options, CDPP_type=my_metric, detect_mode="dynam" * 40,
                method="circle 'quoted'\nsecond line é")
    other = StarLightCurves(**{**lc.__dict__, "options": opts})
    path = write_lightcurves_fits(other, tmp_path / "lc.fits")
    with fits.open(path) as hdul:
        h = hdul[0].header
        assert h["CDPPTYPE"].endswith("my_metric") and "0x" not in h["CDPPTYPE"]
        assert len(h["DETECT"]) <= 68 and h["DETECT"].endswith("...")
        assert h["METHOD"] == "circle 'quoted' second line ?"
        assert all(len(card.image) == 80 for card in h.cards)  # no CONTINUE cards
    back = read_lightcurves_fits(path)
    assert back.options["CDPP_type"] == h["CDPPTYPE"]


def test_fits_not_measured_positions_are_flagged(lc, tmp_path):
    measured = lc.tracks.measured.copy()
    measured[0, 3] = False  # flag bit not set by the caller
    other = StarLightCurves(**{**lc.__dict__,
                               "tracks": Tracks(lc.tracks.x, lc.tracks.y, measured)})
    back = read_lightcurves_fits(write_lightcurves_fits(other, tmp_path / "lc.fits"))
    assert back.flag[0, 3] & FLAG_NOT_MEASURED and not back.tracks.measured[0, 3]


def test_fits_reader_rejects_other_files(lc, tmp_path):
    with pytest.raises(ProductNotFoundError):
        read_lightcurves_fits(tmp_path / "missing.fits")
    text = tmp_path / "text.fits"
    text.write_text("not a FITS file\n")
    with pytest.raises(CorruptProductError, match="text.fits"):
        read_lightcurves_fits(text)
    empty = tmp_path / "empty.fits"
    fits.PrimaryHDU().writeto(empty)
    with pytest.raises(CorruptProductError, match="NSTARS"):
        read_lightcurves_fits(empty)
    good = write_lightcurves_fits(lc, tmp_path / "lc.fits")
    with fits.open(good) as hdul:
        del hdul[2]  # drop STAR_1
        hdul.writeto(tmp_path / "cut.fits")
    with fits.open(good) as hdul:
        hdul[1] = fits.BinTableHDU.from_columns(
            [c for c in hdul[1].columns if c.name != "FLUX_ERR"], header=hdul[1].header)
        hdul.writeto(tmp_path / "nocol.fits")
    with pytest.raises(CorruptProductError, match="STAR_1"):
        read_lightcurves_fits(tmp_path / "cut.fits")
    with pytest.raises(CorruptProductError, match="FLUX_ERR"):
        read_lightcurves_fits(tmp_path / "nocol.fits")


def test_fits_rejects_inconsistent_light_curves(lc, tmp_path):
    bad = StarLightCurves(**{**lc.__dict__, "flux_err": lc.flux_err[:, :-1]})
    with pytest.raises(ValueError, match="flux_err"):
        write_lightcurves_fits(bad, tmp_path / "lc.fits")
    assert not (tmp_path / "lc.fits").exists()


def test_fits_write_is_atomic(lc, tmp_path, monkeypatch):
    dest = tmp_path / "lc.fits"
    real = fits.HDUList.writeto

    def broken(self, name, *args, **kwargs):
        Path(name).write_bytes(b"SIMPLE  =                    T" + b" " * 2000)  # partial
        raise OSError("disk full")

    monkeypatch.setattr(fits.HDUList, "writeto", broken)
    with pytest.raises(OSError, match="disk full"):
        write_lightcurves_fits(lc, dest)
    assert list(tmp_path.iterdir()) == []
    monkeypatch.setattr(fits.HDUList, "writeto", real)
    write_lightcurves_fits(lc, dest)
    old = dest.read_bytes()
    monkeypatch.setattr(fits.HDUList, "writeto", broken)
    with pytest.raises(OSError):
        write_lightcurves_fits(lc, dest)
    assert dest.read_bytes() == old  # the previous file is untouched
    assert [p.name for p in tmp_path.iterdir()] == ["lc.fits"]


# --------------------------------------------------------------------------------------------
# Text
# --------------------------------------------------------------------------------------------

def test_text_round_trip_and_header(lc, tmp_path):
    path = write_lightcurves_text(lc, tmp_path / "lc.txt")
    lines = path.read_text().splitlines()
    header_line = next(line for line in lines if not line.startswith("#"))
    expected = ["MJD_TIME", "ROLL_ANGLE"]
    for k in range(lc.n_stars):
        expected += [f"FLUX_{k}", f"FLUX_ERR_{k}", f"FLAG_{k}"]
    assert header_line == ";".join(expected)
    assert "# Method - circle" in lines and "# Detect mode - dynam" in lines
    assert "# Initial detection - fits" in lines and "# Background grid - 0" in lines
    assert len(lines) == lines.index(header_line) + 1 + lc.n_frames

    back = read_lightcurves_text(path)
    assert back.visit_key == lc.visit_key and back.software_version == archi.__version__
    assert back.options == {"method": "circle", "detect_mode": "dynam",
                            "initial_detect": "fits", "grid_bg": "0", "CDPP_type": "K2"}
    np.testing.assert_array_equal(back.mjd_time, lc.mjd_time)  # full precision
    np.testing.assert_array_equal(back.roll_angle, lc.roll_angle)
    np.testing.assert_array_equal(back.flux, lc.flux)
    np.testing.assert_array_equal(back.flux_err, lc.flux_err)
    expected_flag = lc.flag | np.where(lc.tracks.measured, 0, FLAG_NOT_MEASURED)
    np.testing.assert_array_equal(back.flag, expected_flag)
    assert [s.number for s in back.stars] == list(range(lc.n_stars))
    assert [s.method for s in back.stars] == list(lc.methods)
    np.testing.assert_array_equal([s.factor for s in back.stars], lc.factors)
    np.testing.assert_array_equal([s.cdpp for s in back.stars], lc.cdpp)  # NaN included
    oob = [s.out_of_bounds for s in back.stars]
    assert oob[-1] == pytest.approx(5 / lc.n_frames) and oob[0] == 0.0


def test_text_reader_rejects_other_files(tmp_path):
    bad = tmp_path / "bad.txt"
    bad.write_text("# x\nTIME;FLUX\n1;2\n")
    with pytest.raises(CorruptProductError, match="header line"):
        read_lightcurves_text(bad)
    ragged = tmp_path / "ragged.txt"
    ragged.write_text("MJD_TIME;ROLL_ANGLE;FLUX_0;FLUX_ERR_0\n1;2;3\n")
    with pytest.raises(CorruptProductError, match="line 2"):
        read_lightcurves_text(ragged)


def test_star_texts(lc, tmp_path):
    paths = write_star_texts(lc, tmp_path / "stars")
    assert [p.name for p in paths] == [f"star_{k}.txt" for k in range(lc.n_stars)]
    info, cols = read_star_text(paths[1])
    assert info["star"] == "1" and info["method"] == lc.methods[1]
    assert float(info["factor"]) == lc.factors[1] and "ra" in info
    np.testing.assert_array_equal(cols["FLUX"], lc.flux[1])
    np.testing.assert_array_equal(cols["XC"], lc.tracks.x[1])
    np.testing.assert_array_equal(cols["BJD_TIME"], lc.bjd_time)
    np.testing.assert_array_equal(cols["FLAG"], lc.flag[1])
    info, _ = read_star_text(paths[UNMATCHED])
    assert "ra" not in info and "catalogue_id" not in info


def test_text_write_is_atomic(lc, tmp_path, monkeypatch):
    calls = {"n": 0}
    real = lightcurves_text._fmt

    def failing(value):
        calls["n"] += 1
        if calls["n"] > 200:  # in the middle of the rows
            raise RuntimeError("killed")
        return real(value)

    monkeypatch.setattr(lightcurves_text, "_fmt", failing)
    with pytest.raises(RuntimeError, match="killed"):
        write_lightcurves_text(lc, tmp_path / "lc.txt")
    assert list(tmp_path.iterdir()) == []


# --------------------------------------------------------------------------------------------
# Run info
# --------------------------------------------------------------------------------------------

def test_run_info_content(lc, sim, tmp_path):
    def metric(flux, time):
        return 0.0

    options = {"method": "circle", "CDPP_type": metric, "val_range": (3, 9), "step": 0.5,
               "results_folder": tmp_path / "res", "grid_bg": np.int64(0)}
    path = write_run_info(tmp_path / "info" / "run_info.yaml", visit_folder=sim.drp_folder,
                          options=options, lc=lc, extra={"elapsed_s": np.float64(1.5)})
    doc = yaml.safe_load(path.read_text())
    assert doc["format"] == "archi-run-info"
    assert doc["software"]["version"] == archi.__version__
    assert doc["inputs"]["visit_folder"] == str(sim.drp_folder.absolute())
    assert doc["inputs"]["visit"] == lc.visit_key and doc["inputs"]["n_frames"] == lc.n_frames
    products = doc["inputs"]["products"]
    assert "SCI_COR_SubArray" in products["subarray"]
    assert set(products["lightcurves"]) == {"DEFAULT", "OPTIMAL", "RINF", "RSUP"}
    assert products["star_catalogue"] and "StarCatalogue" in products["star_catalogue"]
    assert doc["options"]["val_range"] == [3, 9] and doc["options"]["grid_bg"] == 0
    assert doc["options"]["CDPP_type"].endswith("metric")
    assert doc["options"]["results_folder"] == str(tmp_path / "res")
    assert doc["extra"] == {"elapsed_s": 1.5}
    stars = doc["stars"]
    assert [s["number"] for s in stars] == list(range(lc.n_stars))
    s1 = stars[1]
    assert s1["catalogue"] == {"id": str(lc.stars.source_id[1]),
                               "row": int(lc.stars.catalogue_row[1]),
                               "ra": float(lc.stars.ra[1]), "dec": float(lc.stars.dec[1]),
                               "mag": float(lc.stars.mag[1])}
    assert (s1["x0"], s1["y0"]) == (float(lc.stars.x0[1]), float(lc.stars.y0[1]))
    assert s1["distance"] == pytest.approx(float(lc.stars.distance[1]))
    assert (s1["method"], s1["factor"], s1["npix"]) == (lc.methods[1], float(lc.factors[1]),
                                                        float(lc.npix[1]))
    assert s1["cdpp"] == float(lc.cdpp[1])
    assert s1["flagged_fraction"] == pytest.approx(np.mean((lc.flag[1] & FLAG_REJECT) != 0))
    assert stars[UNMATCHED]["catalogue"] is None
    assert stars[-1]["cdpp"] is None  # NaN metric
    assert stars[-1]["out_of_bounds_fraction"] == pytest.approx(5 / lc.n_frames)


def test_run_info_without_products(lc, tmp_path):
    path = write_run_info(tmp_path / "run_info.yaml", visit_folder=tmp_path / "nowhere",
                          options={}, lc=lc)
    doc = yaml.safe_load(path.read_text())
    assert doc["inputs"]["products"] == {} and "does not exist" in doc["inputs"]["products_error"]
    assert "extra" not in doc
