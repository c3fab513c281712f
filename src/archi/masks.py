"""Aperture masks: the home of apertures (circles and star shapes) as weights on cutouts.

Pixel conventions: ``archi.__doc__`` (``image[y, x]``, pixel centres at integers, positions
written ``(x, y)`` in pixels).

Every aperture kind implements :class:`Aperture`: for arrays of positions ``x, y`` (n,) it
returns a fixed-size batch ``(weights, ix0, iy0)``: ``weights`` float64 (n, h, w) with
values in [0, 1] (the fraction of each pixel inside the aperture) and the integer column /
row ``ix0, iy0`` (n,) of each cutout's ``[0, 0]`` pixel in the full image. Cutouts may
reach beyond the image; :func:`cutouts` gathers image pixels for them (padding with NaN)
and :func:`outside_field` tells which apertures touch NaN pixels or the image edge.
A non-finite position gets all-zero weights and origin (0, 0).

Differences from archi's masks (``archi_spec.md`` §4, bugs B8, B9, F6, F7):

* archi builds every mask once on frame 0 and moves it by whole pixels with ``np.roll``,
  which wraps it around the image edges. Here circles are re-rasterised at each sub-pixel
  position (or, ``mode="archi"``, moved by whole pixels as archi does), shape templates are
  moved by a sub-pixel (bilinear) or rounded shift, nothing wraps, and the out-of-field
  test is made per frame from each frame's own NaN pattern.
* archi's up-sampled "background grid" (``grid_bg = 200 s``) is reproduced without
  up-sampled images: a weight is the fraction of the ``s x s`` sub-pixels of a pixel that
  the fine-grid mask covers (``grid`` argument).
* Shape regions come from :mod:`archi.segmentation` (split between neighbouring stars,
  per-star thresholds, growth correct at the image edges).
"""

from __future__ import annotations

import math
from typing import Protocol, runtime_checkable

import numpy as np
from numpy.typing import ArrayLike, NDArray

from archi.geometry import finite_positions
from archi.options import APERTURE_MODES, SHAPE_SHIFTS
from archi.circlesum import exact_circle_weights
from archi.overlap import item_chunks, sampled_circle_weights
from archi.segmentation import check_layers, grow, star_regions

__all__ = ["Aperture", "CIRCLE_MODES", "CircleAperture", "ShapeAperture", "cutouts",
           "outside_field", "shape_apertures", "star_regions"]


@runtime_checkable
class Aperture(Protocol):
    """What the photometry engine needs from an aperture."""

    def weights(self, x: NDArray, y: NDArray) -> tuple[NDArray, NDArray, NDArray]:
        """``(weights (n, h, w) in [0, 1], ix0 (n,), iy0 (n,))`` for positions x, y [pixel]."""
        ...

    @property
    def area(self) -> float:
        """Nominal area [pixel^2]."""
        ...


# ----------------------------------------------------------------------------------------
# helpers
# ----------------------------------------------------------------------------------------

def _check_grid(grid: int) -> int:
    if isinstance(grid, bool) or int(grid) != grid or grid < 1 or grid % 2 == 0:
        raise ValueError(f"grid must be an odd integer >= 1 (archi's grid_bg / 200), got {grid!r}")
    return int(grid)


