"""Home of the field-model plot: a frame, the field model of that frame, and the residual,
so a user sees at a glance whether the neighbours' light is modelled (a good model leaves
noise, and small cores where stars vary or the PSF is imperfect)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from archi.plots.figure import new_figure, save_png
from archi.visit import Visit

if TYPE_CHECKING:  # pragma: no cover
    from archi.fieldimage import FieldModel

MODEL_FIGSIZE = (13.5, 4.6)
"""Size of the field-model figure [inch]: three panels side by side."""


def plot_field_model(visit: Visit, model: FieldModel | None, path: str | Path,
                     frame: int = 0) -> Path:
    """Frame ``frame`` of the visit, its field model and the residual [electrons], the
    frame and the model on one asinh stretch, the residual on a symmetric linear one
    (+-5 sigma of its pixels). Without a model (``decontaminate: false``) the middle and
    right panels say so. Returns the path."""
    if not 0 <= frame < visit.n_frames:
        raise ValueError(f"frame {frame} out of range (0..{visit.n_frames - 1})")
    image = np.asarray(visit.cube[frame], dtype=float)
    fig = new_figure(MODEL_FIGSIZE)
    axes = fig.subplots(1, 3, sharex=True, sharey=True)
    stretch = _stretch(image)
    axes[0].imshow(stretch(image), origin="lower", cmap="magma", interpolation="nearest")
    axes[0].set_title(f"frame {frame}, roll {float(visit.roll_angle[frame]):.1f} deg",
                      fontsize=10)
    if model is None:
        for ax in axes[1:]:
            ax.text(0.5, 0.5, "no field model\n(decontaminate: false)", ha="center",
                    va="center", transform=ax.transAxes)
    else:
        modelled = model.render(slice(frame, frame + 1))[0]
        axes[1].imshow(stretch(modelled), origin="lower", cmap="magma",
                       interpolation="nearest")
        axes[1].set_title(f"field model ({model.n_stars} stars)", fontsize=10)
        residual = image - modelled
        limit = 5.0 * _robust_sigma(residual)
        shown = axes[2].imshow(residual, origin="lower", cmap="RdBu_r", vmin=-limit,
                               vmax=limit, interpolation="nearest")
        fig.colorbar(shown, ax=axes[2], fraction=0.046, pad=0.02, label="electrons")
        axes[2].set_title("frame - model", fontsize=10)
    for ax in axes:
        ax.set_xlabel("x [pixel]")
    axes[0].set_ylabel("y [pixel]")
    fig.tight_layout()
    return save_png(fig, path)


def _stretch(image: np.ndarray):
    """asinh stretch with its softening at ten times the noise of ``image``."""
    soft = 10.0 * max(_robust_sigma(image), 1e-9)
    return lambda values: np.arcsinh(np.asarray(values, float) / soft)


def _robust_sigma(values: np.ndarray) -> float:
    finite = values[np.isfinite(values)]
    if finite.size == 0:
        return 1.0
    return float(1.4826 * np.median(np.abs(finite - np.median(finite))))
