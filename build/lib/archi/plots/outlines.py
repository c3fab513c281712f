"""Home of the star outlines drawn on images (:func:`archi.plots.plot_field`,
:func:`archi.plots.save_gif`).

Outlines are drawn from ``apertures`` when given, otherwise approximated: a circle of the
factor radius for ``circle`` stars, a dashed circle of the mean mask area (``npix``) for
``shape`` stars. ``apertures`` is one of

* one callable ``(star, frame) -> mask``;
* a sequence with one entry per star, each either a callable ``frame -> mask`` or an
  aperture object with a ``weights(x, y) -> (weights (n, h, w), ix0 (n,), iy0 (n,))``
  method (:class:`archi.masks.Aperture`), placed at the star's tracked position; its mask
  is ``weights > 0`` with cutout pixel ``[j, i]`` on image pixel ``[iy0 + j, ix0 + i]``.

A mask is a boolean image of the frame's shape (``mask[y, x]``, pixel conventions in
``archi.__doc__``), outlined along pixel edges.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any, Union

import numpy as np
from numpy.typing import NDArray

from archi.stars import StarLightCurves

__all__ = ["Apertures", "MaskGetter", "mask_getter", "mask_edges", "outlines"]

Apertures = Union[Callable[[int, int], NDArray[np.bool_]], Sequence[Any]]
"""Star masks: ``f(star, frame) -> mask``, or per star ``f_star(frame) -> mask`` or an
aperture object with a ``weights(x, y)`` method (module docstring)."""

MaskGetter = Callable[[int, int], NDArray[np.bool_]]
"""``(star, frame) -> mask`` (a boolean image of the frame's shape)."""

_CIRCLE_POINTS = 73


def _mask_from_weights(aperture: Any, x: float, y: float,
                       shape: tuple[int, int]) -> NDArray[np.bool_]:
    """Full-image mask ``weights > 0`` of an aperture object placed at (x, y) [pixel]."""
    mask = np.zeros(shape, dtype=bool)
    if not (math.isfinite(x) and math.isfinite(y)):
        return mask
    weights, ix0, iy0 = aperture.weights(np.array([x]), np.array([y]))
    cut = np.asarray(weights)[0] > 0
    i0, j0 = int(np.asarray(ix0)[0]), int(np.asarray(iy0)[0])
    h, w = cut.shape
    ys, xs = slice(max(j0, 0), min(j0 + h, shape[0])), slice(max(i0, 0), min(i0 + w, shape[1]))
    if ys.start < ys.stop and xs.start < xs.stop:
        mask[ys, xs] = cut[ys.start - j0:ys.stop - j0, xs.start - i0:xs.stop - i0]
    return mask


def mask_getter(apertures: Apertures | None, lc: StarLightCurves, shape: tuple[int, int]
                ) -> MaskGetter | None:
    """``(star, frame) -> mask`` from any form of ``apertures`` (module docstring)."""
    if apertures is None:
        return None
    if callable(apertures):
        return apertures
    entries = list(apertures)
    if len(entries) != lc.n_stars:
        raise ValueError(f"apertures has {len(entries)} entries for {lc.n_stars} stars")
    for k, entry in enumerate(entries):
        if not (callable(entry) or callable(getattr(entry, "weights", None))):
            raise ValueError(f"apertures[{k}] is neither a callable (frame -> mask) nor an "
                             f"aperture with a weights(x, y) method")

    def mask(star: int, frame: int) -> NDArray[np.bool_]:
        entry = entries[star]
        if callable(getattr(entry, "weights", None)):
            return _mask_from_weights(entry, float(lc.tracks.x[star, frame]),
                                      float(lc.tracks.y[star, frame]), shape)
        return entry(frame)
    return mask


def mask_edges(mask: NDArray[np.bool_]) -> NDArray[np.float64]:
    """Pixel-edge segments around the True pixels of ``mask``: shape (k, 2, 2), (x, y) pairs."""
    m = np.pad(np.asarray(mask, dtype=bool), 1)
    iy, ix = np.nonzero(m[:, 1:] != m[:, :-1])  # edges between columns ix-1 and ix (unpadded)
    x = ix - 0.5
    y = iy - 1.0
    vertical = np.stack([np.column_stack([x, y - 0.5]), np.column_stack([x, y + 0.5])], axis=1)
    iy, ix = np.nonzero(m[1:, :] != m[:-1, :])  # edges between rows iy-1 and iy
    y = iy - 0.5
    x = ix - 1.0
    horizontal = np.stack([np.column_stack([x - 0.5, y]), np.column_stack([x + 0.5, y])],
                          axis=1)
    return np.concatenate([vertical, horizontal]).reshape(-1, 2, 2)


def _circle(x: float, y: float, radius: float) -> NDArray[np.float64]:
    t = np.linspace(0.0, 2.0 * np.pi, _CIRCLE_POINTS)
    return np.column_stack([x + radius * np.cos(t), y + radius * np.sin(t)])


def outlines(lc: StarLightCurves, frame: int, shape: tuple[int, int],
             masks: MaskGetter | None
             ) -> tuple[list[NDArray[np.float64]], list[NDArray[np.float64]]]:
    """(solid lines, dashed lines) outlining every star's mask in ``frame``."""
    solid: list[NDArray[np.float64]] = []
    dashed: list[NDArray[np.float64]] = []
    for k in range(lc.n_stars):
        x, y = float(lc.tracks.x[k, frame]), float(lc.tracks.y[k, frame])
        if masks is not None:
            mask = np.asarray(masks(k, frame), dtype=bool)
            if mask.shape != shape:
                raise ValueError(f"aperture of star {k} in frame {frame} has shape "
                                 f"{mask.shape}, the image {shape}")
            solid.extend(mask_edges(mask))
        elif not (math.isfinite(x) and math.isfinite(y)):
            continue
        elif lc.methods[k] == "circle" and math.isfinite(float(lc.factors[k])):
            solid.append(_circle(x, y, float(lc.factors[k])))
        elif math.isfinite(float(lc.npix[k])) and lc.npix[k] > 0:
            dashed.append(_circle(x, y, math.sqrt(float(lc.npix[k]) / math.pi)))
    return solid, dashed
