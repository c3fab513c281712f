"""The simulator's DRP-like aperture photometry: photutils' exact circular apertures, kept
apart from the pipeline's own photometry (:mod:`archi.photometry`) so that the "DRP" light
curves the pipeline is compared with do not come from the code under test."""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray


def circular_aperture_sums(frames: NDArray, x: NDArray, y: NDArray, radius: float
                           ) -> tuple[NDArray[np.float64], NDArray[np.float64], NDArray[np.bool_]]:
    """Sum of each frame within a circle of ``radius`` [pixel] centred at (x[k], y[k]).

    Exact pixel-overlap weights (photutils). Returns ``(sums, area on finite pixels,
    touches NaN)``. Used by the simulator's DRP-like photometry and by tests.
    """
    from photutils.aperture import CircularAperture  # lazy: only the simulator needs it

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
