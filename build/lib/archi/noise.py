"""Home of the K2-ported CDPP, the default noise metric of a light curve [ppm]
(archi spec section 7), with its high-pass filter and smoothing. Which metric scores a
run (``CDPP_type``: K2 or a user function) and how it is called: :mod:`archi.metrics`.

Runs that cannot be scored (mask out of bounds, light curve too short, degenerate flux)
get :data:`INVALID_CDPP`, archi's penalty value, so that an optimiser never picks them.
"""

from __future__ import annotations


import numpy as np
from numpy.typing import ArrayLike, NDArray


__all__ = ["INVALID_CDPP", "finite_sorted", "hanning_smooth", "k2_cdpp", "savgol_highpass"]

INVALID_CDPP: float = 2e7
"""Penalty given to a run that cannot be scored [ppm]: archi's magic value (20 000 000 ppm).

It is far above any real CDPP, so an optimiser minimising :func:`k2_cdpp` never picks such a
run. A user metric has an arbitrary scale, so an optimiser should also use the validity of a
run, not only compare this number.
"""

MAD_TO_SIGMA = 1.4826
"""Ratio of the standard deviation to the median absolute deviation of a Gaussian."""

# --------------------------------------------------------------------------------------------
# K2 CDPP
# --------------------------------------------------------------------------------------------


def k2_cdpp(flux: ArrayLike, time: ArrayLike, *, savgol_window: int = 41,
            hanning_window: int = 10, chunk: int = 30, clip_mad: float | None = 5.0) -> float:
    """Combined differential photometric precision of a light curve [ppm] (K2 port, spec 7.2).

    Steps, on the finite samples sorted by time: high-pass to relative flux around 1
    (:func:`_relative_flux`), remove outliers (:func:`_clip_outliers`), then the typical
    standard error of a ``chunk``-cadence mean (:func:`_block_cdpp`). For white noise of
    relative sigma ``s`` and the default windows this is ``0.96 * s * 1e6 / sqrt(chunk)`` on
    average (the high-pass removes ~5 % of the variance; the median of block standard
    deviations is slightly low).

    Samples with a non-finite flux or time are dropped first. The function never raises on
    data: it returns :data:`INVALID_CDPP` when the series is too short for the windows
    (fewer than ``max(savgol_window, hanning_window)`` finite samples, e.g. all NaN), when
    the median flux is not positive (empty or background-dominated aperture), or when a
    window holds fewer than three distinct times. Differences from archi (spec section 13):

    * B13: empty or array input is handled (archi's ``flux == []`` raised on arrays).
    * F10: degenerate input returns :data:`INVALID_CDPP` instead of NaN; the trend is a
      vectorised, unweighted time fit (no 1/sqrt(flux) weights, so zero or negative fluxes
      work; no integer truncation; no first-cadence padding: edge windows stay inside the
      data, as ``savgol_filter(mode="interp")``).
    * If the MAD is zero (more than half the residuals equal), nothing is clipped, instead
      of clipping every sample that differs from the median.

    Parameters
    ----------
    flux : array_like, shape (n,)
        Light curve [e-] (any unit: the result is relative).
    time : array_like, shape (n,)
        Times of the samples [d]; may contain gaps.
    savgol_window : int
        Length of the Savitzky-Golay window [samples]; odd, >= 5.
    hanning_window : int
        Length of the Hanning window used to find outliers [samples]; >= 3.
    chunk : int
        Block length [samples]; >= 2.
    clip_mad : float or None
        Clipping threshold [MAD-sigmas]; ``None`` disables clipping.

    Returns
    -------
    float
        CDPP [ppm], or :data:`INVALID_CDPP`.

    Raises
    ------
    ValueError
        ``flux`` and ``time`` are not 1-D arrays of one length, or a parameter is out of range.
    """
    _check_k2_parameters(savgol_window, hanning_window, chunk, clip_mad)
    flux, time = finite_sorted(flux, time)
    if flux.size < max(savgol_window, hanning_window):
        return INVALID_CDPP
    relative = _relative_flux(flux, time, savgol_window)
    if relative is None:
        return INVALID_CDPP
    if clip_mad is not None:
        relative = _clip_outliers(relative, hanning_window, clip_mad)
    return _block_cdpp(relative, chunk)


