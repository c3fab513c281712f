"""Home of the field model's fluxes for stars that vary: a transit or a pulsation of one
star changes the light it puts into its neighbours' apertures, so the model follows it.

With one flux per star (a median over the visit) a neighbour's 1 % transit would be
printed, inverted, into every aperture that holds some of its light: on the crowded test
scene the target's 19 px circle holds 7 % of its own light from the transiting star 22 px
away, a false 0.07 % dip. So every star's flux is fitted in every frame
(:func:`archi.psfphot.psf_photometry`); a star whose fitted flux, smoothed over
:data:`WINDOW` frames, scatters more than :data:`NSIGMA` times what its noise allows varies,
and the model takes that smoothed flux frame by frame. The others keep their median: a
per-frame flux would only add its noise to the neighbours' CONTA.
"""

from __future__ import annotations

import dataclasses
import warnings

import numpy as np
from numpy.typing import NDArray

from archi.fieldimage import FieldModel

WINDOW = 7
"""Frames of the running median that smooths a varying star's fitted flux (a 30-minute
transit spans ~40 frames of a G = 9 visit; its ingress ~5)."""

NSIGMA = 5.0
"""A star varies when its smoothed relative flux scatters by more than this many times the
scatter its fit errors give the smoothed series."""

MIN_AMPLITUDE = 2e-4
"""...and by more than this fraction of its flux (roll-dependent wobbles of a bright
star's fit are ~1e-4)."""


def running_median(values: NDArray, window: int = WINDOW) -> NDArray[np.float64]:
    """Running median over ``window`` frames along the last axis (shorter at the ends, NaN
    ignored)."""
    values = np.asarray(values, dtype=float)
    half = window // 2
    padded = np.pad(values, [(0, 0)] * (values.ndim - 1) + [(half, half)],
                    constant_values=np.nan)
    windows = np.lib.stride_tricks.sliding_window_view(padded, window, axis=-1)
    with warnings.catch_warnings():  # a window of NaN only: NaN
        warnings.simplefilter("ignore", RuntimeWarning)
        return np.nanmedian(windows, axis=-1)


def varying_stars(flux: NDArray, flux_err: NDArray, window: int = WINDOW,
                  nsigma: float = NSIGMA, min_amplitude: float = MIN_AMPLITUDE
                  ) -> tuple[NDArray[np.bool_], NDArray[np.float64]]:
    """Which stars vary, and every star's smoothed flux relative to its median
    (n_stars, n_frames), from per-frame fitted fluxes and their errors [e]."""
    with warnings.catch_warnings():  # stars never fitted: NaN, not varying
        warnings.simplefilter("ignore", RuntimeWarning)
        level = np.nanmedian(flux, axis=1)
        relative = flux / level[:, None]
        smooth = running_median(relative, window)
        # a running median of white noise scatters ~1.25 / sqrt(window) times the noise
        expected = 1.25 * np.nanmedian(flux_err / np.abs(level[:, None]), axis=1) / np.sqrt(window)
        scatter = np.nanstd(smooth, axis=1)
    varies = (scatter > nsigma * expected) & (scatter > min_amplitude) & np.isfinite(scatter)
    return varies, smooth


def follow_varying_stars(model: FieldModel, flux: NDArray, flux_err: NDArray
                         ) -> tuple[FieldModel, NDArray[np.bool_]]:
    """``model`` with per-frame fluxes for the stars whose fitted fluxes ``flux`` (rows:
    the model's stars) vary (their median flux times the smoothed relative flux; frames
    without a fit keep the median), and which stars those are."""
    varies, smooth = varying_stars(flux, flux_err)
    if not varies.any():
        return model, varies
    base = np.asarray(model.flux, dtype=float)
    per_frame = (np.repeat(base[:, None], model.n_frames, axis=1) if base.ndim == 1
                 else base.copy())
    factor = np.where(np.isfinite(smooth[varies]), smooth[varies], 1.0)
    per_frame[varies] = np.median(per_frame[varies], axis=1)[:, None] * factor
    return dataclasses.replace(model, flux=per_frame, images=None), varies
