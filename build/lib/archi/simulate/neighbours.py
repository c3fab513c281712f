"""What each simulated star alone puts into a circular aperture: the truth that the field
model's neighbours' light (CONTA) and own light (FLUX) are tested against.

Independent of the pipeline's field model by construction: the light is rendered with the
simulator's own PSF (:class:`archi.simulate.psf.PixelPsf`) at the true positions, with the
same rotational blur as the simulated images, and summed with photutils' exact circular
apertures.
"""

from __future__ import annotations

import dataclasses
from types import SimpleNamespace

import numpy as np
from numpy.typing import NDArray

from archi.geometry import FIELD_CENTRE, FIELD_RADIUS, SUBARRAY_SIZE
from archi.simulate.psf import PixelPsf, PsfModel
from archi.simulate.render import render_stars
from archi.simulate.truth import TruthTables


def light_in_circles(truth: TruthTables, x: NDArray, y: NDArray, radius: NDArray,
                     frames: NDArray, *, orbit_minutes: float = 98.77, blur: bool = True,
                     psf: PixelPsf | None = None) -> NDArray[np.float64]:
    """Noise-free light [e] of each true star alone inside circles of ``radius`` [pixel]
    (m,) centred at (``x``, ``y``) (m, n_frames of the visit), in the visit's ``frames``:
    shape (n_true_stars, m, len(frames)). Pixels outside the circular field of view (NaN
    in the DRP's images) count as empty, as in the pipeline's sums. ``psf``: the PSF the
    visit was simulated with (:func:`archi.simulate.psf_file.simulation_psf` of its
    options; default the analytic model)."""
    from photutils.aperture import CircularAperture  # test-side truth only

    frames = np.asarray(frames, dtype=int)
    table = truth.frames
    roll = truth.field_turn[frames]
    target_x = np.asarray(table["TARGET_X"], float)[frames]
    target_y = np.asarray(table["TARGET_Y"], float)[frames]
    droll = -360.0 / orbit_minutes * truth.texptime / 60.0
    psf = psf or PixelPsf()
    yy, xx = np.indices((SUBARRAY_SIZE, SUBARRAY_SIZE))
    fov = np.hypot(xx - FIELD_CENTRE[0], yy - FIELD_CENTRE[1]) <= FIELD_RADIUS
    stars = truth.stars
    out = np.zeros((len(stars), len(radius), len(frames)))
    for i in range(len(stars)):
        alone = SimpleNamespace(dx=np.array([float(stars["DX0"][i])]),
                                dy=np.array([float(stars["DY0"][i])]), n_stars=1)
        images, _ = render_stars(psf, alone, roll, target_x, target_y,
                                 truth.flux[i:i + 1, frames], droll, blur)
        images[:, ~fov] = 0.0
        for k in range(len(frames)):
            for a, r in enumerate(radius):
                aperture = CircularAperture((x[a, frames[k]], y[a, frames[k]]), r=float(r))
                mask = aperture.to_mask(method="exact")
                out[i, a, k] = float(np.sum(mask.get_values(images[k])))
    return out


def floor_light_in_circles(truth: TruthTables, x: NDArray, y: NDArray, radius: NDArray,
                           frames: NDArray, **options) -> NDArray[np.float64]:
    """The share of :func:`light_in_circles` (analytic PSF) that is the PSF's flat floor:
    ``PsfModel().weights[-1]`` (2.5 %) of each star's light spread evenly within 100 px of
    it, the real PSF's far wings. Light that smooth is sky to any photometry: the DRP's
    background estimate and the field model's fitted level take it, not its stars. Same
    arguments and shape as :func:`light_in_circles` (``psf`` excepted) [e]."""
    model = PsfModel()
    floor_only = dataclasses.replace(model, weights=(0.0,) * (len(model.weights) - 1) + (1.0,))
    return model.weights[-1] * light_in_circles(truth, x, y, radius, frames,
                                                psf=PixelPsf(floor_only), **options)
