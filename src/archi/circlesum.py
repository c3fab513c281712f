"""Exact and binary circles on pixels, compiled: the home of exact overlap weights and of
circle sums over frames (one numba kernel each, cached on disk).

A circle of radius r [pixel] centred at (x, y) covers pixel (u, v) (``image[v, u]``, pixel
centres at integers: ``archi.__doc__``) by the exact area of their intersection [pixel^2],
as photutils' ``CircularAperture`` masks (``method="exact"``). Row by row the pixels the circle
touches form one run, whose middle lies fully inside (weight exactly 1) and whose ends
are boundary pixels, weighed from closed-form quadrant areas (:func:`quadrant`; the
transcendental terms once per cutout edge). So a circle costs O(r) square roots and
arctangents plus one add per pixel inside. Overlaps below ``ZERO_WEIGHT`` are rounding
noise and count as 0. archi's binary circles (a pixel counts when its centre lies within
r, ``<=``) are one run per row too.

Sums follow :func:`archi.photometry.gather`: flux = the weighted sum of the finite in-image
pixels, area = their weights, out of bounds = a pixel of positive weight is NaN or beyond
the image edge, or the position is not finite (then flux = area = 0).
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit
from numpy.typing import NDArray

__all__ = ["ZERO_WEIGHT", "circle_and_box_sums", "circle_sums", "exact_circle_weights"]

ZERO_WEIGHT = 1e-12
"""Overlap fractions below this are rounding noise and count as 0."""


@njit(cache=True)
def cutout_origin(centre: float, r: float) -> int:
    """First pixel column (row) of the cutout holding a circle [pixel], as
    :meth:`archi.masks.CircleAperture.weights`."""
    return int(math.floor(centre - r + 0.5))


@njit(cache=True)
def cutout_size(r: float) -> int:
    """Pixels per side of the cutout holding a circle of radius r [pixel]
    (``CircleAperture.size``)."""
    return int(math.floor(2.0 * r + 1e-9)) + 2


@njit(cache=True)
def column_edges(first: float, count: int, r: float, terms: NDArray) -> None:
    """Into ``terms`` (2, >= count): at the column edges ``first + j`` (j < count) [pixel,
    relative to the centre], the edge clipped to [-r, r] and S(edge), with
    S(t) = int_0^t sqrt(r^2 - u^2) du [pixel^2]."""
    for j in range(count):
        e = min(max(first + j, -r), r)
        h = math.sqrt((r - e) * (r + e))
        terms[0, j] = e
        terms[1, j] = 0.5 * (e * h + r * r * math.atan2(e, h))


@njit(cache=True)
def row_edges(first: float, count: int, r: float, terms: NDArray) -> None:
    """Into ``terms`` (3, >= count): at the row edges ``first + i`` (i < count) [pixel,
    relative to the centre], the edge clipped to [-r, r], the half-chord c there and S(c)
    (:func:`column_edges`)."""
    for i in range(count):
        e = min(max(first + i, -r), r)
        ae = abs(e)
        h = math.sqrt((r - ae) * (r + ae))
        terms[0, i] = e
        terms[1, i] = h
        terms[2, i] = 0.5 * (h * ae + r * r * math.atan2(h, ae))


@njit(cache=True)
def quadrant(x: float, s_x: float, y: float, c: float, s_c: float, half_disk: float) -> float:
    """Area [pixel^2] of the disk u^2 + v^2 <= r^2 with u <= x and v <= y, from the edge
    terms (x and S(x) of the column edge: :func:`column_edges`; y, its half-chord c and
    S(c) of the row edge: :func:`row_edges`) and ``half_disk = pi r^2 / 2``: the chord
    length integrated."""
    ay = abs(y)
    if abs(x) < c:  # int_{-c}^{x} (sqrt(r^2 - u^2) - |y|) du
        g = s_x + s_c - ay * (x + c)
    elif x > 0:
        g = 2.0 * (s_c - ay * c)
    else:
        g = 0.0
    return (2.0 * s_x + half_disk) - g if y >= 0 else g


@njit(cache=True)
def boundary_weights(tx: NDArray, ty: NDArray, i: int, j0: int, j1: int, half_disk: float,
                     out: NDArray) -> None:
    """Exact weights of the pixels of cutout row i (between row edges i and i+1), cutout
    columns j0..j1, into ``out[j0..j1]``, from the terms ``tx`` (:func:`column_edges`) and
    ``ty`` (:func:`row_edges`) of the edges, thresholded to [0, 1]; adjacent pixels share
    their edge's quadrant areas."""
    y0, c0, s0 = ty[0, i], ty[1, i], ty[2, i]
    y1, c1, s1 = ty[0, i + 1], ty[1, i + 1], ty[2, i + 1]
    below = quadrant(tx[0, j0], tx[1, j0], y0, c0, s0, half_disk)
    above = quadrant(tx[0, j0], tx[1, j0], y1, c1, s1, half_disk)
    for j in range(j0, j1 + 1):
        next_below = quadrant(tx[0, j + 1], tx[1, j + 1], y0, c0, s0, half_disk)
        next_above = quadrant(tx[0, j + 1], tx[1, j + 1], y1, c1, s1, half_disk)
        w = (next_above - above) - (next_below - below)
        out[j] = 0.0 if w < ZERO_WEIGHT else min(w, 1.0)
        below, above = next_below, next_above


