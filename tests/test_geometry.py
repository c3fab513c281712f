from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from archi.geometry import (field_of_view_mask, fill_roll_angles, rotate_offsets,
                            sky_from_offsets, sky_offsets, star_positions)
from archi.io import read_lightcurve
from conftest import REAL_LIGHTCURVES


def test_field_of_view_keeps_the_drp_circle():
    mask = field_of_view_mask()
    assert mask.sum() == 31415  # as CHEOPSim: 31,415 of 40,000 pixels
    assert mask[100, 100] and not mask[0, 0] and mask[100, 0] and not mask[0, 100 - 15]


@given(st.floats(-80, 80), st.floats(-80, 80), st.floats(0, 360))
def test_sky_offsets_round_trip(dx, dy, ra0):
    ra, dec = sky_from_offsets(dx, dy, ra0, -31.3)
    bx, by = sky_offsets(ra, dec, ra0, -31.3)
    assert bx == pytest.approx(dx, abs=1e-6) and by == pytest.approx(dy, abs=1e-6)


def test_east_is_minus_x_and_north_is_plus_y_at_roll_zero():
    dx, dy = sky_offsets([10.001, 10.0], [0.0, 0.001], 10.0, 0.0)
    assert dx[0] < 0 and dy[0] == pytest.approx(0)
    assert dy[1] > 0 and dx[1] == pytest.approx(0)


def test_rotation_keeps_distance_and_turns_by_the_roll_change():
    x, y = star_positions(np.array([30.0]), np.array([40.0]), np.array([0.0, 90.0, 180.0]),
                          np.full(3, 100.0), np.full(3, 98.0))
    assert np.hypot(x - 100, y - 98)[0] == pytest.approx([50, 50, 50])
    assert (x[0, 1] - 100, y[0, 1] - 98) == pytest.approx((40.0, -30.0))
    assert (x[0, 2] - 100, y[0, 2] - 98) == pytest.approx((-30.0, -40.0))
    rx, ry = rotate_offsets(1.0, 0.0, 90.0)
    assert (rx, ry) == pytest.approx((0.0, -1.0), abs=1e-12)


@pytest.mark.parametrize("path", REAL_LIGHTCURVES, ids=lambda p: p.name[:20])
def test_nan_roll_angles_are_estimated_from_time_on_real_visits(path):
    _, cols, _ = read_lightcurve(path)
    roll = cols["ROLL_ANGLE"].astype(float)
    damaged = roll.copy()
    rng = np.random.default_rng(0)
    holes = rng.choice(np.arange(5, len(roll) - 5), size=len(roll) // 5, replace=False)
    damaged[holes] = np.nan
    filled, estimated = fill_roll_angles(cols["MJD_TIME"], damaged)
    assert estimated.sum() == len(holes)
    error = (filled[holes] - roll[holes] + 180) % 360 - 180
    # the real roll rate varies along the orbit; see fill_roll_angles for the numbers
    assert np.median(np.abs(error)) < 0.1 and np.max(np.abs(error)) < 1.0  # degrees


def test_fill_roll_angles_needs_one_valid_value():
    with pytest.raises(ValueError, match="every roll angle is NaN"):
        fill_roll_angles([0.0, 0.01], [np.nan, np.nan])