def _check_k2_parameters(savgol_window: int, hanning_window: int, chunk: int,
                         clip_mad: float | None) -> None:
    """Raise ValueError when a window or threshold of :func:`k2_cdpp` is out of range."""
    if savgol_window < 5 or savgol_window % 2 == 0:
        raise ValueError(f"savgol_window must be odd and >= 5, got {savgol_window}")
    if hanning_window < 3:
        raise ValueError(f"hanning_window must be >= 3, got {hanning_window}")
    if chunk < 2:
        raise ValueError(f"chunk must be >= 2, got {chunk}")
    if clip_mad is not None and not clip_mad > 0:
        raise ValueError(f"clip_mad must be > 0 or None, got {clip_mad}")


def _relative_flux(flux: NDArray[np.float64], time: NDArray[np.float64],
                   savgol_window: int) -> NDArray[np.float64] | None:
    """CDPP step 1: the high-passed flux over its median [1]; None when a window holds fewer
    than three distinct times or the median is not positive."""
    try:
        detrended = savgol_highpass(flux, time, savgol_window)
    except np.linalg.LinAlgError:  # fewer than 3 distinct times in a window
        return None
    level = np.median(detrended)
    if not (np.isfinite(level) and level > 0):
        return None
    return detrended / level


def _clip_outliers(relative: NDArray[np.float64], hanning_window: int,
                   clip_mad: float) -> NDArray[np.float64]:
    """CDPP step 2: the samples whose residual from a Hanning-smoothed copy is within
    ``clip_mad`` x 1.4826 x MAD of the residuals' median (all of them when the MAD is 0)."""
    residual = relative - hanning_smooth(relative, hanning_window)
    centre = np.median(residual)
    mad = MAD_TO_SIGMA * np.median(np.abs(residual - centre))
    if mad > 0:
        relative = relative[np.abs(residual - centre) <= clip_mad * mad]
    return relative


