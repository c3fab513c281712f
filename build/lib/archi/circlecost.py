"""Home of the cost model that chooses between circle-sum methods giving the same numbers.

Exact circles can be summed on whole cutouts (weights on every pixel, cost growing with the
radius squared) or by their boundary (:mod:`archi.circlesum`: prefix sums and exact weights
on the rim only, cost growing with the radius), and the prefix tables built on one window
shared by a chunk or per cutout box. The estimates below, from measured costs per unit of
work, pick the expected fastest; the numbers do not depend on the choice.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray

__all__ = ["boundary_method_pays", "boxes_window", "prefix_cost"]

# Measured costs [ns] (numpy 2.4, 200 x 200 frames, chunks of 64 frames, 2-core VM); only
# their ratios matter, to choose between methods that give the same numbers
_NS_WINDOW_PIXEL = 2.0  # prefix sums on one window shared by a chunk, per frame pixel
_NS_BOX_PIXEL = 8.5  # prefix sums per cutout box (gather included), per box pixel
_NS_ITEM = 500.0  # boundary method, per item (circle and frame) ...
_NS_ITEM_COLUMN = 345.0  # ... and per cutout column
_NS_CUTOUT_CORNER = 21.0  # cutout method: weights on every corner, gather, weigh


def boxes_window(shape: tuple[int, int], ix0: NDArray, iy0: NDArray, size: NDArray
                 ) -> tuple[int, int, int, int]:
    """Rows r0:r1 and columns c0:c1 of the image covered by the boxes (size 0: unused)."""
    H, W = shape
    used = size > 0
    if not used.any():
        return 0, 0, 0, 0
    r0 = int(np.clip(iy0[used].min(), 0, H))
    c0 = int(np.clip(ix0[used].min(), 0, W))
    return (r0, int(np.clip((iy0 + size)[used].max(), r0, H)),
            c0, int(np.clip((ix0 + size)[used].max(), c0, W)))


def prefix_cost(m: int, shape: tuple[int, int], ix0: NDArray, iy0: NDArray, size: NDArray
                ) -> tuple[float, bool]:
    """Estimated time [ns] of :meth:`archi.circlesum.ColumnPrefix.build` and whether on one
    window."""
    r0, r1, c0, c1 = boxes_window(shape, ix0, iy0, size)
    window = _NS_WINDOW_PIXEL * m * (r1 - r0) * (c1 - c0)
    boxes = _NS_BOX_PIXEL * len(ix0) * float(size.max()) ** 2 if size.size else 0.0
    return min(window, boxes), window <= boxes


def boundary_method_pays(m: int, shape: tuple[int, int], ix0: NDArray, iy0: NDArray,
                         size: NDArray, n_items: int) -> bool:
    """Whether the boundary method (:class:`archi.circlesum.ColumnPrefix` +
    :func:`archi.circlesum.exact_circle_sums`) is
    expected to beat computing the weights on whole cutouts (``CircleAperture.weights_in``
    and a gather), for ``n_items`` circles on these boxes in a chunk of ``m`` frames of
    ``shape``. Both give the same numbers; the boundary method's cost grows with the radius,
    the cutouts' with its square, and they break even near r = 12 px for a 9-star field."""
    size = np.asarray(size, np.int64)
    S = float(size.max()) if size.size else 0.0
    prefix, _ = prefix_cost(m, shape, ix0, iy0, size)
    boundary = prefix + n_items * (_NS_ITEM + _NS_ITEM_COLUMN * S)
    return boundary < _NS_CUTOUT_CORNER * n_items * (S + 1.0) ** 2