@njit(cache=True)
def row_span(dy: float, x: float, r: float, u0: int, u1: int) -> tuple:
    """The pixels of the row at ``dy`` [pixel] from the centre that a circle at column x
    overlaps, ``lo..hi``, and those fully inside it, ``a..b`` (inclusive columns within
    u0..u1; a > b: none; lo > hi: the row misses the circle)."""
    near = max(abs(dy) - 0.5, 0.0)
    if near >= r:
        return 1, 0, 1, 0
    h = math.sqrt((r - near) * (r + near))  # widest half-chord in the row
    lo = max(int(math.floor(x - h - 0.5)) + 1, u0)
    hi = min(int(math.ceil(x + h + 0.5)) - 1, u1)
    far = abs(dy) + 0.5
    if far >= r:
        return lo, hi, hi + 1, hi
    h = math.sqrt((r - far) * (r + far))  # narrowest half-chord in the row
    return lo, hi, max(int(math.ceil(x - h + 0.5)), lo), min(int(math.floor(x + h - 0.5)), hi)


@njit(cache=True)
def binary_span(dy: float, x: float, r: float) -> tuple:
    """Columns ``lo..hi`` whose pixel centres lie within r of the centre, in the row at
    ``dy`` [pixel] from it (lo > hi: none): archi's test ``dy^2 + (u - x)^2 <= r^2``, bit
    for bit (the square root's rounding corrected by one step at each end)."""
    dy2, r2 = dy * dy, r * r
    half = math.sqrt(max(r2 - dy2, 0.0))
    lo, hi = math.ceil(x - half), math.floor(x + half)
    if dy2 + (hi - x) ** 2 > r2:
        hi -= 1
    if dy2 + (hi + 1 - x) ** 2 <= r2:
        hi += 1
    if dy2 + (lo - x) ** 2 > r2:
        lo += 1
    if dy2 + (lo - 1 - x) ** 2 <= r2:
        lo -= 1
    if dy2 + (hi - x) ** 2 > r2:
        return 1, 0
    return int(lo), int(hi)


