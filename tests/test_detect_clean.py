"""Pieces of the image detection (archi.detect) against plain formulations."""

from __future__ import annotations

import numpy as np

from archi.detect import _exclude_disc


def test_excluded_discs_are_the_pixels_near_each_candidate():
    rng = np.random.default_rng(1)
    mask = np.ones((60, 70), dtype=bool)
    gy, gx = np.indices(mask.shape)
    want = mask.copy()
    # inside, across the edges and beyond them
    for x, y in zip(rng.uniform(-8, 78, 40), rng.uniform(-8, 68, 40)):
        _exclude_disc(mask, x, y, 5.0)
        want[np.hypot(gx - x, gy - y) < 5.0] = False
        np.testing.assert_array_equal(mask, want)
