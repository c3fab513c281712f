"""Home of the tracking GIF (``star_tracking.gif``): frames spread over the visit, every
star's mask outlined and numbered where the tracking put it, to check the tracking.

Frames are drawn straight into palette images with Pillow, no matplotlib figure: the image
in :data:`GIF_LEVELS` levels of a log stretch (black, red, yellow, white), enlarged
:data:`GIF_SCALE` times by repeating pixels; NaN pixels (outside the field of view) grey;
outlines (:mod:`archi.plots.outlines`) and position crosses cyan, numbers white. Few levels
and a flat sky (the stretch starts at the median pixel) keep the GIF's LZW coding small:
the demo's 60 frames of 400 x 400 pixels take 1.3 MB, drawn and written in 0.33 s of CPU
(a matplotlib figure per frame took 5 s for 100 frames, 8 MB).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from archi.io.atomic import atomic_path
from archi.plots.field import check_visit_frames
from archi.plots.figure import log_limits
from archi.plots.outlines import Apertures, MaskGetter, mask_getter, outlines
from archi.stars import StarLightCurves
from archi.visit import Visit

__all__ = ["GIF_SCALE", "GIF_LEVELS", "GIF_MAX_FRAMES", "GIF_FRAME_DURATION_MS",
           "OUTLINE_INDEX", "gif_palette", "gif_frame_indices", "save_gif"]

GIF_SCALE = 2
"""GIF pixels per image pixel along each axis (a 200 x 200 subarray: 400 x 400)."""
GIF_LEVELS = 32
"""Colour levels of the image's log stretch (palette indices 0 .. GIF_LEVELS - 1)."""
GIF_MAX_FRAMES = 60
"""Default number of frames of the GIF at most, evenly spread over the visit."""
GIF_FRAME_DURATION_MS = 200.0
"""Default display time of one GIF frame [millisecond]; the GIF format stores it in units
of 10 ms (archi's ``duration=0.5`` meant 0.5 ms to imageio >= 2.28: F15)."""

NAN_INDEX = GIF_LEVELS
"""Palette index of NaN pixels (outside the field of view): grey."""
OUTLINE_INDEX = GIF_LEVELS + 1
"""Palette index of the mask outlines and position crosses: cyan."""
_TEXT_INDEX, _STROKE_INDEX = GIF_LEVELS + 2, GIF_LEVELS + 3  # white, with a black rim
_EXTRA_COLOURS = ((184, 184, 184), (0, 255, 255), (255, 255, 255), (0, 0, 0))
_FLOOR_PERCENTILE = 50.0  # a flat sky: noise drawn in levels would double the GIF's size
_LINE_WIDTH = 2  # [GIF pixel] outlines stand out over bright stars
_DASH = 2  # dashed outlines: this many polyline steps drawn, as many left out