def cutouts(images: NDArray, ix0: NDArray, iy0: NDArray, shape: tuple[int, int],
            fill_value: float = np.nan) -> NDArray[np.float64]:
    """Gather cutouts ``images[k][iy0[k]:iy0[k]+h, ix0[k]:ix0[k]+w]`` as an (n, h, w) array.

    ``images`` is one (H, W) image used for every position, or an (n, H, W) cube whose
    frame k goes with position k. Pixels beyond the image edges get ``fill_value``.
    """
    images = np.asarray(images)
    ix0 = np.asarray(ix0, dtype=np.int64)
    iy0 = np.asarray(iy0, dtype=np.int64)
    h, w = shape
    H, W = images.shape[-2:]
    rows = iy0[:, None] + np.arange(h)
    cols = ix0[:, None] + np.arange(w)
    rin = (rows >= 0) & (rows < H)
    cin = (cols >= 0) & (cols < W)
    rc, cc = np.clip(rows, 0, H - 1), np.clip(cols, 0, W - 1)
    if images.ndim == 2:
        out = images[rc[:, :, None], cc[:, None, :]].astype(float)
    elif images.ndim == 3:
        if len(images) != len(ix0):
            raise ValueError(f"{len(images)} images for {len(ix0)} positions")
        k = np.arange(len(ix0))[:, None, None]
        out = images[k, rc[:, :, None], cc[:, None, :]].astype(float)
    else:
        raise ValueError(f"images must be 2-D or 3-D, got shape {images.shape}")
    out[~(rin[:, :, None] & cin[:, None, :])] = fill_value
    return out


def outside_field(weights: NDArray, ix0: NDArray, iy0: NDArray,
                  nan_mask: NDArray) -> NDArray[np.bool_]:
    """Per position, whether the aperture touches unusable pixels (archi's out-of-bounds flag).

    ``nan_mask`` is True on pixels that are NaN (outside the circular field of view, or
    otherwise invalid): one (H, W) mask for every position, or (n, H, W) with the mask of the
    frame of each position (archi only used frame 0's). A position is flagged when a pixel
    of positive weight is masked or lies beyond the image edge, and also when its weights
    are all zero (non-finite position: nothing can be measured).
    """
    weights = np.asarray(weights)
    nan_mask = np.asarray(nan_mask, dtype=bool)
    bad = cutouts(nan_mask, ix0, iy0, weights.shape[1:], fill_value=True).astype(bool)
    touches = np.any((weights > 0) & bad, axis=(1, 2))
    return touches | ~np.any(weights > 0, axis=(1, 2))


# ----------------------------------------------------------------------------------------
# circles
# ----------------------------------------------------------------------------------------

CIRCLE_MODES = APERTURE_MODES
"""Kinds of circle (:class:`CircleAperture` ``mode``): the configuration's ``aperture_mode``."""


