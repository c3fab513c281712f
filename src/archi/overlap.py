"""How archi's sampled circles overlap pixels: the home of that geometry, and of the
chunks that bound vectorised kernels' temporaries.

The exact overlap fractions are in :mod:`archi.circlesum` (compiled). Pixel conventions:
``archi.__doc__`` (``image[y, x]``, pixel centres at integers); positions and radii in
pixels.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray

__all__ = ["CHUNK_ELEMENTS", "item_chunks", "sampled_circle_weights"]

CHUNK_ELEMENTS = 1 << 23  # bound on temporary array sizes in the vectorised kernels


def item_chunks(n: int, per_item: int):
    """Slices of ``n`` items, each holding at most about ``CHUNK_ELEMENTS`` array elements
    for ``per_item`` elements an item (at least one item a slice)."""
    step = max(1, CHUNK_ELEMENTS // max(per_item, 1))
    for start in range(0, n, step):
        yield slice(start, min(n, start + step))


def sampled_circle_weights(x: NDArray, y: NDArray, ix0: NDArray, iy0: NDArray,
                           radius: float, grid: int, size: int) -> NDArray:
    """Fraction of the grid x grid sub-pixel centres of each pixel inside the circle.

    Same test as archi's mask on its up-sampled grid: fine pixel (u, v) (integers) is inside
    when ``(v - cy)^2 + (u - cx)^2 <= radius^2``, with the fine-grid centre
    ``cx = grid * x + grid // 2`` and ``radius`` in fine pixels. For each fine row the
    inside columns form one run [lo, hi], found from the half-chord and corrected by one
    step so that it agrees bit for bit with the direct test; runs are then counted per
    pixel.
    """
    s = grid
    n = len(x)
    r2 = radius * radius
    out = np.empty((n, size, size))
    fine_rows = np.arange(size * s)
    block0 = s * np.arange(size)  # first fine column of each cutout column
    for sl in item_chunks(n, size * s * size):
        cx = (s * x[sl] + s // 2)[:, None]
        u0 = (s * ix0[sl])[:, None]  # fine column of cutout column 0
        v = (s * iy0[sl])[:, None] + fine_rows
        dv2 = (v - (s * y[sl] + s // 2)[:, None]) ** 2  # (m, size*s)
        half = np.sqrt(np.maximum(r2 - dv2, 0.0))
        hi = np.floor(cx + half)
        lo = np.ceil(cx - half)

        def inside(u):
            return dv2 + (u - cx) ** 2 <= r2

        hi = np.where(inside(hi), hi, hi - 1)
        hi = np.where(inside(hi + 1), hi + 1, hi)
        lo = np.where(inside(lo), lo, lo + 1)
        lo = np.where(inside(lo - 1), lo - 1, lo)
        empty = ~inside(hi) | (lo > hi)
        lo_c = (lo - u0)[:, :, None]  # relative to the cutout's first fine column
        hi_c = (hi - u0)[:, :, None]
        count = np.minimum(hi_c, block0 + (s - 1)) - np.maximum(lo_c, block0) + 1
        count = np.clip(count, 0, s)
        count[empty] = 0
        if s == 1:
            out[sl] = count
        else:
            out[sl] = count.reshape(-1, size, s, size).sum(axis=2) / (s * s)
    return out
