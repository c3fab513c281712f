"""Figures. Matplotlib is imported lazily with the non-interactive Agg backend."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from archi.visit import Visit


def plot_drp_lightcurves(visit: Visit, path: str | Path) -> None:
    """The DRP light curves of the target (normalised) and the roll angle, against time."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    hours = (visit.mjd_time - visit.mjd_time[0]) * 24.0
    fig, (ax_flux, ax_roll) = plt.subplots(2, 1, sharex=True, figsize=(8, 5.5))
    good = visit.status == 0
    for name, lc in sorted(visit.lightcurves.items()):
        norm = lc.flux / np.nanmedian(lc.flux[good])
        ax_flux.plot(hours[good], norm[good], ".", ms=3, label=f"{name} (R={lc.radius:g} px)")
    ax_flux.set_ylabel("DRP flux / median")
    ax_flux.legend(fontsize=8)
    ax_flux.set_title(f"{visit.visit_id.file_key}  {visit.target_name}")
    ax_roll.plot(hours, visit.roll_angle, ".", ms=3)
    ax_roll.set_ylabel("roll angle [deg]")
    ax_roll.set_xlabel("hours since first frame")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
