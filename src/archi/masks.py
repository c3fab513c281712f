"""Aperture masks: circles and star-shaped regions, as weights on pixel cutouts.

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
* Shape regions are split between neighbouring stars and use per-star thresholds
  (:func:`star_regions`); growth (:func:`grow`) is a vectorised dilation that is correct at
  the image edges.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

import numpy as np
from numpy.typing import ArrayLike, NDArray

from archi.overlap import exact_circle_weights, item_chunks, sampled_circle_weights

__all__ = [
    "Aperture", "CIRCLE_MODES", "CircleAperture", "ShapeAperture", "StarSegmentation",
    "star_regions", "segment_stars", "threshold_regions", "grow", "shape_apertures",
    "outside_field", "cutouts", "smooth_image", "estimate_noise",
    "ARCHI_REL_THRESHOLD",
]

ARCHI_REL_THRESHOLD = 11.0 / 255.0
"""archi's contour threshold as a fraction of the frame maximum (uint8 value > 10, ~4.31 %)."""


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

def _positions(x: ArrayLike, y: ArrayLike) -> tuple[NDArray, NDArray, NDArray[np.bool_]]:
    """1-D float copies of x, y with non-finite entries replaced by 0, and the finite mask."""
    x = np.atleast_1d(np.asarray(x, dtype=float))
    y = np.atleast_1d(np.asarray(y, dtype=float))
    if x.ndim != 1 or x.shape != y.shape:
        raise ValueError(f"x and y must be 1-D arrays of equal length, got shapes "
                         f"{x.shape} and {y.shape}")
    good = np.isfinite(x) & np.isfinite(y)
    return np.where(good, x, 0.0), np.where(good, y, 0.0), good


def _check_grid(grid: int) -> int:
    if isinstance(grid, bool) or int(grid) != grid or grid < 1 or grid % 2 == 0:
        raise ValueError(f"grid must be an odd integer >= 1 (archi's grid_bg / 200), got {grid!r}")
    return int(grid)


def _check_layers(layers: int) -> int:
    if isinstance(layers, bool) or not np.isfinite(layers) or int(layers) != layers \
            or layers < 0:
        raise ValueError(f"layers must be an integer >= 0, got {layers!r}")
    return int(layers)


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

CIRCLE_MODES = ("exact", "binary", "archi")


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
        x, y, good = _positions(x, y)
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
# regions
# ----------------------------------------------------------------------------------------

def smooth_image(image: NDArray, sigma: float) -> NDArray[np.float64]:
    """Gaussian smoothing [sigma in pixel] that ignores NaN pixels (normalised convolution);
    NaN pixels stay NaN."""
    from scipy import ndimage as ndi  # lazy: factor jobs with circles never need it
    image = np.asarray(image, dtype=float)
    finite = np.isfinite(image)
    if sigma <= 0:
        return np.where(finite, image, np.nan)
    num = ndi.gaussian_filter(np.where(finite, image, 0.0), sigma, mode="constant")
    den = ndi.gaussian_filter(finite.astype(float), sigma, mode="constant")
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(finite & (den > 0), num / den, np.nan)


def estimate_noise(image: NDArray) -> float:
    """Robust per-pixel noise of an image [image units], from the median absolute deviation
    of second differences along rows and columns (insensitive to smooth star light; NaN
    pixels ignored). 0 for a noise-free image of smooth light."""
    image = np.asarray(image, dtype=float)
    d = [image[:, 2:] - 2 * image[:, 1:-1] + image[:, :-2],
         image[2:, :] - 2 * image[1:-1, :] + image[:-2, :]]
    d = np.concatenate([a[np.isfinite(a)] for a in d])
    if d.size == 0:
        return 0.0
    mad = np.median(np.abs(d - np.median(d)))
    return float(1.4826 * mad / np.sqrt(6.0))


