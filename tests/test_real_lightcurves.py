"""The readers on the five real DRP light curves (public CHEOPS archive products)."""

from __future__ import annotations

import numpy as np
import pytest
from astropy.time import Time

from archi.geometry import ROLL_RATE_DEG_PER_MIN
from archi.io import read_lightcurve
from conftest import REAL_LIGHTCURVES

# file-name prefix -> (rows, cadence [s], NEXP, EXPTIME [s])
EXPECTED = {
    "CH_PR130057_TG003742": (109, 35.17, 7, 5.0),
    "CH_PR140063_TG002401": (364, 60.03, 1, 60.0),
    "CH_PR140079_TG002601": (447, 37.31, 2, 18.63),
    "CH_PR149000_TG008901": (224, 60.03, 1, 60.0),
    "CH_PR149000_TG012001": (149, 60.03, 1, 60.0),
}


def test_all_five_files_are_present():
    assert sorted(p.name[:20] for p in REAL_LIGHTCURVES) == sorted(EXPECTED)


@pytest.mark.parametrize("path", REAL_LIGHTCURVES, ids=lambda p: p.name[:20])
def test_real_lightcurve_properties(path):
    lc, cols, header = read_lightcurve(path)
    rows, cadence, nexp, exptime = EXPECTED[path.name[:20]]
    assert len(lc.flux) == rows
    assert lc.aperture == "DEFAULT" and lc.radius == 25.0
    assert int(header["NEXP"]) == nexp and float(header["EXPTIME"]) == pytest.approx(exptime)
    steps = np.diff(cols["MJD_TIME"]) * 86400
    assert np.median(steps) == pytest.approx(cadence, abs=0.01)
    assert np.all(steps > 0)
    # real visits lose ~40 min per 98.77-min orbit
    assert steps.max() > 30 * 60

    # the roll angle decreases (modulo 360), one turn per ~98.77-min orbit on average
    # (the instantaneous rate varies along the orbit: -2.2 to -3.3 deg/min medians)
    droll = (np.diff(cols["ROLL_ANGLE"]) + 180) % 360 - 180
    contiguous = steps < 1.5 * cadence
    assert np.all(droll[contiguous] < 0)
    minutes = (cols["MJD_TIME"] - cols["MJD_TIME"][0]) * 1440
    residual = np.unwrap(np.radians(cols["ROLL_ANGLE"] - ROLL_RATE_DEG_PER_MIN * minutes))
    mean_rate = np.degrees(np.polyfit(minutes, residual, 1)[0]) + ROLL_RATE_DEG_PER_MIN
    assert -3.76 < mean_rate < -3.64  # AU Mic's 1.7-h visit gives -3.75

    # MJD_TIME is TT: UTC_TIME + 69.184 s
    utc = Time(list(np.char.strip(cols["UTC_TIME"].astype(str))), scale="utc")
    assert np.allclose((cols["MJD_TIME"] - utc.mjd) * 86400, 69.184, atol=1e-3)
    assert np.allclose(utc.tt.mjd, cols["MJD_TIME"], atol=1e-8)
    # BJD_TIME is BJD_TDB: JD + up to +-8.3 min of light travel time
    assert np.all(np.abs(cols["BJD_TIME"] - (cols["MJD_TIME"] + 2400000.5)) < 8.4 / 1440)

    # STATUS flags exactly the frames with events; FLUXERR^2 ~ FLUX + BACKGROUND + DARK
    assert np.array_equal(lc.status != 0, lc.event != 0)
    ratio = lc.flux_err ** 2 / (lc.flux + lc.background + lc.dark)
    assert 1.0 < np.median(ratio) < 1.03
    assert float(cols["LOCATION_X"][0]) == 293.0 and float(cols["LOCATION_Y"][0]) == 831.0
