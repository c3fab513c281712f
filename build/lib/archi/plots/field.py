"""Home of the figures of the images: the field with every star (``plots/field.png``) and
the tracking GIF (``star_tracking.gif``).

Images are drawn with a log stretch; NaN pixels (outside the field of view) in grey. Star
outlines: :mod:`archi.plots.outlines`. Sizes are fixed: :data:`FIELD_FIGSIZE` at
:data:`~archi.plots.figure.DPI`, GIF frames :data:`GIF_FIGSIZE` at :data:`GIF_DPI`.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from archi.io.atomic import atomic_path
from archi.plots.figure import new_figure, save_png
from archi.plots.outlines import Apertures, MaskGetter, mask_getter, outlines
from archi.stars import StarLightCurves
from archi.visit import Visit

__all__ = ["FIELD_FIGSIZE", "GIF_FIGSIZE", "GIF_DPI", "GIF_FRAME_DURATION_MS", "plot_field",
           "gif_frame_indices", "save_gif"]

FIELD_FIGSIZE = (7.0, 7.0)
"""Size of the field figure [inch]."""
GIF_FIGSIZE = (5.0, 5.0)
"""Size of a GIF frame [inch] (480 x 480 pixels at :data:`GIF_DPI`)."""
GIF_DPI = 96
"""Resolution of the GIF frames [pixel per inch]."""
GIF_FRAME_DURATION_MS = 200.0
"""Default display time of one GIF frame [millisecond].

