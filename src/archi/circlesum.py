"""Exact circular-aperture sums whose cost per frame grows with the radius, not its square.

Same numbers (to ~1e-13) as weighing cutouts with the exact overlap weights of
:class:`archi.masks.CircleAperture` (``mode="exact"``) through
:func:`archi.photometry.gather`, computed differently. Each pixel column of a cutout is a
band ``x0 <= x <= x1`` (relative to the centre) in which the pixels fully inside the circle
form one run: both y-edges within +-h_min, the half-chord at the band edge farther from the
centre (none when the band crosses +-r). Their weights are exactly 1, so

* the run's sum is a difference of two prefix sums along the column
  (:class:`ColumnPrefix`, built once per chunk of frames and shared by every star and
  radius), its number of finite pixels a difference of prefix counts;
* only the boundary pixels at both ends of the run (y-range meeting +-[h_min, h_max], h_max
  the half-chord at the nearer band edge; ~8 r per circle) get exact weights, as
  differences of a closed-form band area (:func:`_band_area`) between their row edges,
  from the edge terms of :func:`archi.masks._quadrant_area` (transcendental functions once
  per cutout row and column edge). They sit on a regular layout (slot, side, item, column)
  of ``_SLOTS`` pixels per run end, so column constants broadcast and adjacent pixels
  share their edges; the few longer runs (where the rim is steep, near x = +-r) follow on a
  compacted layout.

Prefix sums run along y rather than x only because numpy then accumulates whole rows per
step (vector adds, 4x faster than its cumsum along a row); the geometry is symmetric.
Per frame that is O(r) work per star and radius plus the prefix table, which is built on
the chunk's window (shared) or per cutout (small scattered circles), whichever is cheaper.
For small circles (r below ~12 px in a 9-star field) computing the weights of whole
cutouts is still faster; :func:`boundary_method_pays` tells which method to use.
archi's binary circles (pixel centre within the radius, grid 1) need no boundary weights
at all: each column's inside pixels are one run, one prefix difference
(:func:`binary_circle_sums`).
Pixel conventions: ``archi.__doc__`` (``image[y, x]``, pixel centres at integers).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from archi.masks import _x_terms, _y_terms

__all__ = ["ColumnPrefix", "binary_circle_sums", "boundary_method_pays", "circle_boxes",
           "exact_circle_sums", "ZERO_WEIGHT"]

ZERO_WEIGHT = 1e-12
"""Weights below this are rounding noise and count as 0 (as in masks._exact_circle)."""

# Work sizes. Temporaries are kept small on purpose (~0.5 MB at most per array): larger
# ones cost more per element (page faults, cache misses) than the arithmetic, smaller ones
# more in numpy's per-call overhead (measured on the 1000-frame benchmark visit: the fine
# tune of 9 stars took 3.6 s with 4096, 2.7 s with 16384, 3.0 s with 65536). Memory stays
# bounded whatever the chunk.
_ITEM_ELEMENTS = 16384  # items x (cutout size + 1) per batch


def circle_boxes(x: NDArray, y: NDArray, radius: float | NDArray
                 ) -> tuple[NDArray[np.int64], NDArray[np.int64]]:
    """Cutout origins ``ix0, iy0`` [pixel] of circles of ``radius`` [pixel] at (x, y), as
    :meth:`archi.masks.CircleAperture.weights` (0 for non-finite positions)."""
    origins = (np.floor(np.asarray(v, float) - radius + 0.5) for v in (x, y))
    return tuple(np.nan_to_num(v, nan=0.0, posinf=0.0, neginf=0.0).astype(np.int64)
                 for v in origins)


# Measured costs [ns] (numpy 2.4, 200 x 200 frames, chunks of 64 frames, 2-core VM); only
# their ratios matter, to choose between methods that give the same numbers
_NS_WINDOW_PIXEL = 2.0  # prefix sums on one window shared by a chunk, per frame pixel
_NS_BOX_PIXEL = 8.5  # prefix sums per cutout box (gather included), per box pixel
_NS_ITEM = 500.0  # boundary method, per item (circle and frame) ...
_NS_ITEM_COLUMN = 345.0  # ... and per cutout column
_NS_CUTOUT_CORNER = 21.0  # cutout method: weights on every corner, gather, weigh


def _window(shape: tuple[int, int], ix0: NDArray, iy0: NDArray, size: NDArray
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


def _prefix_cost(m: int, shape: tuple[int, int], ix0: NDArray, iy0: NDArray, size: NDArray
                 ) -> tuple[float, bool]:
    """Estimated time [ns] of :meth:`ColumnPrefix.build` and whether on one window."""
    r0, r1, c0, c1 = _window(shape, ix0, iy0, size)
    window = _NS_WINDOW_PIXEL * m * (r1 - r0) * (c1 - c0)
    boxes = _NS_BOX_PIXEL * len(ix0) * float(size.max()) ** 2 if size.size else 0.0
    return min(window, boxes), window <= boxes


def boundary_method_pays(m: int, shape: tuple[int, int], ix0: NDArray, iy0: NDArray,
                         size: NDArray, n_items: int) -> bool:
    """Whether the boundary method (:class:`ColumnPrefix` + :func:`exact_circle_sums`) is
    expected to beat computing the weights on whole cutouts (``CircleAperture.weights_in``
    and a gather), for ``n_items`` circles on these boxes in a chunk of ``m`` frames of
    ``shape``. Both give the same numbers; the boundary method's cost grows with the radius,
    the cutouts' with its square, and they break even near r = 12 px for a 9-star field."""
    size = np.asarray(size, np.int64)
    S = float(size.max()) if size.size else 0.0
    prefix, _ = _prefix_cost(m, shape, ix0, iy0, size)
    boundary = prefix + n_items * (_NS_ITEM + _NS_ITEM_COLUMN * S)
    return boundary < _NS_CUTOUT_CORNER * n_items * (S + 1.0) ** 2


