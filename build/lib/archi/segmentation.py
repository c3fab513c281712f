"""Image segmentation: one region per star (archi's contours), thresholds, smoothing, growth.

Home of how a frame is split into star regions, which shape apertures
(:class:`archi.masks.ShapeAperture`) then move with their stars: NaN-aware smoothing
(:func:`smooth_image`), a robust noise estimate (:func:`estimate_noise`), connected regions
above a threshold (:func:`threshold_regions`), the per-star split of crowded fields
(:func:`segment_stars`, :func:`star_regions`) and region growth (:func:`grow`).
Pixel conventions: ``archi.__doc__`` (``image[y, x]``, pixel centres at integers, positions
written ``(x, y)`` in pixels).

Differences from archi (``archi_spec.md`` §4): regions are split between neighbouring stars
and use per-star thresholds (:func:`star_regions`); growth (:func:`grow`) is a vectorised
dilation that is correct at the image edges (archi raised NameError there, bug B8) and never
wraps around them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray

from archi.geometry import finite_positions

__all__ = [
    "ARCHI_REL_THRESHOLD", "StarSegmentation", "check_layers", "estimate_noise", "grow",
    "segment_stars", "smooth_image", "star_regions", "threshold_regions",
]

ARCHI_REL_THRESHOLD = 11.0 / 255.0
"""archi's contour threshold as a fraction of the frame maximum (uint8 value > 10, ~4.31 %)."""


def check_layers(layers: int) -> int:
    """``layers`` (a growth in pixels) as an int; ValueError unless an integer >= 0."""
    if isinstance(layers, bool) or not np.isfinite(layers) or int(layers) != layers \
            or layers < 0:
        raise ValueError(f"layers must be an integer >= 0, got {layers!r}")
    return int(layers)



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
    image = np.asarray(image, dtype=float)
    if image.ndim != 2:
        raise ValueError(f"image must be 2-D, got shape {image.shape}")
    xs, ys, good = finite_positions(x, y)
    n = len(xs)
    finite = np.isfinite(image)
    sm = smooth_image(image, smooth)
    if noise is None:
        noise = estimate_noise(image)
    noise_s = _smoothed_noise(float(noise), smooth)
    dist = _distances(image.shape, xs, ys, good)
    b = _split_brightness(brightness, dist, sm, finite, good, seed_radius)
    cells = _weighted_cells(dist, b, finite, good, exponent)

    regions: list[NDArray[np.bool_]] = []
    levels = np.full(n, np.nan)
    thresholds = np.full(n, np.nan)
    fallback = np.zeros(n, dtype=bool)
    for i in range(n):
        region = np.zeros(image.shape, dtype=bool)
        if good[i]:
            cell = cells == i
            region, levels[i], thresholds[i] = _thresholded_region(
                cell, dist[i], sm, noise_s, rel_threshold=rel_threshold, nsigma=nsigma,
                peak_radius=peak_radius, seed_radius=seed_radius, fill_holes=fill_holes)
            if not region.any():
                fallback[i] = True
                disk = (dist[i] <= fallback_radius) & finite
                region = disk & cell if (disk & cell).any() else disk
        else:
            fallback[i] = True
        regions.append(region)
    return StarSegmentation(regions=regions, cells=cells, brightness=b, levels=levels,
                            thresholds=thresholds, fallback=fallback, noise=noise_s)


def _distances(shape: tuple[int, int], xs: NDArray, ys: NDArray, good: NDArray
               ) -> NDArray[np.float64]:
    """Distance [pixel] of every pixel to every star (n, H, W); inf for stars not ``good``."""
    H, W = shape
    yy, xx = np.indices((H, W), dtype=float)
    dist = np.full((len(xs), H, W), np.inf)
    for i in np.flatnonzero(good):
        dist[i] = np.hypot(xx - xs[i], yy - ys[i])
    return dist


def _split_brightness(brightness: ArrayLike | None, dist: NDArray, sm: NDArray,
                      finite: NDArray, good: NDArray, seed_radius: float) -> NDArray:
    """Brightness (n,) weighting the split: ``brightness`` if given, else the mean smoothed
    image ``sm`` within ``seed_radius`` of each star; floored at 1e-6 of the brightest (all
    1 when none is positive)."""
    n = len(dist)
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
    return np.maximum(b, 1e-6 * bmax) if bmax > 0 else np.ones(n)


def _weighted_cells(dist: NDArray, b: NDArray, finite: NDArray, good: NDArray,
                    exponent: float) -> NDArray[np.int32]:
    """Multiplicatively weighted Voronoi split: each finite pixel goes to the star
    minimising d_i / b_i^(1/exponent) (index of the star, -1 for none)."""
    cells = np.full(finite.shape, -1, dtype=np.int32)
    if good.any() and finite.any():
        key = dist / b[:, None, None] ** (1.0 / exponent)
        cells = np.where(finite, np.argmin(key, axis=0), -1).astype(np.int32)
        cells[finite & ~np.isfinite(np.min(key, axis=0))] = -1
    return cells


def _thresholded_region(cell: NDArray, dist: NDArray, sm: NDArray, noise_s: float, *,
                        rel_threshold: float, nsigma: float, peak_radius: float,
                        seed_radius: float, fill_holes: bool
                        ) -> tuple[NDArray[np.bool_], float, float]:
    """A star's region within its ``cell`` before any fallback (steps 3-4 of
    :func:`star_regions`; empty if nothing qualifies), its level and its threshold (NaN
    when no pixel of the cell lies within ``peak_radius``). ``dist`` (H, W): distance to
    the star [pixel]; ``sm``: the smoothed image; ``noise_s``: its noise."""
    from scipy import ndimage as ndi  # lazy: factor jobs with circles never need it
    region = np.zeros(cell.shape, dtype=bool)
    near = cell & (dist <= peak_radius)
    if not near.any():
        return region, np.nan, np.nan
    level = float(np.max(sm[near]))
    threshold = max(rel_threshold * level, nsigma * noise_s)
    above = cell & (sm >= threshold) if level > 0 else np.zeros_like(cell)
    labels, m = ndi.label(above, structure=ndi.generate_binary_structure(2, 2))
    if m:
        seeds = np.unique(labels[(dist <= seed_radius) & above])
        seeds = seeds[seeds > 0]
        if seeds.size:
            region = np.isin(labels, seeds)
            if fill_holes:
                region = ndi.binary_fill_holes(region) & cell
    return region, level, threshold


def star_regions(image: NDArray, x: ArrayLike, y: ArrayLike, **options: Any
                 ) -> list[NDArray[np.bool_]]:
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
    ``options`` are :func:`segment_stars`'s keywords (defaults there): ``brightness``,
    ``rel_threshold``, ``nsigma``, ``noise``, ``smooth``, ``peak_radius``, ``seed_radius``,
    ``fallback_radius``, ``exponent``, ``fill_holes``.
    """
    return segment_stars(image, x, y, **options).regions


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
    layers = check_layers(layers)
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
