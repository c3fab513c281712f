"""Where the stars are, measured: each star's place in the turning field, fitted to its
per-frame positions.

The field turns rigidly about the target as the spacecraft rolls (the PSF does not turn:
the optics roll with the CCD). So a star's position in frame k is the target's position
plus its roll-0 offset turned by the roll angle; per-frame fits of a star (the ``dynam``
tracker) scatter about that by their noise (0.03-0.1 px for G = 10-12 in a crowded field),
while the offset fitted to hundreds of frames is known to a few thousandths of a pixel. A
neighbour's light in an aperture moves by the gradient of its PSF times its position error,
so blended pairs need the fitted tracks.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray

from archi.geometry import rotate_offsets
from archi.stars import Tracks

MIN_MEASURED_FRAMES = 10
"""A star's roll-0 offset is fitted when it was measured in at least this many frames;
otherwise its tracks are kept as they are."""


def roll_zero_offsets(tracks: Tracks, roll_deg: NDArray, centre_x: NDArray, centre_y: NDArray
                      ) -> tuple[NDArray, NDArray, NDArray]:
    """Each star's offset from the centre at roll 0 [pixel] (median over its measured
    frames of its offsets turned back by the roll) and the number of frames used."""
    dx = tracks.x - centre_x[None, :]
    dy = tracks.y - centre_y[None, :]
    bx, by = rotate_offsets(dx, dy, -np.asarray(roll_deg, float)[None, :])
    use = tracks.measured & np.isfinite(bx) & np.isfinite(by)
    with np.errstate(all="ignore"):
        import warnings
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            ox = np.nanmedian(np.where(use, bx, np.nan), axis=1)
            oy = np.nanmedian(np.where(use, by, np.nan), axis=1)
    return ox, oy, use.sum(axis=1)


def rigid_tracks(tracks: Tracks, roll_deg: NDArray, centre_x: NDArray, centre_y: NDArray
                 ) -> Tracks:
    """Tracks of stars fixed in the turning field: centre + roll-0 offset turned by the roll,
    for every star measured in at least :data:`MIN_MEASURED_FRAMES` frames (the target,
    row 0, too: its offset from the centre is its mean one). Other rows are kept.

    ``centre_x``, ``centre_y``: the point the field turns about, per frame [pixel]: the
    DRP's centroid of the target (a centroid of all its light, more precise than a fit)."""
    ox, oy, n_used = roll_zero_offsets(tracks, roll_deg, centre_x, centre_y)
    rx, ry = rotate_offsets(ox[:, None], oy[:, None], np.asarray(roll_deg, float)[None, :])
    fitted = n_used >= MIN_MEASURED_FRAMES
    x = np.where(fitted[:, None], centre_x[None, :] + rx, tracks.x)
    y = np.where(fitted[:, None], centre_y[None, :] + ry, tracks.y)
    return Tracks(x=x, y=y, measured=tracks.measured)
