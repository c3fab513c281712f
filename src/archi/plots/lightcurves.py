"""Home of the per-star light-curve figures (``plots/star_<n>.png``)."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
from numpy.typing import NDArray

from archi.io.lightcurve_headers import TIME_OFFSET
from archi.plots.figure import DPI, new_figure, normalised, number_text, save_png
from archi.stars import (FLAG_BAD_FRAME, FLAG_FLUX_OUTLIER, FLAG_OUT_OF_BOUNDS, FLAG_REJECT,
                         StarLightCurves, StarList)

__all__ = ["LIGHTCURVE_FIGSIZE", "plot_star_lightcurves", "star_identity"]

_NOT_SCORED = FLAG_OUT_OF_BOUNDS | FLAG_BAD_FRAME | FLAG_FLUX_OUTLIER  # left out of lc.cdpp

LIGHTCURVE_FIGSIZE = (11.0, 4.2)
"""Size of a per-star light-curve figure [inch] (1100 x 420 pixels at :data:`DPI`)."""


def star_identity(stars: StarList, k: int) -> str:
    """Star ``k`` as the DRP star catalogue names it: ``Gaia <id>, G = <mag>`` (the
    catalogue's ID and Gaia G [mag]; a non-numeric ID, e.g. the target's name, as it is), or
    ``not in catalogue`` for a star found only in the images."""
    if int(stars.catalogue_row[k]) < 0:
        return "not in catalogue"
    source = str(stars.source_id[k]).strip()
    name = f"Gaia {source}" if source.isdigit() else (source or "no catalogue ID")
    mag = float(stars.mag[k])
    return f"{name}, G = {mag:.2f}" if math.isfinite(mag) else f"{name}, G n/a"


def _mask_text(lc: StarLightCurves, k: int) -> str:
    if lc.methods[k] == "psf":
        return "PSF photometry"
    unit = "px" if lc.methods[k] == "circle" else "layers"
    return f"{lc.methods[k]} factor {float(lc.factors[k]):g} {unit}"


def _title(lc: StarLightCurves, k: int, n_scored: int) -> str:
    conta = float(lc.contamination[k])
    conta_text = f", contamination {100 * conta:.2g} %" if math.isfinite(conta) else ""
    return (f"{lc.visit_key}  star {k}: {star_identity(lc.stars, k)}\n"
            f"{_mask_text(lc, k)}, search CDPP {number_text(lc.cdpp[k])} ppm "
            f"({n_scored} frames){conta_text}")


class _StarFigure:
    """One figure redrawn for every star: flux against time (left, hours since the first
    frame on top) and against the roll angle (right); good frames as blue dots, flagged ones
    as red crosses. Axes and lines are made once and given each star's data, with a fixed
    layout (matplotlib's tight_layout and new axes per star cost most of the drawing)."""

    def __init__(self, time: NDArray, roll: NDArray):
        self.time, self.roll = time, roll
        start = float(time[np.isfinite(time)][0]) if np.isfinite(time).any() else 0.0
        self.fig = fig = new_figure(LIGHTCURVE_FIGSIZE, DPI)
        fig.subplots_adjust(left=0.085, right=0.985, bottom=0.12, top=0.76, wspace=0.04)
        self.ax_time, self.ax_roll = fig.subplots(1, 2, sharey=True, width_ratios=(2.3, 1.0))
        self.lines = {(ax, kind): ax.plot([], [], marker, ms=ms, color=colour, alpha=alpha)[0]
                      for ax in (self.ax_time, self.ax_roll)
                      for kind, marker, ms, colour, alpha in (("good", ".", 3, "C0", 1.0),
                                                              ("flagged", "x", 4, "C3", 0.8))}
        top = self.ax_time.secondary_xaxis("top", functions=(
            lambda t: (t - start) * 24.0, lambda h: start + h / 24.0))
        top.set_xlabel("hours since first frame", fontsize=8)
        top.tick_params(labelsize=8)
        self.ax_time.ticklabel_format(useOffset=False)  # whole days and fluxes on the ticks
        self.ax_time.set_xlabel(f"BJD_TDB - {TIME_OFFSET} [d]")
        self.ax_time.set_ylabel("flux / median")
        self.ax_roll.set_xlabel("roll angle [deg]")
        self.ax_roll.set_xlim(0.0, 360.0)
        self.ax_roll.set_xticks(np.arange(0.0, 361.0, 90.0))
        self.title = fig.suptitle("", fontsize=10)

    def draw(self, norm: NDArray, good: NDArray[np.bool_], title: str) -> None:
        """Give the lines the star's normalised flux, its good and flagged frames."""
        for (ax, kind), line in self.lines.items():
            use = good if kind == "good" else ~good
            line.set_data((self.time if ax is self.ax_time else self.roll)[use], norm[use])
            line.set_label(f"{kind} ({int(use.sum())})" if use.any() else "_")
        for ax in (self.ax_time, self.ax_roll):
            ax.relim()
            ax.autoscale_view()
        self.ax_roll.set_xlim(0.0, 360.0)
        self.ax_time.legend(fontsize=8, loc="best")
        self.title.set_text(title)


def plot_star_lightcurves(lc: StarLightCurves, folder: str | Path) -> list[Path]:
    """One PNG per star, ``<folder>/star_<n>.png``: normalised flux against time (left) and
    against the roll angle (right, the systematic CHEOPS light curves show first).

    The flux is divided by the median of the star's good frames (no FLAG bit of
    :data:`archi.stars.FLAG_REJECT` and a measured position); time is BJD_TDB - 2457000 [d]
    (lightcurves.fits' TIME), with hours since the first frame on the top axis; the roll
    angle [deg] is the visit's. Flagged frames are red crosses. The title names the star
    (:func:`star_identity`: Gaia id and G magnitude from the DRP star catalogue, or ``not in
    catalogue``), its mask method and factor, the CDPP [ppm] the factor search scored it with
    (``lc.cdpp``: every in-bounds frame but the bad ones, DRP-flagged frames included;
    ``n/a`` when it could not be scored) and, with a field model, its contamination
    (neighbours' light / own light, :attr:`StarLightCurves.contamination`).
    Size :data:`LIGHTCURVE_FIGSIZE` at :data:`~archi.plots.figure.DPI`. Returns the paths in
    star order.
    """
    folder = Path(folder)
    figure = _StarFigure(np.asarray(lc.bjd_time, dtype=float) - TIME_OFFSET,
                         np.asarray(lc.roll_angle, dtype=float))
    paths = []
    for k in range(lc.n_stars):
        flag = np.asarray(lc.flag[k])
        good = ((flag & FLAG_REJECT) == 0) & np.asarray(lc.tracks.measured[k], dtype=bool)
        scored = np.isfinite(lc.flux[k]) & ((flag & _NOT_SCORED) == 0)
        figure.draw(normalised(lc.flux[k], good), good, _title(lc, k, int(scored.sum())))
        paths.append(save_png(figure.fig, folder / f"star_{k}.png"))
    return paths
