"""Home of the figures that show the DRP's own light curves: the DRP light curves of a visit
(``inspect_visit``) and the target against the DRP (``target_vs_drp.png``)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from archi.metrics import NoiseMetric, score
from archi.noise import INVALID_CDPP
from archi.plots.figure import hours_since_start, new_figure, normalised, save_png
from archi.stars import FLAG_REJECT, StarLightCurves
from archi.visit import Visit

__all__ = ["COMPARE_FIGSIZE", "DRP_FIGSIZE", "plot_drp_lightcurves", "plot_target_vs_drp"]

COMPARE_FIGSIZE = (8.0, 6.0)
"""Size of the target-versus-DRP figure [inch]."""
DRP_FIGSIZE = (8.0, 5.5)
"""Size of the DRP light-curve figure [inch]."""


def plot_drp_lightcurves(visit: Visit, path: str | Path) -> None:
    """The DRP light curves of the target (normalised) and the roll angle, against time."""
    fig = new_figure(DRP_FIGSIZE)
    ax_flux, ax_roll = fig.subplots(2, 1, sharex=True)
    hours = hours_since_start(visit.mjd_time)
    good = visit.status == 0
    for name, lc in sorted(visit.lightcurves.items()):
        norm = normalised(lc.flux, good)
        ax_flux.plot(hours[good], norm[good], ".", ms=3, label=f"{name} (R={lc.radius:g} px)")
    ax_flux.set_ylabel("DRP flux / median")
    ax_flux.legend(fontsize=8)
    ax_flux.set_title(f"{visit.visit_id.file_key}  {visit.target_name}")
    ax_roll.plot(hours, visit.roll_angle, ".", ms=3)
    ax_roll.set_ylabel("roll angle [deg]")
    ax_roll.set_xlabel("hours since first frame")
    fig.tight_layout()
    save_png(fig, path, dpi=110)


def _cdpp_label(metric: NoiseMetric, flux: np.ndarray, time: np.ndarray,
                good: np.ndarray) -> str:
    """``; CDPP <value> ppm on its <n> good frames`` (``n/a`` when the metric is
    undefined): not the search's CDPP of the star's plot, which keeps DRP-flagged frames."""
    value = score(metric, np.asarray(flux)[good], np.asarray(time)[good], True)
    text = "n/a" if value == INVALID_CDPP else f"{value:.1f}"
    return f"; CDPP {text} ppm on its {int(np.count_nonzero(good))} good frames"


def plot_target_vs_drp(lc: StarLightCurves, visit: Visit, path: str | Path,
                       official_curve: str = "DEFAULT",
                       metric: NoiseMetric | None = None) -> Path:
    """Target (star 0) against the DRP light curve ``official_curve``, both normalised.

    Top panel: both light curves divided by the median of their good frames (archi: no
    :data:`archi.stars.FLAG_REJECT` bit; DRP: STATUS 0) against hours since the first frame. Bottom panel: archi minus DRP on
    frames good in both [ppt]. With ``metric`` (``f(flux [e-], time [d]) -> float``, e.g.
    :func:`archi.noise.k2_cdpp`) each legend entry gives the metric of the good frames
    (computed once each, through :func:`archi.metrics.score`). Returns the path.

    Raises ``ValueError`` when the visit has no such light curve or a different number of
    frames.
    """
    if official_curve not in visit.lightcurves:
        raise ValueError(f"the visit has no DRP light curve {official_curve!r} (it has "
                         f"{', '.join(sorted(visit.lightcurves)) or 'none'})")
    drp = visit.lightcurves[official_curve]
    if len(drp.flux) != lc.n_frames:
        raise ValueError(f"DRP light curve {official_curve} has {len(drp.flux)} frames, the "
                         f"light curves {lc.n_frames}")
    hours = hours_since_start(lc.mjd_time)
    good_a = (((np.asarray(lc.flag[0]) & FLAG_REJECT) == 0) & np.isfinite(lc.flux[0])
              & np.asarray(lc.tracks.measured[0], dtype=bool))
    good_d = (np.asarray(drp.status) == 0) & np.isfinite(drp.flux)
    norm_a = normalised(lc.flux[0], good_a)
    norm_d = normalised(drp.flux, good_d)
    label_a = f"archi ({lc.methods[0]} {float(lc.factors[0]):g})"
    label_d = f"DRP {official_curve} (R={drp.radius:g} px)"
    if metric is not None:
        label_a += _cdpp_label(metric, lc.flux[0], lc.mjd_time, good_a)
        label_d += _cdpp_label(metric, drp.flux, lc.mjd_time, good_d)

    fig = new_figure(COMPARE_FIGSIZE)
    ax, ax_diff = fig.subplots(2, 1, sharex=True, height_ratios=(2, 1))
    ax.plot(hours[good_d], norm_d[good_d], ".", ms=3, color="0.45", label=label_d)
    ax.plot(hours[good_a], norm_a[good_a], ".", ms=3, color="C0", label=label_a)
    ax.set_ylabel("flux / median")
    ax.set_title(f"{lc.visit_key}  target: archi vs DRP {official_curve}", fontsize=10)
    ax.legend(fontsize=8)
    both = good_a & good_d
    ax_diff.plot(hours[both], (norm_a[both] - norm_d[both]) * 1e3, ".", ms=3, color="C2")
    ax_diff.axhline(0.0, color="0.3", lw=0.8)
    ax_diff.set_ylabel("archi - DRP [ppt]")
    ax_diff.set_xlabel("hours since first frame")
    fig.tight_layout()
    return save_png(fig, path)
