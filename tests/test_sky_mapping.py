"""The catalogue-to-pixel mapping against PIPE's formula, worked out by hand (issue 18).

The simulator places stars with archi.geometry, so the pipeline's own tests would not see a
flipped roll sense, a mirrored axis or a wrong plate scale: both sides would share it. Here
the expected pixels come from PIPE's mapping (syntstar.read_starcat / rotate_position, see
the README's conventions), computed by hand below, not from archi.

Target at RA 300.0, Dec -30.0 deg, its DRP centroid at (100.5, 99.25) [pixel]; a star at
RA 300.01, Dec -29.99 (north-east of it); plate scale s = 1.01 arcsec/px:

    dx = (RA_t - RA) cos(Dec_t) 3600 / s = -0.01 x 0.866025 x 3564.356 = -30.86823 px
    dy = (Dec - Dec_t) 3600 / s          =  0.01 x 3564.356            =  35.64356 px
    x = x_t + dx cos(phi) + dy sin(phi) ;  y = y_t - dx sin(phi) + dy cos(phi)

phi = 30 deg: x = 100.5 - 26.73266 + 17.82178 = 91.58911, y = 99.25 + 15.43412 + 30.86823 =
145.55235. A field turning the other way (phi -> -phi): x = 100.5 - 26.73266 - 17.82178 =
55.94555, y = 99.25 - 15.43412 + 30.86823 = 114.68412.
"""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest

from archi.geometry import SkyTransform, catalogue_positions

TARGET_X, TARGET_Y = 100.5, 99.25
CASES = {  # roll [deg] -> (x, y) by PIPE's formula, field turning by -roll (as PIPE)
    0.0: (69.63177, 134.89356),  # north up, east left
    30.0: (91.58911, 145.55235),
    250.0: (77.56356, 58.05253),
}
REVERSED = {0.0: (69.63177, 134.89356), 30.0: (55.94555, 114.68412),
            250.0: (144.55155, 116.06583)}


def _visit(roll, sky=None):
    rolls = np.array(sorted(roll))
    catalogue = SimpleNamespace(ra=np.array([300.0, 300.01]), dec=np.array([-30.0, -29.99]))
    n = len(rolls)
    return SimpleNamespace(catalogue=catalogue, roll_angle=rolls, sky=sky,
                           target_x=np.full(n, TARGET_X), target_y=np.full(n, TARGET_Y))


@pytest.mark.parametrize("sky, expected", [(None, CASES),
                                           (SkyTransform(sense=-1), REVERSED)],
                         ids=["pipe", "reversed"])
def test_catalogue_star_lands_where_pipes_formula_puts_it(sky, expected):
    visit = _visit(expected, sky)
    x, y = catalogue_positions(visit, np.arange(len(expected)))
    for k, roll in enumerate(sorted(expected)):
        assert (x[1, k], y[1, k]) == pytest.approx(expected[roll], abs=1e-4), roll
        assert (x[0, k], y[0, k]) == (TARGET_X, TARGET_Y)  # the target stays on its centroid


def test_a_smaller_plate_scale_spreads_the_field():
    """PIPE's 0.99695 arcsec/px instead of 1.01: offsets 1.01 / 0.99695 = 1.01309 times
    longer; at roll 30 the star lands at (100.5 - 9.02753, 99.25 + 46.90844) by hand."""
    visit = _visit([30.0], SkyTransform(scale=1.01 / 0.99695))
    x, y = catalogue_positions(visit, np.arange(1))
    assert (x[1, 0], y[1, 0]) == pytest.approx((91.47247, 146.15844), abs=1e-4)
