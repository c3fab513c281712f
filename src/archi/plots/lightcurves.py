"""Home of the per-star light-curve figures (``plots/star_<n>.png``)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from archi.plots.figure import (
    DPI,
    hours_since_start,
    new_figure,
    normalised,
    number_text,
    save_png,
)
from archi.stars import (FLAG_BAD_FRAME, FLAG_FLUX_OUTLIER, FLAG_OUT_OF_BOUNDS, FLAG_REJECT,
                         StarLightCurves)

__all__ = ["LIGHTCURVE_FIGSIZE", "plot_star_lightcurves"]

_NOT_SCORED = FLAG_OUT_OF_BOUNDS | FLAG_BAD_FRAME | FLAG_FLUX_OUTLIER  # left out of lc.cdpp

LIGHTCURVE_FIGSIZE = (8.0, 4.0)
"""Size of a per-star light-curve figure [inch] (800 x 400 pixels at :data:`DPI`)."""


def plot_star_lightcurves(lc: StarLightCurves, folder: str | Path) -> list[Path]:
    """One PNG per star, ``<folder>/star_<n>.png``: normalised flux against time.

    The flux is divided by the median of the star's good frames (no FLAG bit of
    :data:`archi.stars.FLAG_REJECT` and a measured position) and drawn against hours since
    the first frame; flagged frames are drawn as red crosses. The title gives the star
    number, mask method and factor, and the CDPP [ppm] the factor search scored it with
    (``lc.cdpp``: every in-bounds frame but the bad ones, DRP-flagged frames included;
    ``n/a`` when it could not be scored).
    Size :data:`LIGHTCURVE_FIGSIZE` at :data:`~archi.plots.figure.DPI`. Returns the paths in
    star order.
    """
    folder = Path(folder)
    hours = hours_since_start(lc.mjd_time)
    paths = []
    fig = new_figure(LIGHTCURVE_FIGSIZE, DPI)
    for k in range(lc.n_stars):
        fig.clf()
        ax = fig.add_subplot()
        flag = np.asarray(lc.flag[k])
        good = ((flag & FLAG_REJECT) == 0) & np.asarray(lc.tracks.measured[k], dtype=bool)
        scored = np.isfinite(lc.flux[k]) & ((flag & _NOT_SCORED) == 0)
        norm = normalised(lc.flux[k], good)
        ax.plot(hours[good], norm[good], ".", ms=3, color="C0",
                label=f"good ({int(good.sum())})")
        if (~good).any():
            ax.plot(hours[~good], norm[~good], "x", ms=4, color="C3", alpha=0.8,
                    label=f"flagged ({int((~good).sum())})")
        unit = "px" if lc.methods[k] == "circle" else "layers"
        mask = (f"{lc.methods[k]} factor {float(lc.factors[k]):g} {unit}"
                if lc.methods[k] != "psf" else "PSF photometry")
        ax.set_title(f"{lc.visit_key}  star {k}: {mask}, search CDPP "
                     f"{number_text(lc.cdpp[k])} ppm ({int(scored.sum())} frames)", fontsize=10)
        ax.set_xlabel("hours since first frame")
        ax.set_ylabel("flux / median")
        ax.legend(fontsize=8, loc="best")
        fig.tight_layout()
        paths.append(save_png(fig, folder / f"star_{k}.png"))
    return paths
