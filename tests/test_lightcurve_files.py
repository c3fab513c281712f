"""lightcurves.fits as CHEOPS users open it (issue 16): astropy and lightkurve read a star
in one line without warnings, TIME is the DRP's BJD_TIME, the DRP's identity keywords and
decorrelation series are there, checksums verify; archi.read_lightcurves and
archi.to_lightkurve."""

from __future__ import annotations

from pathlib import Path
import warnings

import numpy as np
import pytest
from astropy.io import fits
from astropy.table import Table
from astropy.timeseries import TimeSeries

import archi
from archi import api
from archi.io.drp import read_lightcurve
from archi.io.lightcurve_values import is_matched
from archi.io.lightcurves import read_lightcurves_fits, write_lightcurves_fits
from archi.io.pipe_files import write_pipe_files
from archi.options import Options
from archi.stars import FLAG_REJECT

IDENTITY = ("TELESCOP", "INSTRUME", "TARGNAME", "OBSID", "RA_TARG", "DEC_TARG", "EXPTIME",
            "NEXP", "TEXPTIME", "PIPE_VER", "PI_NAME", "SPECTYPE", "MAG_G", "PROGTYPE")


@pytest.fixture(scope="module")
def extracted(small_visit, tmp_path_factory):
    """The small visit's light curves (circles of 8 px, no factor search) and their file."""
    options = Options(method="circle")
    visit = api.load_visit(small_visit.drp_folder, options)
    prepared = api.prepare(visit, options)
    curves = api.extract(visit, prepared, {j: 8.0 for j in range(prepared.stars.n_stars)})
    path = write_lightcurves_fits(curves, tmp_path_factory.mktemp("lc") / "lightcurves.fits")
    return visit, curves, path


@pytest.fixture(scope="module")
def drp(small_visit):
    """The simulated DRP DEFAULT light curve: (columns, header)."""
    (lc_path,) = small_visit.drp_folder.glob("*SCI_COR_Lightcurve-DEFAULT_*.fits")
    _, columns, header = read_lightcurve(lc_path)
    return columns, header


def test_astropy_reads_a_star_without_warnings_and_time_is_the_drp_bjd(extracted, drp):
    _, curves, path = extracted
    columns, _ = drp
    bjd = np.asarray(columns["BJD_TIME"], float)
    star = curves.n_stars - 1
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        plain = Table.read(path, hdu=f"STAR_{star}")
        native = Table.read(path, hdu=f"STAR_{star}", astropy_native=True)
        series = TimeSeries.read(path, hdu=f"STAR_{star}", time_column="TIME",
                                 astropy_native=True)
    # exact to float64 rounding of BJD - 2457000 (measured 0 d; limit 1e-6 d = 86 ms)
    assert np.max(np.abs(np.asarray(plain["TIME"]) + 2457000 - bjd)) < 1e-6
    assert native["TIME"].scale == "tdb" and series.time.scale == "tdb"
    assert np.max(np.abs(native["TIME"].jd - bjd)) < 1e-6
    assert np.max(np.abs(series.time.jd - bjd)) < 1e-6
    assert str(plain["FLUX"].unit) == "ct" and str(plain["ROLL_ANGLE"].unit) == "deg"
    assert np.array_equal(np.asarray(series["FLUX"]), curves.flux[star], equal_nan=True)


def test_identity_keywords_equal_the_drp_and_checksums_verify(extracted, drp):
    _, _, path = extracted
    _, header = drp
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a wrong CHECKSUM or DATASUM warns
        with fits.open(path, checksum=True) as hdul:
            primary = hdul[0].header
            for key in IDENTITY:
                assert primary[key] == header[key], key
            assert primary["TELESCOP"] == "CHEOPS"
            for hdu in hdul:
                assert "CHECKSUM" in hdu.header and "DATASUM" in hdu.header
                assert hdu.verify_checksum() == 1 and hdu.verify_datasum() == 1
            names = {primary[f"FLAGB{i}"] for i in range(10)}
            assert {"out_of_bounds", "bad_frame", "saa", "earth", "sun"} <= names
            star = hdul["STAR_1"].header
            assert (star["TIMESYS"], star["TIMEREF"], star["TIMEUNIT"]) == (
                "TDB", "SOLARSYSTEM", "d")
            assert (star["BJDREFI"], star["BJDREFF"]) == (2457000, 0.0)


