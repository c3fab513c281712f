"""Experiment (not part of the library): exact circular-aperture sums as integrals along
the rim, against the boundary method of archi.circlesum. Run it from the project's
environment:

    python benchmarks/experiments/strip_circle_sums.py

It checks the sums against archi.circlesum.exact_circle_sums on a synthetic chunk (64
frames of 200 x 200 px, 9 stars x radii) and prints both kernels' cost per circle and
frame, and the cost of the prefix tables. Measured on the 2-core benchmark machine
(2026-11-24): the kernel is 1.2-1.6x faster than the boundary method at r = 8-30 px (7.9
against 11.6 us per circle and frame at r = 20), equal to 1e-15; but its two tables (prefix
sums along y and along x, the second a transposing copy of the chunk) cost about 14 ms per
chunk of 64 frames (18 ms inside the pipeline) against 1-7 ms for circlesum's one table.
Wired into the photometry, the
1000-frame benchmark search went from 4.1 to 3.75 s in one process (-10 %), and a
one-factor job (few circles per chunk) would be slower: not adopted. What would make it
pay: a cheaper row table (or none), or tables kept across the rounds of a search.

The method. The flux of the image (constant on each pixel) inside a circle of radius r at
(xc, yc) is split into a vertical slab ``|x - xc| <= a = r / sqrt(2)`` and two caps. In the
slab, the flux in pixel column c between the two arcs is

    int [G_c(yc + h(u)) - G_c(yc - h(u))] du,   h(u) = sqrt(r^2 - u^2),  u = x - xc,

over the column's part of the slab, with G_c(y) the column's flux below y: piecewise linear
between pixel edges, interpolated from prefix sums along y. In the caps the same holds
along pixel rows (prefix sums along x), less the row's part inside the slab. Where
``|u| <= a`` the rim's slope is at most 1, so within one column (row) an arc crosses at most
one pixel edge: two pieces, each integrated in closed form with
``A(u) = int_0^u h = (u h + r^2 asin(u / r)) / 2``: about 5.7 r arc pieces per circle and
frame, three prefix values each, where the boundary method weighs about 8 r rim pixels.
Only circles touching no NaN pixel and staying in the image are measured this way
(:meth:`StripTables.clean`; area pi r^2, nothing out of bounds); the others go to
archi.circlesum, on the same table (:meth:`StripTables.column_prefix`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from archi.circlesum import ColumnPrefix

__all__ = ["StripTables", "strip_circle_sums"]

_ITEMS = 512  # circles per batch: temporaries of (items x bands) stay small (see circlesum)


def _edge_prefix(block: NDArray, bad: NDArray) -> NDArray:
    """Exclusive prefix sums along axis 0 of ``block`` (L, m, K) (any strides) at the L + 1
    pixel edges, ``bad`` pixels (same shape, or (L, 1, K)) counted as 0, plus two copies of
    the last (an arc touching the window's far edge reads two beyond its pixel):
    (L + 3, m, K). Built in place in one new array (fresh large arrays cost page faults);
    edges first, so that each step adds whole planes (vector adds)."""
    L = len(block)
    out = np.empty((L + 3,) + block.shape[1:])
    out[0] = 0.0
    np.copyto(out[1:L + 1], block)
    np.copyto(out[1:L + 1], 0.0, where=bad)
    for k in range(1, L):
        np.add(out[k], out[k + 1], out=out[k + 1])
    out[L + 1:] = out[L]
    return out


@dataclass(frozen=True)
class StripTables:
    """Prefix sums of a chunk's window (image rows r0:r1, columns c0:c1), NaN counted as 0:
    ``cols[k, f, j]`` the flux of window column j below window row edge k (y = r0 + k -
    0.5) in frame f, ``rows[k, f, i]`` that of window row i left of column edge k; ``bad``
    a summed-area table of the pixels that are not finite (one plane when the NaN pattern
    of every frame is the same, as usual)."""

    cols: NDArray[np.float64]  # (nr + 3, m, nc)
    rows: NDArray[np.float64]  # (nc + 3, m, nr)
    bad: NDArray[np.int32]  # (1 or m, nr + 1, nc + 1)
    r0: int
    c0: int
    shape: tuple[int, int]  # (H, W) of the frames

    @classmethod
    def build(cls, frames: NDArray, r0: int, r1: int, c0: int, c1: int) -> StripTables:
        """Tables of ``frames`` (m, H, W) on the window rows r0:r1, columns c0:c1."""
        window = frames[:, r0:r1, c0:c1]
        bad = ~np.isfinite(window)
        shared = bool((bad == bad[:1]).all())
        planes = bad[:1] if shared else bad
        sat = np.zeros((len(planes), r1 - r0 + 1, c1 - c0 + 1), np.int32)
        np.cumsum(np.cumsum(planes, axis=1, dtype=np.int32), axis=2, out=sat[:, 1:, 1:])
        return cls(_edge_prefix(window.transpose(1, 0, 2), planes.transpose(1, 0, 2)),
                   _edge_prefix(window.transpose(2, 0, 1), planes.transpose(2, 0, 1)),
                   sat, int(r0), int(c0), tuple(frames.shape[1:]))

    def column_prefix(self, frame: NDArray, ix0: NDArray, iy0: NDArray, size: NDArray
                      ) -> ColumnPrefix:
        """The same sums as a :class:`archi.circlesum.ColumnPrefix` of these boxes, on the
        window (for the circles that :mod:`archi.circlesum` measures): no second table."""
        nr = self.bad.shape[1] - 1
        # finite pixels of column j in rows 0..i: i + 1 less the bad ones (from the SAT)
        counts = np.arange(1, nr + 1)[None, :, None] - np.diff(self.bad[:, 1:, :], axis=2)
        nb = len(ix0)
        return ColumnPrefix(np.asarray(frame, np.int64), ix0, iy0,
                            np.broadcast_to(np.asarray(size, np.int64), np.shape(ix0)),
                            sums=self.cols[1:nr + 1],
                            counts=counts.transpose(1, 0, 2).astype(np.int32),
                            plane=np.asarray(frame, np.int64), row0=np.full(nb, self.r0),
                            col0=np.full(nb, self.c0), shape=self.shape)

    def clean(self, frame: NDArray, x: NDArray, y: NDArray, radius: NDArray
              ) -> NDArray[np.bool_]:
        """Whether each circle (n,) touches only finite pixels of the image and the window.

        The disk lies in the union of two rectangles, ``|x - xc| <= r, |y - yc| <= b`` and
        ``|x - xc| <= b, |y - yc| <= r`` with b = r / sqrt(2): the pixels meeting either
        (the square box without its corners, which often reach the NaN corners of the
        field of view) are tested."""
        x, y, radius = (np.asarray(v, float) for v in (x, y, radius))
        b = radius / np.sqrt(2.0)
        ok = np.isfinite(x) & np.isfinite(y)
        x, y = np.where(ok, x, 0.0), np.where(ok, y, 0.0)
        for half_w, half_h in ((radius, b), (b, radius)):
            ok &= self._no_bad_pixel(frame, *(np.floor(v + 0.5).astype(np.int64) for v in
                                              (x - half_w, x + half_w, y - half_h,
                                               y + half_h)))
        return ok

    def _no_bad_pixel(self, frame: NDArray, c_lo: NDArray, c_hi: NDArray, r_lo: NDArray,
                      r_hi: NDArray) -> NDArray[np.bool_]:
        """Image columns c_lo..c_hi x rows r_lo..r_hi (inclusive) within the image and the
        window, all finite."""
        H, W = self.shape
        nr, nc = self.bad.shape[1] - 1, self.bad.shape[2] - 1
        i0, i1 = r_lo - self.r0, r_hi - self.r0 + 1
        j0, j1 = c_lo - self.c0, c_hi - self.c0 + 1
        inside = ((r_lo >= 0) & (c_lo >= 0) & (r_hi < H) & (c_hi < W)
                  & (i0 >= 0) & (j0 >= 0) & (i1 <= nr) & (j1 <= nc))
        i0, i1, j0, j1 = (np.where(inside, v, 0) for v in (i0, i1, j0, j1))
        p = frame if len(self.bad) > 1 else 0
        sat = self.bad
        return inside & (sat[p, i1, j1] - sat[p, i0, j1] - sat[p, i1, j0] + sat[p, i0, j0] == 0)


def strip_circle_sums(tables: StripTables, frame: NDArray, x: NDArray, y: NDArray,
                      radius: NDArray) -> NDArray[np.float64]:
    """Flux (n,) [frame units] of circles of ``radius`` (n,) at (x, y) (n,) [pixel] in
    ``frame`` (n,) of the chunk, that are clean (:meth:`StripTables.clean`)."""
    x, y, radius = (np.asarray(v, float) for v in (x, y, radius))
    frame = np.asarray(frame, np.int64)
    flux = np.empty(len(x))
    for start in range(0, len(x), _ITEMS):
        sl = slice(start, start + _ITEMS)
        flux[sl] = _batch(tables, frame[sl], x[sl], y[sl], radius[sl])
    return flux


def _antiderivative(u: NDArray, r: NDArray) -> tuple[NDArray, NDArray]:
    """``A(u) = int_0^u sqrt(r^2 - t^2) dt`` and ``h(u) = sqrt(r^2 - u^2)`` for 0 <= u <= r."""
    h = np.sqrt(np.maximum(r * r - u * u, 0.0))
    return 0.5 * (u * h + r * r * np.arcsin(np.minimum(u / r, 1.0))), h


def _batch(tables: StripTables, frame: NDArray, x: NDArray, y: NDArray, r: NDArray
           ) -> NDArray:
    m = tables.cols.shape[1]
    a = r / np.sqrt(2.0)
    bands = int(np.ceil(a.max())) + 2  # per side: the centre pixel's part, then outwards
    steps = np.arange(bands + 1) - 0.5
    rr, aa = r[:, None], a[:, None]
    total = np.zeros(len(x))
    # the slab: column bands, arcs along y in the column table; the caps: row bands, arcs
    # along x in the row table, less each row's part inside the slab
    for table, across, along, cap in ((tables.cols, x - tables.c0, y - tables.r0, False),
                                      (tables.rows, y - tables.r0, x - tables.c0, True)):
        edges, _, lines = table.shape
        flat = table.reshape(-1)
        stride = m * lines  # from one edge to the next
        centre = np.floor(across + 0.5)
        along = along[:, None] + 0.5  # along the table in edge units: edge k at k
        for side in (1.0, -1.0):
            # |u| at the band edges (shared by neighbouring bands), clipped to the slab
            t = np.clip(side * (centre - across)[:, None] + steps, 0.0, aa)
            A, h = _antiderivative(t, rr)
            line = np.clip(centre[:, None] + side * np.arange(bands), 0, lines - 1)
            base = frame[:, None] * lines + line.astype(np.int64)
            parts = (t[:, :-1], t[:, 1:], A[:, :-1], A[:, 1:], h[:, :-1], h[:, 1:])
            band = (_arc(flat, base, stride, edges, *parts, along, 1.0, rr)
                    - _arc(flat, base, stride, edges, *parts, along, -1.0, rr))
            if cap:
                width = parts[1] - parts[0]
                band -= width * (_interpolate(flat, base, stride, edges, along + aa)
                                 - _interpolate(flat, base, stride, edges, along - aa))
            total += band.sum(axis=1)
    return total


def _interpolate(flat: NDArray, base: NDArray, stride: int, edges: int, T: NDArray
                 ) -> NDArray:
    """The prefix at edge coordinate ``T`` (linear between edges)."""
    k = np.clip(np.floor(T), 0, edges - 2)
    at = base + k.astype(np.int64) * stride
    g0 = np.take(flat, at)
    return g0 + (T - k) * (np.take(flat, at + stride) - g0)


def _arc(flat: NDArray, base: NDArray, stride: int, edges: int, t0: NDArray, t1: NDArray,
         A0: NDArray, A1: NDArray, h0: NDArray, h1: NDArray, along: NDArray, sign: float,
         r: NDArray) -> NDArray:
    """``int_{t0}^{t1} G(along + sign h(t)) dt`` per band, G the prefix interpolated along
    the table (edge units). The arc crosses at most one edge, L = floor(lowest end) + 1, at
    ``|t| = sqrt(r^2 - (L - along)^2)``; each piece lies in one pixel k, where
    G = P_k + (T - k) (P_{k+1} - P_k)."""
    T0, T1 = along + sign * h0, along + sign * h1
    k_lo = np.floor(np.minimum(T0, T1))
    k_hi = np.floor(np.maximum(T0, T1))
    crossing = np.sqrt(np.maximum(r * r - (k_lo + 1.0 - along) ** 2, 0.0))
    t_cross = np.where(k_hi > k_lo, np.clip(crossing, t0, t1), t1)
    A_cross, _ = _antiderivative(t_cross, r)
    k = np.clip(k_lo, 0, edges - 3)
    at = base + k.astype(np.int64) * stride
    p0, p1, p2 = (np.take(flat, at + i * stride) for i in range(3))
    # the upper arc falls with t (its piece near t0 is the higher pixel), the lower rises
    near_high = (k_hi > k_lo) if sign > 0 else np.zeros(k.shape, bool)
    far_high = (k_hi > k_lo) if sign < 0 else np.zeros(k.shape, bool)
    near = _piece(np.where(near_high, k + 1, k), t_cross - t0, sign * (A_cross - A0), along,
                  np.where(near_high, p1, p0), np.where(near_high, p2, p1))
    far = _piece(np.where(far_high, k + 1, k), t1 - t_cross, sign * (A1 - A_cross), along,
                 np.where(far_high, p1, p0), np.where(far_high, p2, p1))
    return near + far


def _piece(k: NDArray, width: NDArray, signed_area: NDArray, along: NDArray, low: NDArray,
           high: NDArray) -> NDArray:
    """``int G dt`` over a piece of ``width`` in pixel k: ``P_k width + (P_{k+1} - P_k)
    int (T - k) dt``, with ``int T dt = along width + signed_area``."""
    return low * width + (high - low) * ((along - k) * width + signed_area)


def main() -> None:
    import time

    from archi.circlesum import ColumnPrefix, circle_boxes, exact_circle_sums

    rng = np.random.default_rng(1)
    m = 64
    frames = rng.normal(1000.0, 50.0, (m, 200, 200))

    def best(fn, repeats=5):
        t = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            out = fn()
            t.append(time.perf_counter() - t0)
        return out, min(t)

    tables, t_tables = best(lambda: StripTables.build(frames, 0, 200, 0, 200))
    for r0, n_radii in ((8.0, 5), (20.0, 19), (30.0, 5)):
        cx, cy = rng.uniform(60, 140, 9), rng.uniform(60, 140, 9)
        star, radius, frame = (v.ravel() for v in np.meshgrid(
            np.arange(9), r0 + 0.1 * np.arange(n_radii), np.arange(m), indexing="ij"))
        x = cx[star] + rng.normal(0, 0.3, star.size)
        y = cy[star] + rng.normal(0, 0.3, star.size)
        ix0, iy0 = circle_boxes(x, y, radius)
        size = (np.floor(2 * radius + 1e-9) + 2).astype(np.int64)
        prefix, t_prefix = best(lambda: ColumnPrefix.build(frames, frame, ix0, iy0, size))
        (ref, _, _), t_old = best(lambda: exact_circle_sums(frames, prefix,
                                                            np.arange(star.size), x, y,
                                                            radius))
        assert tables.clean(frame, x, y, radius).all()
        new, t_new = best(lambda: strip_circle_sums(tables, frame, x, y, radius))
        print(f"r = {r0:g}-{r0 + 0.1 * (n_radii - 1):g} px, {star.size} circle-frames: "
              f"boundary method {t_old / star.size * 1e6:.2f} us each (table "
              f"{t_prefix * 1e3:.1f} ms), rim integrals {t_new / star.size * 1e6:.2f} us "
              f"each (tables {t_tables * 1e3:.1f} ms); largest relative difference "
              f"{np.max(np.abs(new / ref - 1)):.1e}")


if __name__ == "__main__":
    main()