@dataclass(frozen=True)
class ColumnPrefix:
    """Inclusive prefix sums along y (sums and finite counts) of a chunk of frames, for a set
    of cutout boxes: box b is ``size[b]`` pixels square at (``ix0[b]``, ``iy0[b]``) in frame
    ``frame[b]``.

    Built on one window (the boxes' bounding box in the image, shared by every box of a
    frame: pays off when boxes overlap or share frames) or on each box (small, scattered
    boxes), whichever is expected to be faster. Either way a table (rows, planes, columns):
    ``sums[i, p, j]`` is the sum of the finite values of plane p (a frame, or a box) in
    column ``col0[b] + j``, rows ``row0[b] .. row0[b] + i`` [frame units]; ``counts`` the
    number of finite in-image pixels there (one plane when every frame of the chunk has the
    same NaN pattern, as usual: the field-of-view edge). Partial sums stay within one column
    (<= H pixels), which keeps their differences accurate; rows come first so each prefix
    step adds whole planes (vector adds, 4x faster than numpy's cumsum along a row).
    """

    frame: NDArray[np.int64]  # (nb,) frame of each box
    ix0: NDArray[np.int64]  # (nb,) box origins and sizes [pixel]
    iy0: NDArray[np.int64]
    size: NDArray[np.int64]
    sums: NDArray[np.float64]  # (nr, planes, nc)
    counts: NDArray[np.int32]  # (nr, planes or 1, nc)
    plane: NDArray[np.int64]  # (nb,) plane of each box
    row0: NDArray[np.int64]  # (nb,) image row of table row 0, for each box
    col0: NDArray[np.int64]  # (nb,) image column of table column 0, for each box
    shape: tuple[int, int]  # (H, W) of the frames

    @classmethod
    def build(cls, frames: NDArray, frame: NDArray, ix0: NDArray, iy0: NDArray,
              size: NDArray | int) -> ColumnPrefix:
        """Prefix sums of ``frames`` (m, H, W) for boxes (nb,) (size 0: not needed)."""
        m, H, W = frames.shape
        frame, ix0, iy0 = (np.asarray(v, np.int64) for v in (frame, ix0, iy0))
        size = np.broadcast_to(np.asarray(size, np.int64), ix0.shape)
        args = frames, frame, ix0, iy0, size
        if _prefix_cost(m, (H, W), ix0, iy0, size)[1]:
            return cls._on_window(*args, *_window((H, W), ix0, iy0, size))
        return cls._on_boxes(*args, int(size.max()))

    @classmethod
    def _on_window(cls, frames, frame, ix0, iy0, size, r0, r1, c0, c1) -> ColumnPrefix:
        m, H, W = frames.shape
        sums = np.empty((r1 - r0, m, c1 - c0))
        np.copyto(sums, frames[:, r0:r1, c0:c1].transpose(1, 0, 2))
        bad = ~np.isfinite(sums)
        sums[bad] = 0.0
        _accumulate(sums)
        # the NaN pattern (field edge) rarely changes within a chunk: count it once then
        shared = bool((bad == bad[:, :1]).all())
        counts = np.cumsum(~(bad[:, :1] if shared else bad), axis=0, dtype=np.int32)
        nb = len(ix0)
        return cls(frame, ix0, iy0, size, sums, counts, plane=frame,
                   row0=np.full(nb, r0), col0=np.full(nb, c0), shape=(H, W))

    @classmethod
    def _on_boxes(cls, frames, frame, ix0, iy0, size, S) -> ColumnPrefix:
        m, H, W = frames.shape
        nb = len(ix0)
        rows = (iy0[None, :] + np.arange(S)[:, None])[:, :, None]  # (S, nb, 1)
        cols = (ix0[:, None] + np.arange(S))[None, :, :]  # (1, nb, S)
        inside = (rows >= 0) & (rows < H) & (cols >= 0) & (cols < W)
        at = (frame[None, :, None] * H + np.clip(rows, 0, H - 1)) * W + np.clip(cols, 0, W - 1)
        sums = np.take(frames.reshape(-1), at)  # (S, nb, S)
        good = inside & np.isfinite(sums)
        sums[~good] = 0.0
        _accumulate(sums)
        counts = good.astype(np.int32)
        _accumulate(counts)
        return cls(frame, ix0, iy0, size, sums, counts, plane=np.arange(nb),
                   row0=iy0, col0=ix0, shape=(H, W))

    def runs(self, box: NDArray, col: NDArray, a: NDArray, b: NDArray
             ) -> tuple[NDArray, NDArray, NDArray]:
        """Sums, finite counts and completeness (every pixel finite and in the image) of the
        runs of rows ``a..b`` (inclusive, image rows; empty if a > b) in image columns
        ``col`` of boxes ``box`` (broadcast integer arrays, (n, 1) and (n, S)). Parts beyond
        the image are not summed; the runs must lie in their boxes."""
        H, W = self.shape
        ac, bc = np.maximum(a, 0), np.minimum(b, H - 1)
        use = (ac <= bc) & (col >= 0) & (col < W)
        if not self.sums.size:  # no box pixel in the image
            return np.zeros(use.shape), np.zeros(use.shape, np.int32), a > b
        row0 = self.row0[box]
        below = ac > row0  # else the run starts at the table's first row: nothing below
        j = col - self.col0[box]
        total = _differences(self.sums, self.plane[box], j, ac - row0, bc - ac + 1, below)
        count = _differences(self.counts, self.plane[box] if len(self.counts[0]) > 1 else 0,
                             j, ac - row0, bc - ac + 1, below)
        total *= use
        count *= use
        # a run clipped by the image edge counts fewer pixels than its length, too
        complete = (a > b) | (count == b - a + 1)
        return total, count, complete


