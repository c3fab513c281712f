"""Home of what every figure shares: the Agg-backed figure, atomic PNG saving, and the
normalised flux against hours that the light-curve plots draw.

Matplotlib is imported lazily inside the functions, with the non-interactive Agg backend;
figures are built as :class:`matplotlib.figure.Figure` objects (no pyplot figure manager to
leak). Image sizes are fixed (no ``bbox_inches="tight"``), so they are known in advance.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from numpy.typing import NDArray

from archi.io.atomic import atomic_path

if TYPE_CHECKING:  # pragma: no cover
    from matplotlib.figure import Figure

__all__ = ["DPI", "new_figure", "save_png", "hours_since_start", "normalised", "number_text",
           "log_limits"]

DPI = 100
"""Resolution of the PNG figures [pixel per inch]."""

PNG_COMPRESSION = 3
"""zlib level of the PNG files (Pillow's default, 6, costs 0.01 s more per figure for
files 15% smaller; the pixels are the same)."""


def new_figure(figsize: tuple[float, float], dpi: float = DPI) -> Figure:
    """A new Agg-backed figure (matplotlib imported here, with the Agg backend)."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=figsize, dpi=dpi)
    FigureCanvasAgg(fig)
    return fig


def save_png(fig: Figure, path: str | Path, dpi: float = DPI) -> Path:
    """Save ``fig`` as a PNG at ``path`` atomically; parent folders are created."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=dpi, pil_kwargs={"compress_level": PNG_COMPRESSION})
    return path


def hours_since_start(mjd: NDArray[np.float64]) -> NDArray[np.float64]:
    """Hours since the first frame."""
    mjd = np.asarray(mjd, dtype=float)
    return (mjd - mjd[0]) * 24.0


def normalised(flux: NDArray[np.float64], good: NDArray[np.bool_]) -> NDArray[np.float64]:
    """``flux`` divided by the median of its good finite values (NaN if there are none)."""
    flux = np.asarray(flux, dtype=float)
    use = good & np.isfinite(flux)
    if not use.any():
        use = np.isfinite(flux)
    median = float(np.median(flux[use])) if use.any() else math.nan
    if not math.isfinite(median) or median == 0.0:
        return np.full_like(flux, np.nan)
    return flux / median


def number_text(value: float, fmt: str = ".1f") -> str:
    """``value`` formatted with ``fmt``, or ``n/a`` when it is NaN or infinite."""
    value = float(value)
    return format(value, fmt) if math.isfinite(value) else "n/a"


def log_limits(image: NDArray[np.float64], floor_percentile: float = 20.0
               ) -> tuple[float, float]:
    """(vmin, vmax) [electrons] of the log stretch images are drawn with: the
    ``floor_percentile`` percentile of the positive finite pixels (what lies below, mostly
    sky background, is drawn flat) up to the brightest, at least a decade apart; (1, 10)
    when no pixel is positive."""
    image = np.asarray(image, dtype=float)
    positive = image[np.isfinite(image) & (image > 0)]
    if positive.size == 0:
        return 1.0, 10.0
    vmin = float(np.percentile(positive, floor_percentile))
    return vmin, float(max(positive.max(), vmin * 10.0))