def _block_cdpp(relative: NDArray[np.float64], chunk: int) -> float:
    """CDPP step 3: ``1e6 * median(std(block)) / sqrt(chunk)`` over blocks of ``chunk``
    samples [ppm] (the last block takes the leftover; under ``2 * chunk`` make one block)."""
    n_blocks = max(relative.size // chunk, 1)
    bounds = np.arange(n_blocks + 1) * chunk
    bounds[-1] = relative.size
    block_std = np.array([relative[a:b].std() for a, b in zip(bounds[:-1], bounds[1:])])
    return float(1e6 * np.median(block_std) / np.sqrt(chunk))


def savgol_highpass(flux: NDArray[np.float64], time: NDArray[np.float64],
                    window: int = 41) -> NDArray[np.float64]:
    """Flux minus its local quadratic trend, plus its median (archi's ``SavGol2``, spec 7.3).

    The trend at sample i is a least-squares quadratic *in time* through the ``window``
    samples centred on i (clamped to stay inside the series at its ends), evaluated at
    ``time[i]``. Fitting in time makes the filter correct across the gaps of CHEOPS light
    curves. With evenly spaced samples this equals
    ``scipy.signal.savgol_filter(flux, window, 2, mode="interp")`` (tested).

    Parameters
    ----------
    flux : ndarray, shape (n,)
        Finite fluxes [e-], n >= ``window``.
    time : ndarray, shape (n,)
        Finite, increasing times [d].
    window : int
        Odd window length [samples].

    Returns
    -------
    ndarray, shape (n,)
        ``flux - trend + median(flux)`` [e-].

    Raises
    ------
    numpy.linalg.LinAlgError
        A window holds fewer than three distinct times.
    """
    # one vectorised fit for both cases: scipy.signal alone costs a job 0.5 s of imports
    return flux - _quadratic_trend(flux, time, window) + np.median(flux)


def _quadratic_trend(flux: NDArray[np.float64], time: NDArray[np.float64],
                     window: int) -> NDArray[np.float64]:
    """Local quadratic least-squares fit in time, vectorised over all samples [e-]."""
    index, weights = _trend_weights(time, window)
    return np.einsum("ij,ij->i", flux[index], weights)


_TREND_WEIGHTS: dict[tuple[bytes, int], tuple[NDArray, NDArray]] = {}
_TREND_CACHE_SIZE = 8


def _trend_weights(time: NDArray[np.float64], window: int) -> tuple[NDArray, NDArray]:
    """Sample indices and weights (n, window) with trend = sum(flux[index] * weights, 1).

    The fit is linear in the flux, so its weights depend on the times alone; they are
    kept for the last few time series, since a factor search scores hundreds of light
    curves on the same times (computing them is most of a CDPP's cost)."""
    key = (time.tobytes(), window)
    if key in _TREND_WEIGHTS:
        return _TREND_WEIGHTS[key]
    n = time.size
    start = np.clip(np.arange(n) - window // 2, 0, n - window)
    new_time = np.concatenate([[0], np.cumsum(np.diff(time) > 0)])     # distinct times so far
    if np.any(new_time[start + window - 1] - new_time[start] < 2):
        raise np.linalg.LinAlgError("a window holds fewer than three distinct times")
    index = start[:, None] + np.arange(window)                       # (n, window)
    t_window = time[index]
    half_span = 0.5 * (t_window[:, -1] - t_window[:, 0])
    u = (t_window - time[:, None]) / half_span[:, None]              # in [-2, 2]
    powers = np.stack([np.ones_like(u), u, u * u], axis=2)           # (n, window, 3)
    normal = np.einsum("iwj,iwk->ijk", powers, powers)
    # the fit's value at u = 0 is the first parameter: e0 . N^-1 P^T y = (P N^-1 e0) . y
    first = np.linalg.solve(normal, np.broadcast_to(np.eye(3)[:, :1], (n, 3, 1)))
    weights = (powers @ first)[:, :, 0]
    if len(_TREND_WEIGHTS) >= _TREND_CACHE_SIZE:
        del _TREND_WEIGHTS[next(iter(_TREND_WEIGHTS))]  # the oldest
    _TREND_WEIGHTS[key] = index, weights
    return index, weights


def hanning_smooth(values: NDArray[np.float64], window: int) -> NDArray[np.float64]:
    """Normalised Hanning-window moving average with point-reflected ends (K2 ``Smooth``).

    The series is extended by ``2 * values[0] - values[window-1::-1]`` before and
    ``2 * values[-1] - values[-1:-window:-1]`` after, convolved with ``hanning(window)``
    (normalised to unit sum) and cut back to the input length, as in K2/EVEREST.
    ``window`` >= 3 and ``values.size >= window``.
    """
    head = 2 * values[0] - values[window - 1::-1]
    tail = 2 * values[-1] - values[-1:-window:-1]
    weights = np.hanning(window)
    smooth = np.convolve(np.concatenate([head, values, tail]), weights / weights.sum(), "same")
    return smooth[window:window + values.size]


def finite_sorted(flux: ArrayLike, time: ArrayLike,
                   ) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """Float copies of the samples where flux and time are both finite, sorted by time."""
    flux = np.asarray(flux, dtype=float)
    time = np.asarray(time, dtype=float)
    if flux.ndim != 1 or flux.shape != time.shape:
        raise ValueError(f"flux and time must be 1-D arrays of one length, got shapes "
                         f"{flux.shape} and {time.shape}")
    keep = np.isfinite(flux) & np.isfinite(time)
    flux, time = flux[keep], time[keep]
    if np.any(np.diff(time) < 0):
        order = np.argsort(time, kind="stable")
        flux, time = flux[order], time[order]
    return flux, time