@njit(cache=True)
def exact_circle_weights(x: NDArray, y: NDArray, ix0: NDArray, iy0: NDArray, r: float,
                         size: int) -> NDArray:
    """Exact overlap fractions (n, size, size) of circles of radius r [pixel] at (x, y) (n,)
    with the pixels of cutouts whose corner pixel is (``ix0``, ``iy0``) (n,) (0 beyond them,
    and for non-finite positions)."""
    n = len(x)
    out = np.zeros((n, size, size))
    tx, ty = np.empty((2, size + 1)), np.empty((3, size + 1))
    half_disk = 0.5 * math.pi * r * r
    for q in range(n):
        if not (math.isfinite(x[q]) and math.isfinite(y[q])):
            continue
        column_edges(ix0[q] - 0.5 - x[q], size + 1, r, tx)
        row_edges(iy0[q] - 0.5 - y[q], size + 1, r, ty)
        for i in range(size):
            lo, hi, a, b = row_span(iy0[q] + i - y[q], x[q], r, ix0[q], ix0[q] + size - 1)
            out[q, i, a - ix0[q]:b + 1 - ix0[q]] = 1.0
            for u0, u1 in ((lo, min(a - 1, hi)), (max(b + 1, a, lo), hi)):
                if u0 <= u1:
                    boundary_weights(tx, ty, i, u0 - ix0[q], u1 - ix0[q], half_disk, out[q, i])
    return out


@njit(cache=True)
def circle_sums(frames: NDArray, x: NDArray, y: NDArray, radius: NDArray, binary: NDArray
                ) -> tuple:
    """(flux, area, out of bounds), each (n, m), of n circles in m frames (m, H, W):
    circle i centred at ``x[i, k], y[i, k]`` [pixel] in frame k, of ``radius[i]`` [pixel],
    exact (``binary[i]`` False) or binary (pixel centres within the radius, grid 1)."""
    m, n = frames.shape[0], len(radius)
    flux, area, oob, _ = circle_and_box_sums(
        frames, x, y, radius, binary, np.zeros((0, m, 0, 0)), np.zeros((0, m), np.int64),
        np.zeros((0, m), np.int64), np.full(n, -1, np.int64))
    return flux, area, oob


@njit(cache=True)
def circle_and_box_sums(frames: NDArray, x: NDArray, y: NDArray, radius: NDArray,
                        binary: NDArray, boxes: NDArray, box_x0: NDArray, box_y0: NDArray,
                        box_of: NDArray) -> tuple:
    """:func:`circle_sums` (flux, area, out of bounds), and with the same weights each
    circle's sum over a second image, its box: (n, m) [e]. Box b of frame k is
    ``boxes[b, k]`` (S, S), its pixel (0, 0) at frame pixel (``box_x0[b, k]``,
    ``box_y0[b, k]``); circle i reads box ``box_of[i]`` (-1: none, sum 0). Box pixels that
    are not finite or beyond the box count as 0. (The factor search sums each star's own
    modelled light so, on boxes that follow it: the weights are the costly part.)"""
    m = frames.shape[0]
    n = len(radius)
    flux, area, box_sum = np.zeros((n, m)), np.zeros((n, m)), np.zeros((n, m))
    oob = np.zeros((n, m), np.bool_)
    S = cutout_size(radius.max()) if n else 0
    tx, ty, weights = np.empty((2, S + 1)), np.empty((3, S + 1)), np.empty(S)
    no_box = np.zeros((0, 0))
    for k in range(m):  # frame by frame: circles in one frame share its pixels in cache
        for c in range(n):
            r = radius[c]
            xc, yc = x[c, k], y[c, k]
            b = box_of[c]
            box = no_box if b < 0 else boxes[b, k]
            bx0, by0 = (0, 0) if b < 0 else (box_x0[b, k], box_y0[b, k])
            if not (math.isfinite(xc) and math.isfinite(yc)):
                oob[c, k] = True
            elif binary[c]:
                flux[c, k], area[c, k], oob[c, k], box_sum[c, k] = binary_sum(
                    frames[k], xc, yc, r, box, bx0, by0)
            else:
                flux[c, k], area[c, k], oob[c, k], box_sum[c, k] = exact_sum(
                    frames[k], xc, yc, r, tx, ty, weights, box, bx0, by0)
    return flux, area, oob, box_sum