def _smoothed_noise(noise: float, sigma: float) -> float:
    """Noise of the smoothed image for white noise of ``noise`` per pixel."""
    from scipy import ndimage as ndi  # lazy: factor jobs with circles never need it
    if sigma <= 0:
        return noise
    delta = np.zeros((2 * int(4 * sigma + 1) + 1,) * 2)
    delta[delta.shape[0] // 2, delta.shape[1] // 2] = 1.0
    kernel = ndi.gaussian_filter(delta, sigma, mode="constant")
    return float(noise * np.sqrt(np.sum(kernel ** 2)))


def threshold_regions(image: NDArray, threshold: float, *, smooth: float = 0.0,
                      min_area: int = 1, connectivity: int = 2
                      ) -> tuple[NDArray[np.int32], NDArray[np.float64]]:
    """Connected regions of an image above a threshold, brightest first (for detection).

    Parameters
    ----------
    image : (H, W) image; NaN pixels never belong to a region.
    threshold : level [image units]; pixels with (smoothed) value >= threshold are kept.
    smooth : Gaussian sigma [pixel] applied first (NaN-aware), 0 = none.
    min_area : regions with fewer pixels are dropped (archi dropped contours of polygon area
        <= 50 grid pixels).
    connectivity : 2 = 8-connected (as OpenCV contours), 1 = 4-connected.

    Returns ``(labels, peaks)``: int32 (H, W) labels, 0 = no region, 1..m ordered by
    decreasing peak, and the peak (smoothed) value of each region (m,). Together with
    :func:`grow` this is what archi's ``shape_analysis``/``repeat_removal`` needs.
    """
    from scipy import ndimage as ndi  # lazy: factor jobs with circles never need it
    sm = smooth_image(image, smooth)
    above = np.isfinite(sm) & (sm >= threshold)
    structure = ndi.generate_binary_structure(2, connectivity)
    labels, m = ndi.label(above, structure=structure)
    if m == 0:
        return labels.astype(np.int32), np.zeros(0)
    index = np.arange(1, m + 1)
    areas = ndi.sum_labels(np.ones_like(sm), labels, index)
    peaks = np.asarray(ndi.maximum(np.where(above, sm, -np.inf), labels, index), float)
    keep = areas >= min_area
    order = index[keep][np.argsort(-peaks[keep], kind="stable")]
    relabel = np.zeros(m + 1, dtype=np.int32)
    relabel[order] = np.arange(1, len(order) + 1)
    return relabel[labels], peaks[order - 1]


@dataclass(frozen=True)
class StarSegmentation:
    """The result of :func:`segment_stars` for one frame (n stars, image (H, W))."""

    regions: list[NDArray[np.bool_]]  # (H, W) boolean region per star, disjoint
    cells: NDArray[np.int32]  # index of the star owning each pixel; -1 on NaN pixels
    brightness: NDArray[np.float64]  # brightness used to weight the split [image units]
    levels: NDArray[np.float64]  # local peak of the smoothed image in the star's cell
    thresholds: NDArray[np.float64]  # threshold applied per star [image units]
    fallback: NDArray[np.bool_]  # True where the region is the fallback disk
    noise: float  # per-pixel noise of the smoothed image [image units]


def segment_stars(image: NDArray, x: ArrayLike, y: ArrayLike, *,
                  brightness: ArrayLike | None = None,
                  rel_threshold: float = ARCHI_REL_THRESHOLD, nsigma: float = 3.0,
                  noise: float | None = None, smooth: float = 1.5,
                  peak_radius: float = 16.0, seed_radius: float = 3.0,
                  fallback_radius: float = 3.0, exponent: float = 4.0,
                  fill_holes: bool = True) -> StarSegmentation:
    """Split one frame into one region per star; :func:`star_regions` documents the method
    and options. Returns a :class:`StarSegmentation` with the regions and the diagnostics
    (cells, thresholds, which stars fell back to a disk)."""
    from scipy import ndimage as ndi  # lazy: factor jobs with circles never need it
    image = np.asarray(image, dtype=float)
    if image.ndim != 2:
        raise ValueError(f"image must be 2-D, got shape {image.shape}")
    xs, ys, good = _positions(x, y)
    n = len(xs)
    H, W = image.shape
    finite = np.isfinite(image)
    sm = smooth_image(image, smooth)
    if noise is None:
        noise = estimate_noise(image)
    noise_s = _smoothed_noise(float(noise), smooth)
    yy, xx = np.indices((H, W), dtype=float)

    # distance of every pixel to every star, and the local brightness of each star
    dist = np.full((n, H, W), np.inf)
    for i in np.flatnonzero(good):
        dist[i] = np.hypot(xx - xs[i], yy - ys[i])
    if brightness is None:
        b = np.zeros(n)
        for i in np.flatnonzero(good):
            disk = (dist[i] <= max(seed_radius, 0.5)) & finite
            if disk.any():
                b[i] = max(float(np.mean(sm[disk])), 0.0)
    else:
        b = np.clip(np.nan_to_num(np.asarray(brightness, dtype=float), nan=0.0), 0.0, None)
        if b.shape != (n,):
            raise ValueError(f"brightness must have one value per star ({n}), got {b.shape}")
    bmax = b[good].max() if good.any() else 0.0
    b = np.maximum(b, 1e-6 * bmax) if bmax > 0 else np.ones(n)

    # multiplicatively weighted Voronoi split: pixel -> star minimising d_i / b_i^(1/p)
    cells = np.full((H, W), -1, dtype=np.int32)
    if good.any() and finite.any():
        key = dist / b[:, None, None] ** (1.0 / exponent)
        cells = np.where(finite, np.argmin(key, axis=0), -1).astype(np.int32)
        cells[finite & ~np.isfinite(np.min(key, axis=0))] = -1

    regions: list[NDArray[np.bool_]] = []
    levels = np.full(n, np.nan)
    thresholds = np.full(n, np.nan)
    fallback = np.zeros(n, dtype=bool)
    structure = ndi.generate_binary_structure(2, 2)
    for i in range(n):
        region = np.zeros((H, W), dtype=bool)
        if good[i]:
            cell = cells == i
            near = cell & (dist[i] <= peak_radius)
            if near.any():
                levels[i] = float(np.max(sm[near]))
                thresholds[i] = max(rel_threshold * levels[i], nsigma * noise_s)
                above = cell & (sm >= thresholds[i]) if levels[i] > 0 else \
                    np.zeros_like(cell)
                labels, m = ndi.label(above, structure=structure)
                if m:
                    seeds = np.unique(labels[(dist[i] <= seed_radius) & above])
                    seeds = seeds[seeds > 0]
                    if seeds.size:
                        region = np.isin(labels, seeds)
                        if fill_holes:
                            region = ndi.binary_fill_holes(region) & cell
            if not region.any():
                fallback[i] = True
                disk = (dist[i] <= fallback_radius) & finite
                region = disk & cell if (disk & cell).any() else disk
        else:
            fallback[i] = True
        regions.append(region)
    return StarSegmentation(regions=regions, cells=cells, brightness=b, levels=levels,
                            thresholds=thresholds, fallback=fallback, noise=noise_s)


def star_regions(image: NDArray, x: ArrayLike, y: ArrayLike, *,
                 brightness: ArrayLike | None = None,
                 rel_threshold: float = ARCHI_REL_THRESHOLD, nsigma: float = 3.0,
                 noise: float | None = None, smooth: float = 1.5,
                 peak_radius: float = 16.0, seed_radius: float = 3.0,
                 fallback_radius: float = 3.0, exponent: float = 4.0,
                 fill_holes: bool = True) -> list[NDArray[np.bool_]]:
    """One boolean region per star (full image size (H, W), disjoint) from one frame.

    Each region is what archi's filled contour of a star was, made to work in crowded fields:

    1. The image is smoothed by a Gaussian of ``smooth`` [pixel] ignoring NaN pixels
       (outside the field), which never belong to a region.
    2. Pixels are shared between stars by a brightness-weighted Voronoi split: pixel p goes
       to the star minimising ``d_i(p) / b_i^(1/exponent)`` (the star whose light would
       dominate there if profiles fell as ``d^-exponent``). Boundaries are circles
       (Apollonius) around the fainter star, so every star keeps its own position, and a
       blended pair gets two regions. ``b_i`` is ``brightness`` if given (e.g.
       ``StarList.brightness``), else the mean smoothed image within ``seed_radius`` of the
       star. An intensity watershed is not used: the CHEOPS PSF is three-lobed with its
       maxima ~13 px from the centre, so a star's centre is not a local maximum and a
       15-px pair shows a single merged maximum.
    3. Per-star threshold ``max(rel_threshold * level_i, nsigma * noise)``, with
       ``level_i`` the maximum of the smoothed image in the star's cell within
       ``peak_radius`` [pixel] of it and ``noise`` the noise of the smoothed image
       (``noise`` per pixel is estimated robustly by :func:`estimate_noise` if not given).
       The default fraction is archi's 11/255 = 4.3 %, but of each star's own peak instead of
       the frame maximum, so faint stars keep regions.
    4. The region is the union of the connected (8-connectivity) above-threshold parts of
       the star's cell that come within ``seed_radius`` [pixel] of the star, holes filled
       (like archi's filled contours; filling never takes pixels of another cell).
    5. Fallback when that is empty (star too faint, or on NaN pixels): a disk of
       ``fallback_radius`` [pixel] around the star (finite pixels of its cell, or all its
       finite pixels if the cell has none there); empty if the star is off the image or its
       position is not finite. :func:`segment_stars` returns which stars fell back.

    ``x, y`` (n,) are the stars' positions in this frame [pixel], star 0 = target.
    """
    return segment_stars(image, x, y, brightness=brightness, rel_threshold=rel_threshold,
                         nsigma=nsigma, noise=noise, smooth=smooth, peak_radius=peak_radius,
                         seed_radius=seed_radius, fallback_radius=fallback_radius,
                         exponent=exponent, fill_holes=fill_holes).regions


def grow(region: NDArray, layers: int, metric: str = "chebyshev") -> NDArray[np.bool_]:
    """Grow a boolean region by ``layers`` layers of pixels (binary dilation).

    ``metric="chebyshev"`` (default, archi's ``shape_increase``): each layer adds the 3 x 3
    neighbourhood of every pixel, i.e. one dilation by a (2 layers + 1)^2 square, done at
    once with a separable maximum filter. ``"manhattan"``: 4-neighbour (cross) growth.
    ``"euclidean"``: pixels whose centre lies within ``layers`` of a region pixel centre.
    The result has the input's shape: growth stops at the image edges (where archi raised
    NameError, bug B8) and nothing wraps around. ``layers = 0`` returns a copy.
    """
    from scipy import ndimage as ndi  # lazy: factor jobs with circles never need it
    region = np.asarray(region, dtype=bool)
    layers = _check_layers(layers)
    if metric not in ("chebyshev", "manhattan", "euclidean"):
        raise ValueError(f"metric must be 'chebyshev', 'manhattan' or 'euclidean', "
                         f"got {metric!r}")
    if layers == 0 or not region.any():
        return region.copy()
    if metric == "chebyshev":
        return ndi.maximum_filter(region.view(np.uint8), size=2 * layers + 1,
                                  mode="constant", cval=0).astype(bool)
    if metric == "manhattan":
        return ndi.distance_transform_cdt(~region, metric="taxicab") <= layers
    return ndi.distance_transform_edt(~region) <= layers


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
        if shift not in ("bilinear", "integer"):
            raise ValueError(f"shift must be 'bilinear' or 'integer', got {shift!r}")
        if not (np.isfinite(x_ref) and np.isfinite(y_ref)):
            raise ValueError(f"reference position must be finite, got ({x_ref}, {y_ref})")
        self.layers = _check_layers(layers)
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
        x, y, good = _positions(x, y)
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
