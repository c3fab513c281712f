"""Which stars the field model follows frame by frame (archi.variability)."""

from __future__ import annotations

import numpy as np

from archi.variability import running_median, varying_stars


def test_a_transit_varies_and_white_noise_does_not():
    """Three stars of 300 frames with 1e-3 relative noise: steady, a 1 % transit over 40
    frames, a 0.02 % step (under MIN_AMPLITUDE's 2e-4 scatter); only the transit varies,
    and its smoothed flux keeps the depth (1 %: the two medians' noise is ~3e-4 each,
    measured 0.7e-3 off)."""
    rng = np.random.default_rng(2)
    n = 300
    truth = np.ones((3, n))
    truth[1, 130:170] = 0.99
    truth[2, 150:] = 1.0002
    flux = 1e6 * truth * (1 + 1e-3 * rng.standard_normal((3, n)))
    varies, smooth = varying_stars(flux, np.full((3, n), 1e3))
    assert varies.tolist() == [False, True, False]
    assert abs(np.median(smooth[1, 135:165]) / np.median(smooth[1, :100]) - 0.99) < 1.5e-3


def test_running_median_by_hand():
    values = np.array([[1.0, 5.0, 2.0, 8.0, 3.0]])
    # windows of 3, shorter at the ends: [1,5], [1,5,2], [5,2,8], [2,8,3], [8,3]
    assert running_median(values, 3).tolist() == [[3.0, 2.0, 5.0, 3.0, 5.5]]