def gif_palette() -> list[int]:
    """The GIF's palette, flat RGB: :data:`GIF_LEVELS` levels from black through red and
    yellow to white (matplotlib's "hot"), then grey (NaN), cyan (outlines), white, black."""
    t = np.linspace(0.0, 1.0, GIF_LEVELS)[:, None]
    ramp = np.clip(3.0 * t - np.array([[0.0, 1.0, 2.0]]), 0.0, 1.0)
    rgb = np.vstack([np.round(255 * ramp), np.array(_EXTRA_COLOURS)]).astype(int)
    return [int(v) for v in rgb.ravel()]


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
    """Draws one frame after another with the first frame's stretch."""

    def __init__(self, visit: Visit, lc: StarLightCurves, first: int,
                 masks: MaskGetter | None):
        from PIL import ImageFont

        self.visit, self.lc, self.masks = visit, lc, masks
        image = np.asarray(visit.cube[first], dtype=float)
        self.shape = image.shape
        vmin, vmax = log_limits(image, _FLOOR_PERCENTILE)  # one stretch for the whole GIF
        self.log_min, self.log_span = math.log(vmin), math.log(vmax) - math.log(vmin)
        self.palette = gif_palette()
        self.font = ImageFont.load_default(size=14)

    def levels(self, image: NDArray[np.float64]) -> NDArray[np.uint8]:
        """Palette indices of an image: top row first (y up), enlarged GIF_SCALE times."""
        with np.errstate(invalid="ignore", divide="ignore"):
            t = (np.log(np.maximum(image, math.exp(self.log_min))) - self.log_min) / self.log_span
        index = np.clip(np.round(t * (GIF_LEVELS - 1)), 0, GIF_LEVELS - 1)
        index = np.where(np.isfinite(image), index, NAN_INDEX).astype(np.uint8)[::-1]
        return np.repeat(np.repeat(index, GIF_SCALE, axis=0), GIF_SCALE, axis=1)

    def to_gif(self, x: Any, y: Any) -> tuple[Any, Any]:
        """GIF pixel coordinates of image positions (x, y) [pixel]."""
        return (np.asarray(x) + 0.5) * GIF_SCALE, (self.shape[0] - 0.5 - np.asarray(y)) * GIF_SCALE

    def polyline(self, points: NDArray[np.float64]) -> list[tuple[float, float]]:
        gx, gy = self.to_gif(points[:, 0], points[:, 1])
        return list(zip(gx.tolist(), gy.tolist()))

    def render(self, frame: int) -> Any:
        """The GIF frame of ``frame`` as a palette image (PIL.Image.Image, mode "P")."""
        from PIL import Image, ImageDraw

        picture = Image.fromarray(self.levels(np.asarray(self.visit.cube[frame], dtype=float)))
        picture.putpalette(self.palette)
        draw = ImageDraw.Draw(picture)
        solid, dashed = outlines(self.lc, frame, self.shape, self.masks)
        for line in solid:
            draw.line(self.polyline(line), fill=OUTLINE_INDEX, width=_LINE_WIDTH)
        for line in dashed:
            points = self.polyline(line)
            for i in range(0, len(points) - 1, 2 * _DASH):
                draw.line(points[i:i + _DASH + 1], fill=OUTLINE_INDEX, width=_LINE_WIDTH)
        self.mark_stars(draw, frame)
        label = (f"frame {frame}/{self.lc.n_frames - 1}\n"
                 f"roll {float(self.lc.roll_angle[frame]):.1f} deg")
        # a thick black rim: with one pixel, white text over the grey corner is faint (a
        # box behind it would hide the stars near the corner)
        draw.text((4, 3), label, fill=_TEXT_INDEX, font=self.font, stroke_width=2,
                  stroke_fill=_STROKE_INDEX)
        return picture

    def mark_stars(self, draw: Any, frame: int) -> None:
        """A cross at every star's tracked position, and its number."""
        gx, gy = self.to_gif(self.lc.tracks.x[:, frame], self.lc.tracks.y[:, frame])
        for k, (x, y) in enumerate(zip(gx.tolist(), gy.tolist())):
            if not (math.isfinite(x) and math.isfinite(y)):
                continue
            draw.line([(x - 3, y), (x + 3, y)], fill=OUTLINE_INDEX)
            draw.line([(x, y - 3), (x, y + 3)], fill=OUTLINE_INDEX)
            right_edge = x > (self.shape[1] - 10) * GIF_SCALE  # there: the number on the left
            draw.text((x - 5 if right_edge else x + 5, y - 18), str(k), fill=_TEXT_INDEX,
                      font=self.font, stroke_width=1, stroke_fill=_STROKE_INDEX,
                      anchor="ra" if right_edge else "la")


def save_gif(visit: Visit, lc: StarLightCurves, path: str | Path, *,
             max_frames: int = GIF_MAX_FRAMES, apertures: Apertures | None = None,
             frame_duration_ms: float = GIF_FRAME_DURATION_MS) -> Path:
    """Animated GIF of the frames with every star's position, outline and number.

    At most ``max_frames`` frames, evenly spread over the visit (:func:`gif_frame_indices`),
    each shown for ``frame_duration_ms`` milliseconds (rounded to 10 ms); the GIF loops
    forever. The frame number and roll angle are written in the top-left corner; outlines
    as in :mod:`archi.plots.outlines`; drawing: the module docstring. The cube is read one
    frame at a time and the frames are encoded as they are drawn. Written atomically.
    Returns the path.

    Raises ``ValueError`` when the visit and the light curves have different numbers of
    frames, or ``max_frames`` < 1, or ``frame_duration_ms`` < 10.
    """
    check_visit_frames(visit, lc)
    if not frame_duration_ms >= 10.0:
        raise ValueError(f"frame_duration_ms must be at least 10 (the GIF's unit), "
                         f"not {frame_duration_ms}")
    frames = gif_frame_indices(lc.n_frames, max_frames)
    if frames.size == 0:
        raise ValueError("the light curves have no frames")
    renderer = _GifRenderer(visit, lc, int(frames[0]),
                            mask_getter(apertures, lc, visit.image_shape))
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    first = renderer.render(int(frames[0]))
    rest = (renderer.render(int(frame)) for frame in frames[1:])
    with atomic_path(path) as tmp:
        first.save(tmp, format="GIF", save_all=True, append_images=rest, loop=0,
                   duration=round(frame_duration_ms / 10.0) * 10)
    return path