def test_decorrelation_series_are_the_drps(extracted, drp, small_visit):
    visit, curves, path = extracted
    columns, _ = drp
    with fits.open(small_visit.drp_folder / visit.subarray_path.name) as hdul:
        therm = np.asarray(hdul["SCI_COR_ImageMetadata"].data["thermFront_2"], float)
    assert np.ptp(therm) > 0.1  # the simulator's ramp: a series, not a constant
    data = fits.getdata(path, "STAR_2")
    assert np.allclose(data["thermFront_2"], therm, rtol=0, atol=1e-6)  # float32 in the DRP
    background = np.asarray(columns["BACKGROUND"], float) / (np.pi * 25.0**2)
    assert np.allclose(data["BACKGROUND"], background, rtol=1e-12, atol=0)
    # the CCD position: the subarray position plus the window offset; the target is
    # tracked at the DRP's centroid, so its CENTROID_X/Y are the DRP's (measured 0 px)
    assert np.array_equal(data["CENTROID_X"], data["XC"] + visit.x_winoff)
    target = fits.getdata(path, "STAR_0")
    offset = np.hypot(target["CENTROID_X"] - columns["CENTROID_X"],
                      target["CENTROID_Y"] - columns["CENTROID_Y"])
    assert np.max(offset) < 1e-3
    back = read_lightcurves_fits(path)
    assert back.context.keywords == curves.context.keywords
    assert np.array_equal(back.context.therm_front_2, curves.context.therm_front_2)
    assert back.context.window_offset == (visit.x_winoff, visit.y_winoff)


def test_read_lightcurves_gives_one_table_per_star(extracted, drp):
    _, curves, path = extracted
    columns, header = drp
    tables = archi.read_lightcurves(path)
    assert len(tables) == curves.n_stars
    for k, table in enumerate(tables):
        assert table.meta["STAR"] == k and table.meta["TARGNAME"] == header["TARGNAME"]
        assert np.max(np.abs(table["TIME"].jd - columns["BJD_TIME"])) < 1e-6
        assert np.array_equal(np.asarray(table["FLUX"]), curves.flux[k], equal_nan=True)


def test_to_lightkurve_and_lightkurve_read(extracted, drp):
    lightkurve = pytest.importorskip("lightkurve", reason="lightkurve (extra 'lightkurve') "
                                     "is not installed")
    _, curves, path = extracted
    columns, _ = drp
    star = 3
    lc = archi.to_lightkurve(path, star)
    assert isinstance(lc, lightkurve.LightCurve)
    assert np.max(np.abs(lc.time.tdb.jd - columns["BJD_TIME"])) < 1e-6
    assert np.array_equal(lc.flux.value, curves.flux[star], equal_nan=True)
    assert str(lc.flux.unit) == "electron" and np.array_equal(lc.quality, curves.flag[star])
    assert lc.meta["LABEL"] == str(curves.stars.source_id[star])
    read = lightkurve.read(str(path), ext=f"STAR_{star}")  # lightkurve's own generic reader
    assert np.max(np.abs(read.time.tdb.jd - columns["BJD_TIME"])) < 1e-6
    assert np.array_equal(read.flux.value, curves.flux[star], equal_nan=True)


def test_files_of_layout_3_are_still_read(extracted, tmp_path):
    """A layout-3 file (no TIME, 'electron' units, no visit keywords) reads as before."""
    _, curves, path = extracted
    old = tmp_path / "old.fits"
    with fits.open(path) as hdul:
        primary = hdul[0].header.copy()
        primary["FORMATV"] = 3
        stars = []
        for hdu in hdul[1:]:
            keep = [c for c in hdu.columns if c.name in (
                "MJD_TIME", "BJD_TIME", "ROLL_ANGLE", "FLUX", "FLUX_ERR", "FLUX_RAW", "CONTA",
                "XC", "YC", "FLAG", "EVENT", "STATUS")]
            for c in keep:
                if c.unit == "ct":
                    c.unit = "electron"
            table = fits.BinTableHDU.from_columns(keep, name=hdu.name)
            for key in ("STAR", "X0", "Y0", "MASKTYPE", "MASKSIZE", "NPIX", "CDPP"):
                if key in hdu.header:
                    table.header[key] = hdu.header[key]
            stars.append(table)
        for key in ("X_WINOFF", "Y_WINOFF", "X_LOCATN", "Y_LOCATN", "DRP_AP"):
            del primary[key]
        fits.HDUList([fits.PrimaryHDU(header=primary), *stars]).writeto(old)
    back = read_lightcurves_fits(old)
    assert back.context is None
    assert np.array_equal(back.flux, curves.flux, equal_nan=True)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        tables = archi.read_lightcurves(old)
    assert str(tables[0]["FLUX"].unit) == "ct"
    assert np.array_equal(tables[0]["TIME"].jd, curves.bjd_time)


# --------------------------------------------------------------------------------------------
# Per star, a file pycheops loads as PIPE's output (outputs: pycheops_files)
# --------------------------------------------------------------------------------------------

