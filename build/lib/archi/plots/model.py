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
    """Frame ``frame`` of the visit, its field model and the residual, the frame and the
    model on one asinh stretch, the residual in units of its expected noise (+-5). Without a model (``decontaminate: false``) the middle and
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
        shown = axes[2].imshow(_normalised_residual(image, modelled), origin="lower",
                               cmap="RdBu_r", vmin=-5, vmax=5, interpolation="nearest")
        fig.colorbar(shown, ax=axes[2], fraction=0.046, pad=0.02, label="sigma")
        axes[2].set_title("(frame - model - sky) / noise", fontsize=10)
    for ax in axes:
        ax.set_xlabel("x [pixel]")
    axes[0].set_ylabel("y [pixel]")
    fig.tight_layout()
    return save_png(fig, path)


def _normalised_residual(image: np.ndarray, modelled: np.ndarray) -> np.ndarray:
    """The frame minus the model and the level the DRP's background left, over the expected
    noise (photon noise of the model's light and the sky's scatter): noise shows as +-1,
    what the model misses stands out whatever the star's brightness."""
    from archi.fieldimage import sky_residual

    residual = image - modelled
    residual = residual - sky_residual(residual[None])[0]
    faint = np.isfinite(residual) & (modelled < np.nanpercentile(modelled, 30))
    sky_sigma = _robust_sigma(residual[faint]) if faint.any() else 1.0
    return residual / np.sqrt(np.clip(modelled, 0.0, None) + sky_sigma ** 2)


def _stretch(image: np.ndarray):
    """asinh stretch with its softening at ten times the noise of ``image``."""
    soft = 10.0 * max(_robust_sigma(image), 1e-9)
    return lambda values: np.arcsinh(np.asarray(values, float) / soft)


def _robust_sigma(values: np.ndarray) -> float:
    finite = values[np.isfinite(values)]
    if finite.size == 0:
        return 1.0
    return float(1.4826 * np.median(np.abs(finite - np.median(finite))))