imageio >= 2.28 (its v3 pillow plugin, used here) takes ``duration`` in milliseconds; the
old v2 GIF writer archi used took seconds (archi's ``duration=0.5`` means 0.5 ms today:
F15). The GIF format stores it in units of 10 ms.
"""

_NAN_COLOUR = "0.72"  # pixels outside the field of view (NaN) are drawn in this grey
_CMAP = "magma"


def _check_visit_frames(visit: Visit, lc: StarLightCurves) -> None:
    if visit.n_frames != lc.n_frames:
        raise ValueError(f"the visit has {visit.n_frames} frames but the light curves "
                         f"{lc.n_frames}")


def _log_display(image: NDArray[np.float64]) -> tuple[NDArray[np.float64], float, float]:
    """(image clipped at the log-stretch floor, NaN kept; vmin; vmax) [electrons]."""
    image = np.asarray(image, dtype=float)
    finite = image[np.isfinite(image)]
    positive = finite[finite > 0]
    if positive.size == 0:
        vmin, vmax = 1.0, 10.0
    else:
        vmin = float(np.percentile(positive, 20.0))
        vmax = float(max(positive.max(), vmin * 10.0))
    with np.errstate(invalid="ignore"):
        shown = np.where(np.isfinite(image), np.maximum(image, vmin), np.nan)
    return shown, vmin, vmax


def _cmap() -> Any:
    import matplotlib

    return matplotlib.colormaps[_CMAP].with_extremes(bad=_NAN_COLOUR)


def _label_effects() -> list[Any]:
    from matplotlib import patheffects

    return [patheffects.withStroke(linewidth=2.0, foreground="black")]


def plot_field(visit: Visit, lc: StarLightCurves, path: str | Path, frame: int = 0, *,
               apertures: Apertures | None = None) -> Path:
    """One frame (log stretch) with every star's mask outline and number (star_names.png).

    NaN pixels (outside the field of view) are drawn in grey. Outlines:
    :mod:`archi.plots.outlines`. Size :data:`FIELD_FIGSIZE` at
    :data:`~archi.plots.figure.DPI`. Returns the path.

    Raises ``ValueError`` for a frame out of range or when the visit and the light curves
    have different numbers of frames.
    """
    _check_visit_frames(visit, lc)
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
            ax.text(float(x[k]) + 3, float(y[k]) + 3, str(k), color="white", fontsize=8,
                    path_effects=effects, clip_on=True)
    ax.set_xlim(-0.5, image.shape[1] - 0.5)
    ax.set_ylim(-0.5, image.shape[0] - 0.5)
    ax.set_xlabel("x [pixel]")
    ax.set_ylabel("y [pixel]")
    ax.set_title(f"{lc.visit_key}  frame {frame}, roll {float(lc.roll_angle[frame]):.1f} deg",
                 fontsize=10)
    return save_png(fig, path)


def gif_frame_indices(n_frames: int, max_frames: int) -> NDArray[np.int64]:
    """Frames of a GIF: all of them, or ``max_frames`` evenly spread from first to last."""
    if max_frames < 1:
        raise ValueError(f"max_frames must be at least 1, not {max_frames}")
    if n_frames <= max_frames:
        return np.arange(n_frames, dtype=np.int64)
    if max_frames == 1:
        return np.zeros(1, dtype=np.int64)
    return np.round(np.linspace(0, n_frames - 1, max_frames)).astype(np.int64)


class _GifRenderer:
    """One figure reused for every frame: image data, outlines and labels are updated."""

    def __init__(self, visit: Visit, lc: StarLightCurves, first: int,
                 masks: MaskGetter | None):
        from matplotlib.collections import LineCollection
        from matplotlib.colors import LogNorm

        self.visit, self.lc, self.masks = visit, lc, masks
        image = np.asarray(visit.cube[first], dtype=float)
        self.shape = image.shape
        shown, self.vmin, vmax = _log_display(image)  # one stretch for the whole GIF
        self.fig = fig = new_figure(GIF_FIGSIZE, GIF_DPI)
        ax = fig.add_axes((0.0, 0.0, 1.0, 1.0))
        ax.set_axis_off()
        self.im = ax.imshow(shown, origin="lower", cmap=_cmap(),
                            norm=LogNorm(self.vmin, vmax, clip=True), interpolation="nearest")
        ax.set_xlim(-0.5, image.shape[1] - 0.5)
        ax.set_ylim(-0.5, image.shape[0] - 0.5)
        self.solid = ax.add_collection(LineCollection([], colors="cyan", linewidths=0.8))
        self.dashed = ax.add_collection(LineCollection([], colors="cyan", linewidths=0.8,
                                                       linestyles="--"))
        (self.marks,) = ax.plot([], [], "+", color="cyan", ms=5)
        effects = _label_effects()
        self.labels = [ax.text(0, 0, str(k), color="white", fontsize=7, path_effects=effects,
                               clip_on=True) for k in range(lc.n_stars)]
        self.corner = ax.text(0.02, 0.98, "", transform=ax.transAxes, ha="left", va="top",
                              color="white", fontsize=9, path_effects=effects)

    def render(self, frame: int) -> NDArray[np.uint8]:
        """The figure for ``frame`` as an RGB array (height, width, 3)."""
        image = np.asarray(self.visit.cube[frame], dtype=float)
        with np.errstate(invalid="ignore"):
            self.im.set_data(np.where(np.isfinite(image), np.maximum(image, self.vmin), np.nan))
        solid, dashed = outlines(self.lc, frame, self.shape, self.masks)
        self.solid.set_segments(solid)
        self.dashed.set_segments(dashed)
        x, y = self.lc.tracks.x[:, frame], self.lc.tracks.y[:, frame]
        self.marks.set_data(x, y)
        for k, label in enumerate(self.labels):
            ok = math.isfinite(float(x[k])) and math.isfinite(float(y[k]))
            label.set_visible(ok)
            if ok:
                label.set_position((float(x[k]) + 3, float(y[k]) + 3))
        self.corner.set_text(f"frame {frame}/{self.lc.n_frames - 1}\n"
                             f"roll {float(self.lc.roll_angle[frame]):.1f} deg")
        self.fig.canvas.draw()
        return np.asarray(self.fig.canvas.buffer_rgba())[..., :3].copy()


def save_gif(visit: Visit, lc: StarLightCurves, path: str | Path, *, max_frames: int = 100,
             apertures: Apertures | None = None,
             frame_duration_ms: float = GIF_FRAME_DURATION_MS) -> Path:
    """Animated GIF of the frames with every star's position, outline and number.

    At most ``max_frames`` frames, evenly spread over the visit (:func:`gif_frame_indices`);
    each is shown for ``frame_duration_ms`` milliseconds (set explicitly: imageio's v3
    pillow plugin takes milliseconds, the GIF stores tens of milliseconds) and the GIF loops
    forever. The frame number and roll angle are written in the top-left corner; outlines
    as in :mod:`archi.plots.outlines`. Frames are rendered one by one in memory (no image
    files on disk) from a single reused figure and appended to imageio's writer; the cube is
    read one frame at a time. The pillow plugin keeps the appended frames until it encodes the GIF
    on close, so memory is bounded by ``max_frames`` frames of 480 x 480 x 3 bytes
    (~0.7 MB each). Written atomically. Returns the path.

    Raises ``ValueError`` when the visit and the light curves have different numbers of
    frames, or ``max_frames`` < 1, or ``frame_duration_ms`` <= 0.
    """
    _check_visit_frames(visit, lc)
    if not frame_duration_ms > 0:
        raise ValueError(f"frame_duration_ms must be positive, not {frame_duration_ms}")
    frames = gif_frame_indices(lc.n_frames, max_frames)
    if frames.size == 0:
        raise ValueError("the light curves have no frames")
    import imageio.v3 as iio

    renderer = _GifRenderer(visit, lc, int(frames[0]),
                            mask_getter(apertures, lc, visit.image_shape))
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        with iio.imopen(tmp, "w", extension=".gif", plugin="pillow") as writer:
            for frame in frames:
                rgb = renderer.render(int(frame))
                writer.write(rgb, is_batch=False, duration=float(frame_duration_ms), loop=0)
    return path