def _accumulate(table: NDArray) -> None:
    """In-place inclusive prefix sums along axis 0, as vector adds over whole planes."""
    for i in range(1, len(table)):
        np.add(table[i - 1], table[i], out=table[i])


def _differences(table: NDArray, plane: NDArray | int, j: NDArray, first: NDArray,
                 length: NDArray, below: NDArray) -> NDArray:
    """``table`` (inclusive prefix, (rows, planes, columns)) over the runs of ``length`` rows
    from table row ``first`` in column j of ``plane`` (row first - 1 counts only where
    ``below``); indices of unused entries are clipped, their values discarded."""
    _, planes, nc = table.shape
    step = planes * nc
    at = (first + length - 1) * step + plane * nc + j
    flat = table.reshape(-1)
    return (np.take(flat, at, mode="clip")
            - np.take(flat, at - length * step, mode="clip") * below)


def exact_circle_sums(frames: NDArray, prefix: ColumnPrefix, box: NDArray, x: NDArray,
                      y: NDArray, radius: NDArray | float) -> tuple[NDArray, NDArray, NDArray]:
    """Exact circle photometry of items (``box``, centre (x, y), ``radius``) [pixel].

    ``frames`` (m, H, W) is the chunk (cosmics patched), ``prefix`` its
    :class:`ColumnPrefix` for a set of boxes; item i is measured in frame
    ``prefix.frame[box[i]]``, with weights on that box only (which must hold the circle, as
    in :meth:`archi.masks.CircleAperture.weights_in`). Per-item arguments are (n,) arrays
    or scalars. Returns ``(flux, area, out_of_bounds)`` (n,) as
    :func:`archi.photometry.gather` with the exact weights: flux = weighted sum of the finite
    in-image pixels [frame units], area = their weights [pixel], out of bounds = a pixel of
    weight >= ``ZERO_WEIGHT`` is NaN or beyond the image edge, or the position is not finite
    (then flux = area = 0).
    """
    return _in_batches(prefix, box, x, y, radius,
                       lambda *item: _batch_sums(frames, prefix, *item))


