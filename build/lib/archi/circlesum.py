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
  differences of a closed-form band area (:func:`archi.overlap.band_area`) between their row edges,
  from the edge terms of :func:`archi.overlap.quadrant_area` (transcendental functions once
  per cutout row and column edge). They sit on a regular layout (slot, side, item, column)
  of ``_SLOTS`` pixels per run end, so column constants broadcast and adjacent pixels
  share their edges; the few longer runs (where the rim is steep, near x = +-r) follow on a
  compacted layout.

Prefix sums run along y rather than x only because numpy then accumulates whole rows per
step (vector adds, 4x faster than its cumsum along a row); the geometry is symmetric.
Per frame that is O(r) work per star and radius plus the prefix table, which is built on
the chunk's window (shared) or per cutout (small scattered circles), whichever is cheaper.
For small circles (r below ~12 px in a 9-star field) computing the weights of whole
cutouts is still faster; :func:`archi.circlecost.boundary_method_pays` tells which method to use.
archi's binary circles (pixel centre within the radius, grid 1) need no boundary weights
at all: each column's inside pixels are one run, one prefix difference
(:func:`binary_circle_sums`).
Pixel conventions: ``archi.__doc__`` (``image[y, x]``, pixel centres at integers).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from archi.circlecost import boxes_window, prefix_cost
from archi.overlap import (ZERO_WEIGHT, band_area, band_terms, column_runs, x_terms,
                           y_terms)

__all__ = ["ColumnPrefix", "binary_circle_sums", "circle_boxes", "exact_circle_sums",
           "ZERO_WEIGHT"]

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
        if prefix_cost(m, (H, W), ix0, iy0, size)[1]:
            return cls._on_window(*args, *boxes_window((H, W), ix0, iy0, size))
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
    ex, _, c, s_c = y_terms(ox[:, None] + edges, rr)
    # ... cut along y at the row edges
    ey, s_y = x_terms(oy[:, None] + edges, rr)
    lo, a, b, hi = column_runs(ox, oy, c, radius, size)

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
    terms, jc = band_terms(ox, ex, c, s_c, radius)
    starts, counts = _boundary_runs(lo, a, b, hi, jc)
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

    _add_longer_runs(geometry, starts, counts, terms, jc, K, flux, area, oob)
    return flux, area, oob


def _boundary_runs(lo: NDArray, a: NDArray, b: NDArray, hi: NDArray, jc: NDArray
                   ) -> tuple[NDArray, NDArray]:
    """First cutout row and length (2, n, S+1) of the boundary runs below (side 0) and above
    (side 1) the inside run of every column (:func:`archi.overlap.column_runs`, (n, S));
    column S repeats the centre column ``jc`` (n,) (for its right half)."""
    n, S = lo.shape
    starts = np.empty((2, n, S + 1), np.int64)
    counts = np.empty((2, n, S + 1), np.int64)
    starts[:, :, :S] = [lo, b + 1.0]
    counts[:, :, :S] = [a - lo, hi - b]
    starts[:, :, S] = starts[:, np.arange(n), jc]
    counts[:, :, S] = counts[:, np.arange(n), jc]
    return starts, counts


def _add_longer_runs(geometry: _Geometry, starts: NDArray, counts: NDArray, terms: NDArray,
                     jc: NDArray, done: int, flux: NDArray, area: NDArray, oob: NDArray
                     ) -> None:
    """Add to ``flux``, ``area``, ``oob`` (n,) (in place) the boundary pixels of the runs
    longer than ``done`` (near x = +-r), compacted: _SLOTS more pixels each, then all that
    remain of the few longest."""
    n, S = len(flux), geometry.S
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

    def inside(v: NDArray) -> NDArray:  # archi's test, as overlap.sampled_circle_weights has it
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
        band = band_area(au, as_u, sign, terms)
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
