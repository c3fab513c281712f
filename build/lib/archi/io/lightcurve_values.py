"""Home of what every light-curve file (FITS, text, run info) derives from the light curves
the same way: the one-line text of a run option, the shape check, per-star frame fractions."""

from __future__ import annotations

import datetime as _dt
import math
from typing import Any

import numpy as np
from numpy.typing import NDArray

from archi.stars import StarLightCurves, StarList

__all__ = ["option_text", "check_lightcurves", "is_matched", "fraction", "finite_or_none",
           "utc_now"]


def option_text(value: Any, limit: int | None = None) -> str:
    """A run option as one line of printable ASCII.

    A callable becomes ``module:qualname`` (never its ``repr`` with a memory address), a path
    its string. Control characters and non-ASCII characters are replaced. With ``limit``, a
    longer text is cut to ``limit`` characters ending in ``...``.
    """
    if callable(value) and not isinstance(value, type):
        module = getattr(value, "__module__", None) or "?"
        name = getattr(value, "__qualname__", None) or getattr(value, "__name__", None)
        text = f"{module}:{name}" if name else type(value).__qualname__
    else:
        text = str(value)
    text = " ".join(text.split())  # one line
    text = "".join(c if " " <= c <= "~" else "?" for c in text)
    if limit is not None and len(text) > limit:
        text = text[:max(limit - 3, 0)] + "..."
    return text


def _check_shape(what: str, array: Any, expected: tuple[int, ...]) -> None:
    if np.shape(array) != expected:
        raise ValueError(f"StarLightCurves.{what} has shape {np.shape(array)},"
                         f" expected {expected}")


def check_lightcurves(lc: StarLightCurves) -> None:
    """Raise ``ValueError`` when the arrays of ``lc`` do not share one (n_stars, n_frames)."""
    shape = np.shape(lc.flux)
    if len(shape) != 2:
        raise ValueError(f"StarLightCurves.flux must be 2-D (n_stars, n_frames), not {shape}")
    n_stars, n_frames = shape
    for name in ("flux_err", "flag"):
        _check_shape(name, getattr(lc, name), shape)
    for name in ("x", "y", "measured"):
        _check_shape(f"tracks.{name}", getattr(lc.tracks, name), shape)
    for name in ("mjd_time", "bjd_time", "roll_angle"):
        _check_shape(name, getattr(lc, name), (n_frames,))
    for name in ("factors", "npix", "cdpp"):
        _check_shape(name, getattr(lc, name), (n_stars,))
    if len(lc.methods) != n_stars or lc.stars.n_stars != n_stars:
        raise ValueError(f"StarLightCurves has {n_stars} light curves but "
                         f"{len(lc.methods)} methods and {lc.stars.n_stars} stars")


def is_matched(stars: StarList, k: int) -> bool:
    """Whether star ``k`` has a row in the DRP star catalogue."""
    return int(stars.catalogue_row[k]) >= 0


def fraction(mask: NDArray[np.bool_]) -> float:
    """Fraction of True values of ``mask`` (0 when it is empty)."""
    return float(np.mean(mask)) if mask.size else 0.0


def finite_or_none(value: float) -> float | None:
    """``value`` as a float, or None when it is NaN or infinite."""
    value = float(value)
    return value if math.isfinite(value) else None


def utc_now() -> str:
    """The current UTC time, ``yyyy-mm-ddThh:mm:ss``."""
    return _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S")