@njit(cache=True, fastmath={"reassoc"})  # the sums vectorised; NaN tests kept
def run_sum(image: NDArray, v: int, lo: int, hi: int) -> tuple:
    """(sum, number) of the finite pixels of row v, columns lo..hi, of ``image`` (H, W), and
    whether one is not finite or beyond the edge (none when lo > hi)."""
    H, W = image.shape
    if lo > hi:
        return 0.0, 0.0, False
    if v < 0 or v >= H:
        return 0.0, 0.0, True
    total, count = 0.0, 0.0  # a float count: the loop vectorises
    row = image[v]
    for u in range(max(lo, 0), min(hi, W - 1) + 1):
        value = row[u]
        finite = abs(value) < math.inf
        total += value if finite else 0.0
        count += 1.0 if finite else 0.0
    return total, count, count < hi - lo + 1


@njit(cache=True)
def binary_sum(image: NDArray, x: float, y: float, r: float, box: NDArray, bx0: int, by0: int
               ) -> tuple:
    """(flux, area, out of bounds) of the binary circle of radius r at (x, y) [pixel], and its
    sum over ``box`` (its pixel (0, 0) at image pixel (bx0, by0))."""
    total, area, bad, boxed = 0.0, 0.0, False, 0.0
    iy0 = cutout_origin(y, r)
    for v in range(iy0, iy0 + cutout_size(r)):
        lo, hi = binary_span(v - y, x, r)
        s, count, out = run_sum(image, v, lo, hi)
        total += s
        area += count
        bad |= out
        boxed += run_sum(box, v - by0, lo - bx0, hi - bx0)[0]
    return total, area, bad, boxed


@njit(cache=True)
def box_value(box: NDArray, v: int, u: int) -> float:
    """``box[v, u]``, 0 beyond the box or where not finite."""
    if 0 <= v < box.shape[0] and 0 <= u < box.shape[1]:
        value = box[v, u]
        if abs(value) < math.inf:
            return value
    return 0.0


@njit(cache=True)
def exact_sum(image: NDArray, x: float, y: float, r: float, tx: NDArray, ty: NDArray,
              weights: NDArray, box: NDArray, bx0: int, by0: int) -> tuple:
    """(flux, area, out of bounds) of the exact circle of radius r at (x, y) [pixel], and its
    sum over ``box`` (its pixel (0, 0) at image pixel (bx0, by0)) (``tx``, ``ty``,
    ``weights``: room for the edge terms and a row's weights)."""
    H, W = image.shape
    size, half_disk = cutout_size(r), 0.5 * math.pi * r * r
    ix0, iy0 = cutout_origin(x, r), cutout_origin(y, r)
    column_edges(ix0 - 0.5 - x, size + 1, r, tx)
    row_edges(iy0 - 0.5 - y, size + 1, r, ty)
    total, area, bad, boxed = 0.0, 0.0, False, 0.0
    for i in range(size):
        v = iy0 + i
        lo, hi, a, b = row_span(v - y, x, r, ix0, ix0 + size - 1)
        if lo > hi:
            continue
        s, count, out = run_sum(image, v, a, b)
        total += s
        area += count
        bad |= out
        boxed += run_sum(box, v - by0, a - bx0, b - bx0)[0]
        for u0, u1 in ((lo, min(a - 1, hi)), (max(b + 1, a, lo), hi)):  # the rim pixels
            if u0 > u1:
                continue
            boundary_weights(tx, ty, i, u0 - ix0, u1 - ix0, half_disk, weights)
            for u in range(u0, u1 + 1):
                w = weights[u - ix0]
                if w == 0.0:
                    continue
                value = image[v, u] if 0 <= v < H and 0 <= u < W else math.nan
                if abs(value) < math.inf:
                    total += w * value
                    area += w
                else:
                    bad = True
                boxed += w * box_value(box, v - by0, u - bx0)
    return total, area, bad, boxed