class CircleAperture:
    """Circular aperture of ``radius`` centred at each sub-pixel position.

    Parameters
    ----------
    radius : radius [pixel of the grid selected by ``grid``, i.e. real pixels when
        ``grid = 1``]; the real radius is ``radius / grid``. Fractional values allowed.
    mode : ``"exact"``: exact pixel-overlap fractions of the circle (analytic, no position
        quantisation; equal to photutils' ``method="exact"`` to ~1e-12).
        ``"binary"``: archi's pixel test, weight 1 where the pixel centre lies within
        ``radius`` of (x, y) (``<=``), else 0, rasterised afresh at every sub-pixel
        position (archi rasterised it once and moved it by whole pixels: ``"archi"``).
        ``"archi"``: archi's own circle, the binary mask of the ``reference`` position
        moved by whole (grid) pixels: centred at ``reference + round(position -
        reference)`` (round half up, on the fine grid when ``grid`` > 1), so its shape and
        pixel count stay those of the first frame while the star moves up to half a pixel
        within it. For comparisons with archi; nothing wraps around the image edges.
    grid : archi's ``grid_bg / 200`` (odd s = 1, 3, 5, ...). With ``mode="binary"`` a
        weight is the fraction of the s x s sub-pixel centres of the pixel lying within
        ``radius / s`` real pixels of (x, y): exactly archi's binary mask on its s-times
        up-sampled (block-replicated, flux / s^2) image, with ``radius`` in fine pixels, but
        without building up-sampled images. With ``mode="exact"`` only the radius scaling
        applies.

    reference : ``(x, y)`` [pixel] of the first frame, for ``mode="archi"`` only (non-finite:
        the star has no position to start from, and nothing is measured).

    ``weights`` returns (n, size, size) cutouts with ``size = floor(2 r) + 2`` (r = real
    radius) and ``ix0 = floor(cx - r + 0.5)``: every pixel that overlaps the circle centred
    at ``cx, cy = centres(x, y)``.
    """

    def __init__(self, radius: float, mode: str = "exact", grid: int = 1,
                 reference: tuple[float, float] | None = None):
        if not (np.isfinite(radius) and radius > 0):
            raise ValueError(f"radius must be a positive number, got {radius!r}")
        if mode not in CIRCLE_MODES:
            raise ValueError(f"mode must be one of {', '.join(CIRCLE_MODES)}, got {mode!r}")
        if (mode == "archi") != (reference is not None):
            raise ValueError("a reference position is needed with mode 'archi', and only then")
        self.radius = float(radius)
        self.mode = mode
        self.grid = _check_grid(grid)
        self.real_radius = self.radius / self.grid
        self.size = int(math.floor(2.0 * self.real_radius + 1e-9)) + 2
        self.reference = None if reference is None else tuple(map(float, reference))

    def __repr__(self) -> str:
        ref = "" if self.reference is None else f", reference={self.reference}"
        return (f"CircleAperture(radius={self.radius}, mode={self.mode!r}, "
                f"grid={self.grid}{ref})")

    def centres(self, x: ArrayLike, y: ArrayLike) -> tuple[NDArray, NDArray]:
        """Where the circle is centred [pixel] for stars at (x, y): the positions themselves,
        or with ``mode="archi"`` the reference moved by the rounded offset (whole pixels of
        the grid; equal to archi's fine-grid shift to rounding)."""
        x, y = np.asarray(x, float), np.asarray(y, float)
        if self.reference is None:
            return x, y
        s = self.grid
        return tuple(r + np.floor(s * (v - r) + 0.5) / s
                     for v, r in zip((x, y), self.reference))

    @property
    def area(self) -> float:
        """Nominal area pi (radius / grid)^2 [pixel^2] (the binary mask's pixel count varies
        with the position around this value)."""
        return float(np.pi * self.real_radius ** 2)

    @property
    def cutout_shape(self) -> tuple[int, int]:
        """(h, w) of the weight cutouts [pixel]."""
        return (self.size, self.size)

    def weights(self, x: ArrayLike, y: ArrayLike) -> tuple[NDArray, NDArray, NDArray]:
        """Weights (n, size, size) in [0, 1] and cutout origins ix0, iy0 (n,) for positions
        x, y (n,) [pixel]."""
        r = self.real_radius
        x, y = self.centres(x, y)
        return self.weights_in(x, y, np.floor(x - r + 0.5), np.floor(y - r + 0.5), self.size)

    def weights_in(self, x: ArrayLike, y: ArrayLike, ix0: ArrayLike, iy0: ArrayLike,
                   size: int) -> tuple[NDArray, NDArray, NDArray]:
        """As :meth:`weights` for circles centred at (x, y) (the :meth:`centres`, not
        shifted again), on given (size, size) cutouts at (ix0, iy0) that contain them."""
        x, y, good = finite_positions(x, y)
        ix0, iy0 = (np.nan_to_num(np.asarray(v, float), nan=0.0, posinf=0.0, neginf=0.0)
                    .astype(np.int64) for v in (ix0, iy0))
        if self.mode == "exact":
            w = exact_circle_weights(x, y, ix0, iy0, self.real_radius, size)
        else:
            w = sampled_circle_weights(x, y, ix0, iy0, self.radius, self.grid, size)
        if not good.all():
            w[~good] = 0.0
            ix0[~good] = 0
            iy0[~good] = 0
        return w, ix0, iy0


# ----------------------------------------------------------------------------------------
# shape apertures
# ----------------------------------------------------------------------------------------

