"""Home of the figures and the tracking GIF: one module per figure family.

* :mod:`archi.plots.figure`: the shared Agg figure, atomic PNG saving, normalised flux;
* :mod:`archi.plots.lightcurves`: one light-curve figure per star;
* :mod:`archi.plots.drp`: the DRP light curves, and the target against the DRP;
* :mod:`archi.plots.cdpp`: CDPP against the mask factor;
* :mod:`archi.plots.field`: the field with every star, G magnitudes, North and East;
* :mod:`archi.plots.gif`: the tracking GIF;
* :mod:`archi.plots.model`: a frame, its field model and the residual;
* :mod:`archi.plots.outlines`: the star outlines drawn on images.

Matplotlib is imported only when a figure is drawn. Every file is written to a temporary
name beside its destination and renamed when complete (:func:`archi.io.atomic.atomic_path`).
"""

from archi.plots.cdpp import CDPP_FIGSIZE, plot_cdpp_vs_factor
from archi.plots.drp import (
    COMPARE_FIGSIZE,
    DRP_FIGSIZE,
    plot_drp_lightcurves,
    plot_target_vs_drp,
)
from archi.plots.field import FIELD_FIGSIZE, plot_field, sky_directions
from archi.plots.figure import DPI
from archi.plots.gif import (
    GIF_FRAME_DURATION_MS,
    GIF_MAX_FRAMES,
    GIF_SCALE,
    gif_frame_indices,
    save_gif,
)
from archi.plots.lightcurves import LIGHTCURVE_FIGSIZE, plot_star_lightcurves
from archi.plots.model import MODEL_FIGSIZE, plot_field_model
from archi.plots.outlines import Apertures

__all__ = [
    "DPI",
    "LIGHTCURVE_FIGSIZE",
    "COMPARE_FIGSIZE",
    "CDPP_FIGSIZE",
    "DRP_FIGSIZE",
    "FIELD_FIGSIZE",
    "GIF_SCALE",
    "GIF_MAX_FRAMES",
    "GIF_FRAME_DURATION_MS",
    "Apertures",
    "plot_drp_lightcurves",
    "plot_star_lightcurves",
    "plot_target_vs_drp",
    "plot_cdpp_vs_factor",
    "plot_field",
    "sky_directions",
    "plot_field_model",
    "MODEL_FIGSIZE",
    "save_gif",
    "gif_frame_indices",
]
