"""How circles overlap pixels: the home of that geometry (exact and sampled weights, bands).

The exact overlap fractions (closed form), archi's sampled circles, and the band geometry
the boundary method weighs with, shared by :class:`archi.masks.CircleAperture` (weights on
whole cutouts) and :mod:`archi.circlesum` (weights of the boundary pixels only). Pixel
conventions: ``archi.__doc__`` (``image[y, x]``, pixel centres at integers); positions and
radii in pixels.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray

__all__ = ["CHUNK_ELEMENTS", "ZERO_WEIGHT", "band_area", "band_terms", "column_runs",
           "exact_circle_weights", "item_chunks", "quadrant_area", "sampled_circle_weights",
           "x_terms", "y_terms"]

ZERO_WEIGHT = 1e-12
"""Overlap fractions below this are rounding noise and count as 0."""

CHUNK_ELEMENTS = 1 << 23  # bound on temporary array sizes in the vectorised kernels


def item_chunks(n: int, per_item: int):
    """Slices of ``n`` items, each holding at most about ``CHUNK_ELEMENTS`` array elements
    for ``per_item`` elements an item (at least one item a slice)."""
    step = max(1, CHUNK_ELEMENTS // max(per_item, 1))
    for start in range(0, n, step):
        yield slice(start, min(n, start + step))


def x_terms(x: NDArray, r: float | NDArray) -> tuple[NDArray, NDArray]:
    """Column-edge terms of :func:`quadrant_area`: ``x`` clipped to [-r, r] and
    ``S(x) = int_0^x sqrt(r^2 - u^2) du`` [pixel^2] (x, r in pixel, broadcast)."""
    x = np.clip(x, -r, r)
    sx = np.sqrt((r - x) * (r + x))
    return x, 0.5 * (x * sx + r * r * np.arctan2(x, sx))


def y_terms(y: NDArray, r: float | NDArray) -> tuple[NDArray, NDArray, NDArray, NDArray]:
    """Row-edge terms of :func:`quadrant_area`: ``y`` clipped to [-r, r], ``|y|``, the
    half-chord ``c = sqrt(r^2 - y^2)`` at height y [pixel] and ``S(c)`` [pixel^2]."""
    y = np.clip(y, -r, r)
    ay = np.abs(y)
    c = np.sqrt((r - ay) * (r + ay))  # half-chord at height y
    return y, ay, c, 0.5 * (c * ay + r * r * np.arctan2(c, ay))


def _combine(x: NDArray, s_x: NDArray, y: NDArray, ay: NDArray, c: NDArray, s_c: NDArray,
             half_disk: float | NDArray) -> NDArray:
    """:func:`quadrant_area` [pixel^2] from its edge terms (:func:`x_terms`,
    :func:`y_terms`) and ``half_disk = 0.5 * pi * r * r``: arithmetic only, so corners
    that share an edge share its transcendental terms."""
    # g = int_{-c}^{clip(x, -c, c)} (sqrt(r^2 - u^2) - |y|) du
    g = np.where(np.abs(x) < c, s_x + s_c - ay * (x + c),
                 np.where(x > 0, 2.0 * (s_c - ay * c), 0.0))
    return np.where(y >= 0, (2.0 * s_x + half_disk) - g, g)


def quadrant_area(x: NDArray, y: NDArray, r: float) -> NDArray:
    """Area of the disk u^2 + v^2 <= r^2 with u <= x and v <= y.

    ``x`` (..., 1, W) and ``y`` (..., H, 1) broadcast to (..., H, W). Closed form from
    integrating the chord length: every transcendental function is evaluated on the 1-D
    edge arrays only, and ``atan2`` instead of ``asin`` keeps full precision near the edge.
    """
    return _combine(*x_terms(x, r), *y_terms(y, r), 0.5 * np.pi * r * r)


def exact_circle_weights(x: NDArray, y: NDArray, ix0: NDArray, iy0: NDArray, r: float,
                         size: int) -> NDArray:
    """Exact overlap fractions of a circle with the pixels of (size, size) cutouts."""
    edges = np.arange(size + 1) - 0.5
    out = np.empty((len(x), size, size))
    # the four corner areas are up to pi r^2, so rounding leaves a few ulp of it (2e-12 seen
    # at r = 45 px) on pixels beyond the circle: can pass the 1e-12 threshold from r ~ 13 px
    far_rounding = 16 * np.spacing(np.pi * r * r) >= ZERO_WEIGHT
    for sl in item_chunks(len(x), (size + 1) ** 2 * 4):
        ex = (ix0[sl] - x[sl])[:, None] + edges  # column edges relative to the centre
        ey = (iy0[sl] - y[sl])[:, None] + edges
        a = quadrant_area(ex[:, None, :], ey[:, :, None], r)
        out[sl] = a[:, 1:, 1:] - a[:, :-1, 1:] - a[:, 1:, :-1] + a[:, :-1, :-1]
        if far_rounding:  # zero the pixels whose nearest point is outside the circle
            gx = np.maximum(np.abs(ex[:, :-1] + 0.5) - 0.5, 0.0)  # distance to the column
            gy = np.maximum(np.abs(ey[:, :-1] + 0.5) - 0.5, 0.0)
            out[sl][gx[:, None, :] ** 2 + gy[:, :, None] ** 2 >= r * r] = 0.0
    # rounding leaves ~1e-16 where the circle only grazes a pixel: not touched
    out[out < ZERO_WEIGHT] = 0.0
    return np.clip(out, 0.0, 1.0, out=out)


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

def column_runs(ox: NDArray, oy: NDArray, c: NDArray, radius: NDArray, size: NDArray
                ) -> tuple[NDArray, NDArray, NDArray, NDArray]:
    """Pixel runs ``lo <= a, b <= hi`` (n, S) (cutout rows, inclusive, as floats) of every
    cutout column: lo..hi meet the circle, a..b lie fully inside it (a > b: none, and then
    lo..hi is all boundary). From the half-chords ``c`` (n, S+1) at the column edges and
    the offsets ``ox = ix0 - x``, ``oy = iy0 - y`` (n,) [pixel]: cutout row i spans
    ``oy + i -+ 0.5``. A column beyond the circle gets at most one pixel of zero weight."""
    cl, cr = c[:, :-1], c[:, 1:]
    h_min = np.minimum(cl, cr)  # half-chord at the band edge farther from the centre
    centre = np.floor(0.5 - ox)[:, None] == np.arange(c.shape[1] - 1)  # band holds x = 0
    h_max = np.where(centre, radius[:, None], np.maximum(cl, cr))
    q0, q1 = (0.5 - oy)[:, None], (-0.5 - oy)[:, None]
    lo = np.maximum(np.floor(q0 - h_max), 0.0)  # pixel top > -h_max
    hi = np.minimum(np.ceil(q1 + h_max), (size - 1.0)[:, None])  # pixel bottom < h_max
    a = np.maximum(np.ceil(q0 - h_min), lo)  # pixel bottom >= -h_min
    b = np.minimum(np.floor(q1 + h_min), hi)  # pixel top <= h_min
    inner = a <= b
    return lo, np.where(inner, a, hi + 1.0), np.where(inner, b, hi), hi


def band_terms(ox: NDArray, ex: NDArray, c: NDArray, s_c: NDArray, radius: NDArray
               ) -> tuple[NDArray, NDArray]:
    """Constants of :func:`band_area` (7, n, S+1) for every cutout column and, as column S,
    the right half of the column that holds x = 0; and that column's index (n,).

    A column on one side of the centre (|x| from a_n at its near edge to a_f at its far
    edge, half-chords c_n >= c_f there, S(c_n) >= S(c_f)) gives ``(a_f - a_n, a_n, c_f, c_n,
    S(c_f), S(c_n), a_n c_f - S(c_f))``. The centre column is split at x = 0 (an extra edge:
    |x| = 0, c = r): its left part stays in place, its right part is column S (no area when
    no column straddles x = 0). ``ox = ix0 - x`` (n,) and ``ex``, ``c``, ``s_c`` (n, S+1):
    column edges (clipped to +-r), half-chords and S(c) there; ``radius`` (n,) [pixel].
    """
    n, S = ex.shape[0], ex.shape[1] - 1
    rr = radius[:, None]
    edge = np.empty((3, n, S + 2))  # |x|, c, S(c) at the column edges, then at x = 0
    np.abs(ex, out=edge[0, :, :-1])
    edge[1:, :, :-1] = c, s_c
    edge[0, :, -1] = 0.0
    edge[1, :, -1] = radius
    edge[2, :, -1] = x_terms(rr, rr)[1][:, 0]  # S(r), as the row-edge table has it at r
    right = ex[:, :-1] >= 0  # near edge on the left
    centre = (ex[:, :-1] < 0) & (ex[:, 1:] > 0)
    jc = np.clip(np.floor(0.5 - ox).astype(np.int64), 0, S - 1)
    has = centre[np.arange(n), jc]
    # (|x|, c, S(c)) at each column's near and far edges: selections, not index gathers
    left_edge, right_edge, zero = edge[:, :, :S], edge[:, :, 1:S + 1], edge[:, :, S + 1:]
    near = np.empty((3, n, S + 1))
    far = np.empty((3, n, S + 1))
    near[:, :, :S] = np.where(right, left_edge, np.where(centre, zero, right_edge))
    far[:, :, :S] = np.where(right, right_edge, left_edge)
    near[:, :, S:] = zero
    # the centre column's right half: |x| from 0 to its right edge (0 to 0: no area)
    far[:, :, S] = np.where(has, edge[:, np.arange(n), np.minimum(jc + 1, S)], zero[:, :, 0])
    a_n, c_n, s_n = near
    a_f, c_f, s_f = far
    return np.stack([a_f - a_n, a_n, c_f, c_n, s_f, s_n, a_n * c_f - s_f]), jc


def band_area(au: NDArray, as_u: NDArray, sign: NDArray, t: NDArray) -> NDArray:
    """Area [pixel^2] of the disk within one side's part of pixel columns, between v = 0
    and the row edges v = u, signed like u.

    ``au = |u|``, ``as_u = S(|u|)`` (S(v) = int_0^v sqrt(r^2 - t^2) dt) and ``sign`` of u
    at the row edges; ``t`` (7, ...) the column terms of :func:`band_terms` (broadcast).
    The integrand ``min(a_f, h) - min(a_n, h)`` (h(v) = sqrt(r^2 - v^2)) is the full width
    a_f - a_n up to v = c_f, ``h - a_n`` up to c_n, 0 beyond; S increases, so
    S(clip(|u|, c_f, c_n)) = clip(S(|u|), S(c_f), S(c_n)). min / clip only: no
    data-dependent branches. A pixel's weight is the difference between its row edges.
    """
    d_a, a_n, c_f, c_n, s_f, s_n, const = t
    # in place, two temporaries: fresh large arrays cost more (page faults) than the math
    area = np.minimum(au, c_f)
    area *= d_a
    part = np.clip(au, c_f, c_n)
    part *= a_n
    area -= part
    area += np.clip(as_u, s_f, s_n, out=part)
    area += const
    area *= sign
    return area