PIPE_LAYOUT = {"MJD_TIME": "d", "BJD_TIME": "d", "FLUX": "ct", "FLUXERR": "ct",
               "BG": "ct / pix", "ROLL": "deg", "XC": "pix", "YC": "pix", "FLAG": None,
               "thermFront_2": "deg_C"}  # PIPE manual 4.2 (cheops_formats.md 2.3), units FITS
PYCHEOPS_KEYWORDS = ("TARGNAME", "OBSID", "DATE", "PI_NAME", "RA_TARG", "DEC_TARG",
                     "SPECTYPE", "NEXP", "EXPTIME", "TEXPTIME", "PIPE_VER")


@pytest.fixture(scope="module")
def pipe_files(extracted, tmp_path_factory):
    _, curves, _ = extracted
    return write_pipe_files(curves, tmp_path_factory.mktemp("pycheops"))


def test_pipe_files_have_pipes_columns_and_what_pycheops_reads(extracted, drp, pipe_files):
    _, curves, _ = extracted
    _, header = drp
    assert [p.name for p in pipe_files] == [f"star_{k}_sa.fits" for k in range(curves.n_stars)]
    for k, path in enumerate(pipe_files):
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            table = Table.read(path)  # as pycheops reads it: the first table
        assert {c: (str(table[c].unit) if table[c].unit else None) for c in table.colnames} \
            == PIPE_LAYOUT
        assert table["FLAG"].dtype.kind == "i" and table["FLAG"].dtype.itemsize == 2
        for key in PYCHEOPS_KEYWORDS:
            assert key in table.meta, key
        assert table.meta["OBSID"] == header["OBSID"] and table.meta["NEXP"] == header["NEXP"]
        expected = header["TARGNAME"] if k == 0 else f"{header['TARGNAME']} star {k}"
        assert table.meta["TARGNAME"] == expected
        if k and is_matched(curves.stars, k):
            assert table.meta["MAG_G"] == curves.stars.mag[k]
        assert np.array_equal(table["FLUX"], curves.flux[k], equal_nan=True)
        assert np.array_equal(table["BJD_TIME"], curves.bjd_time)
        good = (curves.flag[k] & FLAG_REJECT) == 0
        assert np.array_equal(table["FLAG"] == 0, good)


def test_pycheops_loads_a_star_as_pipe_output(extracted, pipe_files, small_visit,
                                              pycheops_python, tmp_path):
    """pycheops' Dataset.from_pipe_file on star 2, in pycheops' own environment
    (:func:`conftest.pycheops_python`): the same fluxes and times."""
    visit, curves, _ = extracted
    star = 2
    time, flux = load_with_pycheops(pycheops_python, pipe_files[star],
                                    small_visit.drp_folder, visit.visit_id.file_key, tmp_path)
    good = ((curves.flag[star] & FLAG_REJECT) == 0) & (curves.flux[star] > 0)
    expected = curves.flux[star][good]
    # pycheops divides by the median (measured 1.3e-16 relative; limit 1e-12)
    assert np.allclose(flux, expected / np.median(expected), rtol=1e-12, atol=0)
    bjd = curves.bjd_time[good]
    assert np.max(np.abs(time - (bjd - int(bjd[0])))) < 1e-9


def load_with_pycheops(python, pipe_file, drp_folder, file_key, home):
    """(time - its whole first day [d], flux / its median) of ``pipe_file`` as pycheops
    loads it, run by ``python`` (tests/pycheops_loader.py). Its configuration file and the
    DRP light curve it joins on BJD are written into ``home`` first: no network."""
    import shutil
    import subprocess

    cache = home / "cache"
    cache.mkdir()
    (home / "pycheops.cfg").write_text(
        f"[DEFAULT]\ndata_cache_path = {cache}\npdf_cmd = true {{}}\n\n"
        "[psf_file]\npsf_file = CHEOPS_IT_PSFwhite_CH_TU2018-01-01.txt\nx0 = 99.5\n"
        "y0 = 99.5\n")
    (drp_lc,) = drp_folder.glob("*SCI_COR_Lightcurve-DEFAULT_*.fits")
    shutil.copy(drp_lc, cache / f"{file_key}-DEFAULT.fits")
    out = home / "loaded.npz"
    env = {"PATH": "/usr/bin:/bin", "HOME": str(home), "XDG_CONFIG_HOME": str(home / ".config")}
    run = subprocess.run([str(python), str(Path(__file__).parent / "pycheops_loader.py"),
                          str(pipe_file), file_key, str(out)],
                         capture_output=True, text=True, env=env, timeout=600)
    assert run.returncode == 0, run.stderr[-3000:]
    loaded = np.load(out)
    return loaded["time"], loaded["flux"]