def _in_batches(prefix: ColumnPrefix, box: NDArray, x: NDArray, y: NDArray,
                radius: NDArray | float, measure) -> tuple[NDArray, NDArray, NDArray]:
    """(flux, area, out of bounds) (n,) of items: those with finite positions measured by
    ``measure(box, x, y, radius)`` in batches of about ``_ITEM_ELEMENTS`` item-columns, the
    others flux = area = 0 and out of bounds."""
    x = np.atleast_1d(np.asarray(x, float))
    n = len(x)
    y, radius, box = (np.broadcast_to(np.asarray(v), (n,)) for v in (y, radius, box))
    flux, area = np.zeros(n), np.zeros(n)
    oob = ~(np.isfinite(x) & np.isfinite(y))
    items = np.flatnonzero(~oob)
    step = max(1, _ITEM_ELEMENTS // (int(prefix.size.max()) + 1 if n else 1))
    for start in range(0, len(items), step):
        b = items[start:start + step]
        flux[b], area[b], oob[b] = measure(box[b].astype(np.int64), x[b], y[b],
                                           radius[b].astype(float))
    return flux, area, oob


def _column_runs(ox: NDArray, oy: NDArray, c: NDArray, radius: NDArray, size: NDArray
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


def _band_terms(ox: NDArray, ex: NDArray, c: NDArray, s_c: NDArray, radius: NDArray
                ) -> tuple[NDArray, NDArray]:
    """Constants of :func:`_band_area` (7, n, S+1) for every cutout column and, as column S,
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
    edge[2, :, -1] = _x_terms(rr, rr)[1][:, 0]  # S(r), as the row-edge table has it at r
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


def _band_area(au: NDArray, as_u: NDArray, sign: NDArray, t: NDArray) -> NDArray:
    """Area [pixel^2] of the disk within one side's part of pixel columns, between v = 0
    and the row edges v = u, signed like u.

    ``au = |u|``, ``as_u = S(|u|)`` (S(v) = int_0^v sqrt(r^2 - t^2) dt) and ``sign`` of u
    at the row edges; ``t`` (7, ...) the column terms of :func:`_band_terms` (broadcast).
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


def _batch_sums(frames: NDArray, prefix: ColumnPrefix, box: NDArray, x: NDArray, y: NDArray,
                radius: NDArray) -> tuple[NDArray, NDArray, NDArray]:
    """:func:`exact_circle_sums` of items with finite positions (all arguments (n,))."""
    n = len(x)
    k, ix0, iy0, size = (v[box] for v in (prefix.frame, prefix.ix0, prefix.iy0, prefix.size))
    S = int(size.max())
    edges = np.arange(S + 1) - 0.5
    rr = radius[:, None]
    ox, oy = ix0 - x, iy0 - y
    # transcendental terms, once per cutout edge (n, S+1): columns are bands in x ...
    ex, _, c, s_c = _y_terms(ox[:, None] + edges, rr)
    # ... cut along y at the row edges
    ey, s_y = _x_terms(oy[:, None] + edges, rr)
    lo, a, b, hi = _column_runs(ox, oy, c, radius, size)

    # fully inside: weight 1, from the prefix sums
    col = ix0[:, None] + np.arange(S)
    top = iy0[:, None]
    total, count, complete = prefix.runs(box[:, None], col, top + a.astype(np.int64),
                                         top + b.astype(np.int64))
    flux = total.sum(axis=1)
    area = count.sum(axis=1, dtype=float)
    oob = ~complete.all(axis=1)

    # boundary runs below (side 0) and above (side 1) the inside run: (2, n, S+1), the
    # extra column being the right half of the centre column (same pixels)
    terms, jc = _band_terms(ox, ex, c, s_c, radius)
    starts = np.empty((2, n, S + 1), np.int64)
    counts = np.empty((2, n, S + 1), np.int64)
    starts[:, :, :S] = [lo, b + 1.0]
    counts[:, :, :S] = [a - lo, hi - b]
    starts[:, :, S] = starts[:, np.arange(n), jc]
    counts[:, :, S] = counts[:, np.arange(n), jc]
    rows = np.stack([np.abs(ey), np.abs(s_y), np.sign(ey)])  # (3, n, S+1) row-edge terms
    geometry = _Geometry(frames, k, ix0, iy0, rows.reshape(3, -1), S)

    # the first _SLOTS pixels of every run, on the regular layout
    K = min(_SLOTS, int(counts.max()) if counts.size else 0)
    item = np.arange(n)[:, None]
    w = geometry.weights(item, starts, counts, terms, K)  # (K, 2, n, S+1)
    w[:, :, np.arange(n), jc] += w[:, :, :, S]  # a pixel's weight: both halves
    values, w_valid, bad = geometry.pixel_sums(item, np.arange(S), starts[:, :, :S],
                                               _threshold(w[..., :S]))
    flux += values.sum(axis=(0, 1, 3))
    area += w_valid.sum(axis=(0, 1, 3))
    oob |= bad.any(axis=(0, 1, 3))

    # the rest of the longer runs (near x = +-r), compacted: _SLOTS more pixels each, then
    # all that remain of the few longest
    done = K
    for last in (False, True):
        side, i, j = np.nonzero(counts[:, :, :S] > done)
        if not len(i):
            break
        left = counts[side, i, j] - done
        start = starts[side, i, j] + done
        step = int(left.max()) if last else min(_SLOTS, int(left.max()))
        w = geometry.weights(i, start, left, terms[:, i, j], step)
        centre = j == jc[i]
        if centre.any():  # the centre column's right half (only for tiny circles)
            w += geometry.weights(i, start, left, centre * terms[:, i, S], step)
        values, w_valid, bad = geometry.pixel_sums(i, j, start, _threshold(w))
        flux += np.bincount(i, weights=values.sum(axis=0), minlength=n)
        area += np.bincount(i, weights=w_valid.sum(axis=0), minlength=n)
        oob |= np.bincount(i, weights=bad.sum(axis=0), minlength=n) > 0
        done += step
    return flux, area, oob


_SLOTS = 2  # boundary pixels per run on the regular layout (most runs have 1 or 2)


def binary_circle_sums(prefix: ColumnPrefix, box: NDArray, x: NDArray, y: NDArray,
                       radius: NDArray | float) -> tuple[NDArray, NDArray, NDArray]:
    """archi's binary circles (grid 1): the pixels whose centre lies within ``radius``
    [pixel] of (x, y) (``<=``), summed from ``prefix`` (built on boxes holding the circles,
    see :func:`circle_boxes`); item i is measured in frame ``prefix.frame[box[i]]``.

    The inside pixels of a column form one run of rows, so a circle costs one prefix
    difference per column. Returns ``(flux, area, out_of_bounds)`` (n,) as weighing the
    cutouts with ``CircleAperture(radius, mode="binary").weights`` does (the same pixels,
    decided by the same floating-point test; sums equal to rounding): area = number of
    finite in-image pixels, out of bounds = a pixel of the mask is NaN or beyond the edge,
    or the position is not finite (then flux = area = 0).
    """
    return _in_batches(prefix, box, x, y, radius, lambda *item: _binary_batch(prefix, *item))


def _binary_batch(prefix: ColumnPrefix, box: NDArray, x: NDArray, y: NDArray,
                  radius: NDArray) -> tuple[NDArray, NDArray, NDArray]:
    ix0, iy0, size = (v[box] for v in (prefix.ix0, prefix.iy0, prefix.size))
    cols = ix0[:, None] + np.arange(int(size.max()))  # (n, S) image columns
    yc, r2 = y[:, None], (radius * radius)[:, None]
    du2 = (cols - x[:, None]) ** 2
    half = np.sqrt(np.maximum(r2 - du2, 0.0))
    lo, hi = np.ceil(yc - half), np.floor(yc + half)

    def inside(v: NDArray) -> NDArray:  # archi's test, as masks._sampled_circle makes it
        return (v - yc) ** 2 + du2 <= r2

    # the square root may round either way: one step of correction at each end
    hi = np.where(inside(hi), hi, hi - 1)
    hi = np.where(inside(hi + 1), hi + 1, hi)
    lo = np.where(inside(lo), lo, lo + 1)
    lo = np.where(inside(lo - 1), lo - 1, lo)
    empty = ~inside(hi) | (lo > hi) | (np.arange(cols.shape[1]) >= size[:, None])
    lo = np.where(empty, 1.0, lo).astype(np.int64)
    hi = np.where(empty, 0.0, hi).astype(np.int64)  # a > b: an empty run
    total, count, complete = prefix.runs(box[:, None], cols, lo, hi)
    return total.sum(axis=1), count.sum(axis=1, dtype=float), ~complete.all(axis=1)


def _threshold(w: NDArray) -> NDArray:
    """Weights below ``ZERO_WEIGHT`` (rounding noise) set to 0, above 1 to 1, in place."""
    w *= w >= ZERO_WEIGHT
    return np.minimum(w, 1.0, out=w)


@dataclass(frozen=True)
class _Geometry:
    """What boundary weights and pixel sums need from a batch of items: the chunk of frames,
    each item's frame and cutout origin (n,), the row-edge terms (3, n (S+1)) ``|u|,
    S(|u|), sign(u)`` and the cutout size S.

    Large temporaries are updated in place: on this kind of pipeline, fresh arrays of a few
    100 kB cost more in page faults than the arithmetic on them."""

    frames: NDArray
    k: NDArray
    ix0: NDArray
    iy0: NDArray
    rows: NDArray
    S: int

    def weights(self, item: NDArray, start: NDArray, count: NDArray, terms: NDArray,
                K: int) -> NDArray:
        """Weights (K, ...) of the first K pixels of runs of ``count`` pixels from cutout row
        ``start`` (arrays of any shape, broadcast with ``item``), in columns of ``terms``
        (7, ...); 0 beyond the run. Not thresholded."""
        slot = np.arange(K + 1).reshape((-1,) + (1,) * np.ndim(start))
        edge = (item * (self.S + 1) + start) + slot  # row edges; beyond the table: masked
        au, as_u, sign = np.take(self.rows, edge, axis=1, mode="clip")
        band = _band_area(au, as_u, sign, terms)
        w = np.subtract(band[1:], band[:-1], out=au[1:])
        w *= slot[:-1] < count
        return w

    def pixel_sums(self, item: NDArray, column: NDArray, start: NDArray, w: NDArray
                   ) -> tuple[NDArray, NDArray, NDArray]:
        """Weighted values of the pixels under ``w`` (K, ...) (K pixels from cutout row
        ``start`` in cutout ``column``), their weights where usable (finite and in the
        image), and whether a pixel of positive weight is not usable; each (K, ...)."""
        m, H, W = self.frames.shape
        slot = np.arange(len(w)).reshape((-1,) + (1,) * np.ndim(start))
        first = self.iy0[item] + start  # image row of slot 0
        col = self.ix0[item] + column
        pixel = slot * W + ((self.k[item] * H + first) * W + col)
        values = np.take(self.frames.reshape(-1), pixel, mode="clip")
        valid = np.isfinite(values)
        valid &= (slot >= -first) & (slot < H - first) & (col >= 0) & (col < W)
        w_valid = w * valid
        np.copyto(values, 0.0, where=~valid)
        values *= w_valid
        return values, w_valid, w > w_valid
