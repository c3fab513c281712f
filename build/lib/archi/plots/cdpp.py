"""Home of the CDPP-versus-factor figure (``plots/cdpp_vs_factor.png``)."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from archi.plots.figure import new_figure, save_png

__all__ = ["CDPP_FIGSIZE", "plot_cdpp_vs_factor"]

CDPP_FIGSIZE = (8.0, 5.0)
"""Size of the CDPP-versus-factor figure [inch]."""

_COLUMNS = ("star", "factor", "cdpp", "valid")


def _cdpp_columns(table: Any) -> tuple[NDArray[np.int64], NDArray[np.float64],
                                       NDArray[np.float64], NDArray[np.bool_]]:
    """(star, factor, cdpp [ppm], valid) of a CDPP table, read by column name only; a run
    is valid only with a finite positive CDPP."""
    columns, missing = {}, []
    for name in _COLUMNS:
        try:
            columns[name] = np.asarray(table[name])
        except KeyError:
            missing.append(name)
    if missing:
        raise ValueError(f"CDPP table lacks column(s) {', '.join(missing)}")
    if len(table) == 0:
        raise ValueError("CDPP table has no rows")
    cdpp = columns["cdpp"].astype(float)
    valid = columns["valid"].astype(bool) & np.isfinite(cdpp) & (cdpp > 0)
    return columns["star"].astype(int), columns["factor"].astype(float), cdpp, valid


def plot_cdpp_vs_factor(table: Any, path: str | Path,
                        chosen: Mapping[int, float] | None = None) -> Path:
    """CDPP [ppm, log scale] against the mask factor, one line per star.

    ``table`` is a CDPP table, read only through its columns ``table["star"]``,
    ``["factor"]``, ``["cdpp"]``, ``["valid"]`` and ``len(table)`` (a pandas DataFrame, or
    the table of :func:`archi.optimize.read_cdpp_tables`); several rows of one star and
    factor are all drawn. Valid runs are joined by a line; invalid runs (their CDPP is a
    penalty) are not placed at their value but marked by crosses along the top edge.
    ``chosen`` maps star -> chosen factor, marked by a large star symbol (a dotted vertical
    line when that factor has no valid run in the table). Returns the path.

    Raises ``ValueError`` when ``table`` lacks a column or has no rows.
    """
    star, factor, cdpp, valid = _cdpp_columns(table)
    chosen = dict(chosen or {})
    import matplotlib

    fig = new_figure(CDPP_FIGSIZE)
    ax = fig.add_subplot()
    stars = sorted(np.unique(star).tolist())
    cmap = matplotlib.colormaps["tab20" if len(stars) <= 20 else "viridis"]
    for i, s in enumerate(stars):
        colour = cmap(i % 20) if len(stars) <= 20 else cmap(i / max(len(stars) - 1, 1))
        rows = np.flatnonzero(star == s)
        rows = rows[np.argsort(factor[rows], kind="stable")]
        _plot_star(ax, s, factor, cdpp, rows[valid[rows]], rows[~valid[rows]], colour,
                   chosen.get(s))
    if valid.any():
        ax.set_yscale("log")
    else:
        ax.text(0.5, 0.5, "no valid run", transform=ax.transAxes, ha="center", va="center")
    if (~valid).any():
        ax.text(0.99, 1.01, "x: invalid run", transform=ax.transAxes, ha="right", va="bottom",
                fontsize=8)
    ax.set_xlabel("mask factor (radius [pixel] or layers)")
    ax.set_ylabel("CDPP [ppm]")
    ax.legend(fontsize=7, ncol=2 if len(stars) > 8 else 1, loc="best")
    fig.tight_layout()
    return save_png(fig, path)


def _plot_star(ax: Any, star: int, factor: NDArray[np.float64], cdpp: NDArray[np.float64],
               valid_rows: NDArray[np.intp], invalid_rows: NDArray[np.intp], colour: Any,
               chosen: float | None) -> None:
    """One star's line of valid runs, its invalid runs along the top, its chosen factor."""
    from matplotlib.transforms import blended_transform_factory

    label = f"star {star}"
    if chosen is not None:
        label += f" (chosen {float(chosen):g})"
    ax.plot(factor[valid_rows], cdpp[valid_rows], "-o", ms=3, lw=1, color=colour, label=label)
    if len(invalid_rows):
        top = blended_transform_factory(ax.transData, ax.transAxes)
        ax.plot(factor[invalid_rows], np.full(len(invalid_rows), 0.97), "x", ms=5,
                color=colour, transform=top, clip_on=False)
    if chosen is None:
        return
    f = float(chosen)
    hit = valid_rows[np.isclose(factor[valid_rows], f, rtol=0.0, atol=1e-6)]
    if len(hit):
        ax.plot([f], [float(cdpp[hit].min())], "*", ms=14, color=colour,
                markeredgecolor="black", zorder=5)
    else:
        ax.axvline(f, color=colour, ls=":", lw=1.2)
