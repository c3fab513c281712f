"""Home of image shifts by splines: ``scipy.ndimage.shift``'s numbers bit for bit, compiled
(the PSF's sub-pixel phases and its centred cut-outs, :mod:`archi.psf`)."""

from __future__ import annotations

import numpy as np
from numba import njit
from numpy.typing import NDArray

__all__ = ["spline_shift"]


def spline_shift(coeffs: NDArray, shift_y: float, shift_x: float, order: int
                 ) -> NDArray[np.float64]:
    """``ndimage.shift(coeffs, (shift_y, shift_x), order=order, mode="constant",
    prefilter=False)`` for ``order`` 1 or 3, bit for bit (the same weights, summed in the
    same order; 4x faster: the weights of a shift are the same along each row and
    column)."""
    coeffs = np.ascontiguousarray(coeffs, dtype=np.float64)
    wy, iy = _axis_weights(coeffs.shape[0], float(shift_y), order)
    wx, ix = _axis_weights(coeffs.shape[1], float(shift_x), order)
    return _shift_sum(coeffs, wy, iy, wx, ix)


def _axis_weights(n: int, shift: float, order: int) -> tuple[NDArray, NDArray]:
    """Per output index of an axis of length ``n``: the spline weights (n, order + 1) of
    the input points it reads and their indices (mirrored at the ends), as scipy.ndimage
    computes them; weights 0 where the input coordinate falls outside the axis (mode
    "constant": such outputs are 0)."""
    x = np.arange(n) + (-shift)  # what ndimage's zoom_shift computes
    start = np.floor(x)
    t, z = x - start, 1.0 - (x - start)
    if order == 1:
        weights = [1.0 - t]
    elif order == 3:
        weights = [z * z * z / 6.0, (t * t * (t - 2.0) * 3.0 + 4.0) / 6.0,
                   (z * z * (z - 2.0) * 3.0 + 4.0) / 6.0]
    else:
        raise ValueError(f"spline order {order}: only 1 and 3 are implemented")
    last = np.ones(n)
    for w in weights:  # the last weight: 1 minus the others, in this order
        last = last - w
    w = np.stack(weights + [last], axis=1)
    index = start.astype(np.int64)[:, None] - order // 2 + np.arange(order + 1)
    index = np.where(index < 0, -index, index)
    index = np.where(index > n - 1, 2 * (n - 1) - index, index)
    w[(x < 0) | (x > n - 1)] = np.nan  # marks outputs beyond the input: 0
    return w, index


@njit(cache=True)
def _shift_sum(coeffs, wy, iy, wx, ix):  # pragma: no cover
    """out[i, j] = sum over (a, b) in row-major order of coeffs[iy[i, a], ix[j, b]] * wy[i, a]
    * wx[j, b] (ndimage's order of operations); 0 where a weight row is NaN."""
    ny, nx = wy.shape[0], wx.shape[0]
    out = np.zeros((ny, nx))
    for i in range(ny):
        if np.isnan(wy[i, 0]):
            continue
        for j in range(nx):
            if np.isnan(wx[j, 0]):
                continue
            t = 0.0
            for a in range(wy.shape[1]):
                for b in range(wx.shape[1]):
                    c = coeffs[iy[i, a], ix[j, b]]
                    c *= wy[i, a]
                    c *= wx[j, b]
                    t += c
            out[i, j] = t
    return out