class ShapeAperture:
    """A star's region grown by ``layers`` pixels, moved with the star (archi's ``shape``).

    Parameters
    ----------
    region : (H, W) boolean region of the star on the real pixel grid, from the frame in
        which the star was at (x_ref, y_ref) (e.g. from :func:`star_regions`). An empty
        region is replaced by the single pixel nearest (x_ref, y_ref).
    x_ref, y_ref : the star's position in that frame [pixel].
    layers : growth [pixel of the grid selected by ``grid``] (archi's shape factor; see
        :func:`grow`, default Chebyshev growth).
    shift : how the grown template follows the star to (x, y), moved by
        ``(x - x_ref, y - y_ref)``: ``"integer"`` = archi's shift by the rounded offset
        (round half up) on the (fine) grid; ``"bilinear"`` = sub-pixel shift by bilinear
        interpolation of the template weights: continuous in position, weights in [0, 1],
        total weight conserved exactly.
    grid : archi's ``grid_bg / 200`` (odd s). The region is up-sampled by block replication
        (as archi's contours of its up-sampled image), grown by ``layers`` fine pixels and
        shifted on the fine grid; the weights are the fine template block-averaged back to
        real pixels (fraction of each pixel's s x s sub-pixels covered).
    metric : growth metric, see :func:`grow`.

    The grown template is never clipped at the image edges (it is grown in a padded
    frame), so it keeps its shape when the star moves; cutouts may extend beyond the image.
    It is translated, not rotated: the PSF keeps its orientation on the detector while the
    field rolls.
    """

    _CORNERS = ((0, 0), (0, 1), (1, 0), (1, 1))  # (dy, dx) fine-pixel offsets

    def __init__(self, region: NDArray, x_ref: float, y_ref: float, layers: int,
                 shift: str = "bilinear", grid: int = 1, metric: str = "chebyshev"):
        region = np.asarray(region, dtype=bool)
        if region.ndim != 2:
            raise ValueError(f"region must be a 2-D boolean image, got shape {region.shape}")
        if shift not in SHAPE_SHIFTS:
            raise ValueError(f"shift must be one of {', '.join(SHAPE_SHIFTS)}, got {shift!r}")
        if not (np.isfinite(x_ref) and np.isfinite(y_ref)):
            raise ValueError(f"reference position must be finite, got ({x_ref}, {y_ref})")
        self.layers = check_layers(layers)
        self.grid = s = _check_grid(grid)
        self.shift = shift
        self.metric = metric
        self.x_ref, self.y_ref = float(x_ref), float(y_ref)

        rows, cols = np.nonzero(region)
        if rows.size:
            r0, r1, c0, c1 = rows.min(), rows.max() + 1, cols.min(), cols.max() + 1
            crop = region[r0:r1, c0:c1]
        else:
            r0, c0 = int(np.floor(self.y_ref + 0.5)), int(np.floor(self.x_ref + 0.5))
            r1, c1 = r0 + 1, c0 + 1
            crop = np.ones((1, 1), dtype=bool)
        pad = -(-self.layers // s)  # real pixels needed to hold `layers` fine pixels
        fine = np.kron(crop, np.ones((s, s), dtype=bool)) if s > 1 else crop
        fine = np.pad(fine, s * pad)
        fine = grow(fine, self.layers, metric)
        self.fine_template = fine.astype(float)
        self.ox, self.oy = int(c0 - pad), int(r0 - pad)  # real origin of the template
        h, w = (r1 - r0) + 2 * pad, (c1 - c0) + 2 * pad

        # block-averaged template for every fine residue (ry, rx) and bilinear corner
        corners = self._CORNERS if shift == "bilinear" else self._CORNERS[:1]
        stack = np.zeros((s, s, len(corners), h + 1, w + 1))
        canvas = np.zeros((s * (h + 1), s * (w + 1)))
        for ry in range(s):
            for rx in range(s):
                for k, (dy, dx) in enumerate(corners):
                    canvas[:] = 0.0
                    canvas[ry + dy: ry + dy + s * h, rx + dx: rx + dx + s * w] = fine
                    stack[ry, rx, k] = canvas.reshape(h + 1, s, w + 1, s).mean(axis=(1, 3))
        # drop the extra row / column when no shift ever reaches it
        hh = h + 1 if stack[..., h, :].any() else h
        ww = w + 1 if stack[..., :, w].any() else w
        self._stack = np.ascontiguousarray(stack[..., :hh, :ww])
        self._area = float(fine.sum()) / (s * s)

    def __repr__(self) -> str:
        return (f"ShapeAperture(layers={self.layers}, shift={self.shift!r}, grid={self.grid}, "
                f"ref=({self.x_ref:.2f}, {self.y_ref:.2f}), area={self._area:.1f})")

    @property
    def area(self) -> float:
        """Area of the grown template [pixel^2] (= its total weight at any position)."""
        return self._area

    @property
    def cutout_shape(self) -> tuple[int, int]:
        """(h, w) of the weight cutouts [pixel]."""
        return self._stack.shape[-2:]

    @property
    def template(self) -> tuple[NDArray[np.float64], int, int]:
        """``(weights, ix0, iy0)`` of the grown template at the reference position."""
        return self._stack[0, 0, 0].copy(), self.ox, self.oy

    def weights(self, x: ArrayLike, y: ArrayLike) -> tuple[NDArray, NDArray, NDArray]:
        """Weights (n, h, w) in [0, 1] and cutout origins ix0, iy0 (n,) for positions
        x, y (n,) [pixel]."""
        x, y, good = finite_positions(x, y)
        s = self.grid
        fx = s * (x - self.x_ref)  # offsets in fine pixels
        fy = s * (y - self.y_ref)
        if self.shift == "integer":
            ix, iy = np.floor(fx + 0.5), np.floor(fy + 0.5)
            coef = np.ones((len(x), 1))
        else:
            ix, iy = np.floor(fx), np.floor(fy)
            ax, ay = fx - ix, fy - iy
            coef = np.stack([(1 - ay) * (1 - ax), (1 - ay) * ax, ay * (1 - ax), ay * ax], 1)
        ix, iy = ix.astype(np.int64), iy.astype(np.int64)
        qx, rx = np.divmod(ix, s)
        qy, ry = np.divmod(iy, s)
        h, w = self.cutout_shape
        out = np.zeros((len(x), h, w))
        for sl in item_chunks(len(x), h * w):
            c = coef[sl]
            if s == 1:
                out[sl] = np.einsum("nk,khw->nhw", c, self._stack[0, 0])
            else:
                for k in range(c.shape[1]):
                    out[sl] += c[:, k, None, None] * self._stack[ry[sl], rx[sl], k]
        np.clip(out, 0.0, 1.0, out=out)
        ix0 = self.ox + qx
        iy0 = self.oy + qy
        if not good.all():
            out[~good] = 0.0
            ix0[~good] = 0
            iy0[~good] = 0
        return out, ix0, iy0


def shape_apertures(image: NDArray, x: ArrayLike, y: ArrayLike, layers: int | ArrayLike, *,
                    shift: str = "bilinear", grid: int = 1, metric: str = "chebyshev",
                    **region_options) -> list[ShapeAperture]:
    """Shape apertures of every star from one frame: :func:`star_regions` (options passed
    on) grown by ``layers`` (one value, or one per star) and attached to (x[i], y[i])."""
    xs, ys = np.atleast_1d(np.asarray(x, float)), np.atleast_1d(np.asarray(y, float))
    regions = star_regions(image, xs, ys, **region_options)
    lay = np.broadcast_to(np.asarray(layers), xs.shape)
    out = []
    for i, region in enumerate(regions):
        xr, yr = (xs[i], ys[i]) if np.isfinite(xs[i]) and np.isfinite(ys[i]) else (0.0, 0.0)
        out.append(ShapeAperture(region, xr, yr, lay[i].item(), shift=shift, grid=grid,
                                 metric=metric))
    return out
