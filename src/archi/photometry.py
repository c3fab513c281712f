"""Aperture photometry on frame cubes.

Circular apertures use photutils' exact pixel-overlap weights, so fractional radii and
sub-pixel positions are measured without the binary-mask quantisation of archi.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray
from photutils.aperture import CircularAperture


def circular_aperture_sums(frames: NDArray, x: NDArray, y: NDArray, radius: float
                           ) -> tuple[NDArray[np.float64], NDArray[np.float64], NDArray[np.bool_]]:
    """Sum of each frame within a circle of ``radius`` [pixel] centred at (x[k], y[k]).

    Returns ``(sums, area, touches_nan)``: the weighted sum of finite pixels [frame units],
    the exact aperture area on finite pixels [pixel^2], and whether the aperture overlaps a
    NaN pixel (outside the field of view) or the image edge.
    """
    n = len(frames)
    aperture = CircularAperture(np.column_stack([x, y]), r=radius)
    sums = np.zeros(n)
    area = np.zeros(n)
    touches = np.zeros(n, dtype=bool)
    for k, mask in enumerate(aperture.to_mask(method="exact")):
        cut = mask.cutout(frames[k], fill_value=np.nan)
        if cut is None:  # entirely off the image
            touches[k] = True
            continue
        weights = mask.data
        finite = np.isfinite(cut)
        sums[k] = np.sum(weights[finite] * cut[finite])
        area[k] = weights[finite].sum()
        touches[k] = bool(np.any(weights[~finite] > 0))
    return sums, area, touches
