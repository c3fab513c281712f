"""Home of the figure of the field with every star (``plots/field.png``): apertures, star
numbers, G magnitudes and the sky's North and East (the tracking GIF: :mod:`archi.plots.gif`).

Images are drawn with a log stretch; NaN pixels (outside the field of view) in grey. Star
outlines: :mod:`archi.plots.outlines`. Size :data:`FIELD_FIGSIZE` at
:data:`~archi.plots.figure.DPI`.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from archi.geometry import ASSUMED, rotate_offsets, sky_offsets
from archi.plots.figure import log_limits, new_figure, save_png
from archi.plots.outlines import Apertures, mask_getter, outlines
from archi.stars import StarLightCurves
from archi.visit import Visit

__all__ = ["FIELD_FIGSIZE", "COMPASS_LENGTH", "plot_field", "sky_directions",
           "check_visit_frames"]

FIELD_FIGSIZE = (7.0, 7.0)
"""Size of the field figure [inch]."""
COMPASS_LENGTH = 16.0
"""Length of the North and East arrows of the field figure [pixel]."""
_COMPASS_BASE = (24.0, 24.0)  # (x, y) [pixel]: a corner outside the circular field of view

_NAN_COLOUR = "0.72"  # pixels outside the field of view (NaN) are drawn in this grey
_CMAP = "magma"


def check_visit_frames(visit: Visit, lc: StarLightCurves) -> None:
    """Raise ``ValueError`` unless the visit and the light curves have as many frames."""
    if visit.n_frames != lc.n_frames:
        raise ValueError(f"the visit has {visit.n_frames} frames but the light curves "
                         f"{lc.n_frames}")


def _log_display(image: NDArray[np.float64]) -> tuple[NDArray[np.float64], float, float]:
    """(image clipped at the log-stretch floor, NaN kept; vmin; vmax) [electrons]."""
    image = np.asarray(image, dtype=float)
    vmin, vmax = log_limits(image)
    with np.errstate(invalid="ignore"):
        shown = np.where(np.isfinite(image), np.maximum(image, vmin), np.nan)
    return shown, vmin, vmax


def _cmap() -> Any:
    import matplotlib

    return matplotlib.colormaps[_CMAP].with_extremes(bad=_NAN_COLOUR)


def _label_effects() -> list[Any]:
    from matplotlib import patheffects

    return [patheffects.withStroke(linewidth=2.0, foreground="black")]


def sky_directions(visit: Visit, frame: int) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """Unit vectors (dx, dy) [pixel] pointing North (Dec increasing) and East (RA increasing)
    in ``frame``'s image, by the visit's catalogue-to-pixel mapping (``Visit.sky``, else
    PIPE's, :data:`archi.geometry.ASSUMED`) at the frame's roll angle.

    Found by mapping sky offsets of 1 arcsec from a reference point on the equator: the
    directions do not depend on where the field is (away from the poles).
    """
    transform = visit.sky or ASSUMED
    arcsec = 1.0 / 3600.0
    dx, dy = sky_offsets(np.array([0.0, arcsec]), np.array([arcsec, 0.0]), 0.0, 0.0)
    ux, uy = transform.roll_zero(dx, dy)
    turn = transform.turn(float(visit.roll_angle[frame]))
    px, py = rotate_offsets(ux, uy, turn)
    north, east = np.array([px[0], py[0]]), np.array([px[1], py[1]])
    return north / np.hypot(*north), east / np.hypot(*east)


def _draw_compass(ax: Any, visit: Visit, frame: int) -> None:
    """North and East arrows from :data:`_COMPASS_BASE`, labelled N and E."""
    base = np.array(_COMPASS_BASE)
    for letter, direction in zip("NE", sky_directions(visit, frame)):
        tip = base + COMPASS_LENGTH * direction
        ax.annotate("", xy=tuple(tip), xytext=tuple(base), annotation_clip=False,
                    arrowprops={"arrowstyle": "->", "color": "white", "lw": 1.5})
        label = base + (COMPASS_LENGTH + 5.0) * direction
        ax.text(float(label[0]), float(label[1]), letter, color="white", fontsize=9,
                ha="center", va="center", path_effects=_label_effects())


def _star_label(lc: StarLightCurves, k: int) -> str:
    """The star's number, and its catalogue G magnitude when it has one."""
    mag = float(lc.stars.mag[k])
    if int(lc.stars.catalogue_row[k]) >= 0 and math.isfinite(mag):
        return f"{k}\nG {mag:.1f}"
    return str(k)


def plot_field(visit: Visit, lc: StarLightCurves, path: str | Path, frame: int = 0, *,
               apertures: Apertures | None = None) -> Path:
    """One frame (log stretch) with every star's mask outline, its number and catalogue G
    magnitude, and arrows to the sky's North and East (:func:`sky_directions`).

    NaN pixels (outside the field of view) are drawn in grey. Outlines:
    :mod:`archi.plots.outlines`. Size :data:`FIELD_FIGSIZE` at
    :data:`~archi.plots.figure.DPI`. Returns the path.

    Raises ``ValueError`` for a frame out of range or when the visit and the light curves
    have different numbers of frames.
    """
    check_visit_frames(visit, lc)
    if not 0 <= frame < lc.n_frames:
        raise ValueError(f"frame {frame} out of range (0..{lc.n_frames - 1})")
    from matplotlib.collections import LineCollection
    from matplotlib.colors import LogNorm

    image = np.asarray(visit.cube[frame], dtype=float)
    shown, vmin, vmax = _log_display(image)
    fig = new_figure(FIELD_FIGSIZE)
    ax = fig.add_subplot()
    im = ax.imshow(shown, origin="lower", cmap=_cmap(), norm=LogNorm(vmin, vmax, clip=True),
                   interpolation="nearest")
    fig.colorbar(im, ax=ax, fraction=0.046, pad=0.02, label="electrons (log scale)")
    solid, dashed = outlines(lc, frame, image.shape,
                             mask_getter(apertures, lc, image.shape))
    ax.add_collection(LineCollection(solid, colors="cyan", linewidths=0.8))
    ax.add_collection(LineCollection(dashed, colors="cyan", linewidths=0.8, linestyles="--"))
    x, y = lc.tracks.x[:, frame], lc.tracks.y[:, frame]
    ax.plot(x, y, "+", color="cyan", ms=5)
    effects = _label_effects()
    for k in range(lc.n_stars):
        if math.isfinite(float(x[k])) and math.isfinite(float(y[k])):
            left = float(x[k]) > image.shape[1] - 25  # at the right edge: label on the left
            ax.text(float(x[k]) + (-3 if left else 3), float(y[k]) + 3, _star_label(lc, k),
                    color="white", fontsize=7, path_effects=effects, clip_on=True,
                    linespacing=1.0, ha="right" if left else "left")
    _draw_compass(ax, visit, frame)
    ax.set_xlim(-0.5, image.shape[1] - 0.5)
    ax.set_ylim(-0.5, image.shape[0] - 0.5)
    ax.set_xlabel("x [pixel]")
    ax.set_ylabel("y [pixel]")
    outline_text = ("masks" if apertures is not None else
                    "solid: circle mask, dashed: shape mask's mean area")
    ax.set_title(f"{lc.visit_key}  frame {frame}, roll {float(lc.roll_angle[frame]):.1f} deg\n"
                 f"star number and catalogue G magnitude; {outline_text}", fontsize=9)
    return save_png(fig, path)
