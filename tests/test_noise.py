"""Tests of archi.noise (the K2 CDPP) and archi.metrics (the metric loader, the scoring of runs)."""

from __future__ import annotations

import textwrap
from pathlib import Path

import numpy as np
import pytest
import yaml
from scipy.signal import savgol_filter

from archi.errors import ConfigError
from archi.metrics import load_metric, score
from archi.noise import (
    INVALID_CDPP,
    _quadratic_trend,
    k2_cdpp,
    savgol_highpass,
)

REPO = Path(__file__).resolve().parents[1]
THIS_FILE = Path(__file__).resolve().relative_to(REPO).as_posix()   # "tests/test_noise.py"

F0 = 1e5        # median flux [e-]
SIGMA = 1e-3    # relative white noise
CHUNK = 30
# Mean ratio CDPP / (SIGMA * 1e6 / sqrt(CHUNK)) for white noise with the default windows,
# measured over 200 seeds (sd 0.021 per 30-orbit curve): the 41-sample quadratic high-pass
# keeps 1 - 0.0549 of the variance (0.0549 = centre coefficient of the filter) and the median
# of 30-sample standard deviations (ddof=0) is a little below sigma. archi's spec quotes 177
# ppm for 183 ppm expected (0.967) on one curve. This factor is measured on this code (the
# clipping and smoothing make a closed form impractical), so these white-noise tests check
# the CDPP's behaviour (scaling, gaps, trends), not its absolute value: that is pinned by
# test_k2_cdpp_matches_pyarchis_value, against pyarchi's own implementation.
WHITE_NOISE_FACTOR = 0.957


def peak_to_peak(flux: np.ndarray, time: np.ndarray) -> float:
    """A user metric loaded from this file in the tests: peak-to-peak flux [e-]."""
    return float(np.ptp(flux))


def cheops_times(n_orbits: int, cadence_s: float = 60.0, orbit_min: float = 98.77,
                 gap_min: float = 40.0) -> np.ndarray:
    """Times [d] at CHEOPS cadence with a gap of ``gap_min`` at the start of every orbit."""
    t = np.arange(0.0, n_orbits * orbit_min * 60.0, cadence_s) / 86400.0
    return 60000.0 + t[(t * 1440.0) % orbit_min >= gap_min]


def white(time: np.ndarray, seed: int) -> np.ndarray:
    return F0 * (1 + SIGMA * np.random.default_rng(seed).standard_normal(time.size))


def chunked_std_ppm(flux: np.ndarray) -> float:
    """The CDPP's last step without detrending or clipping, for comparison."""
    y = flux / np.median(flux)
    n = y.size // CHUNK * CHUNK
    return float(1e6 * np.median(y[:n].reshape(-1, CHUNK).std(axis=1)) / np.sqrt(CHUNK))


TIME = cheops_times(30)            # ~49 h, 1764 samples, 30 gaps of 40 min
EXPECTED = WHITE_NOISE_FACTOR * SIGMA * 1e6 / np.sqrt(CHUNK)


# ------------------------------------------------------------------------------------------
# k2_cdpp
# ------------------------------------------------------------------------------------------


def test_white_noise_with_gaps_gives_expected_cdpp():
    values = np.array([k2_cdpp(white(TIME, seed), TIME) for seed in range(8)])
    assert np.all(np.abs(values / EXPECTED - 1) < 0.10), values
    assert abs(values.mean() / EXPECTED - 1) < 0.03, values.mean()
    # and within 10 % of the naive sigma / sqrt(chunk) the issue quotes
    assert abs(values.mean() / (SIGMA * 1e6 / np.sqrt(CHUNK)) - 1) < 0.10


def test_cdpp_scales_with_noise_and_not_with_flux_level():
    base = k2_cdpp(white(TIME, 1), TIME)
    noisier = F0 * (1 + 3 * SIGMA * np.random.default_rng(1).standard_normal(TIME.size))
    assert k2_cdpp(noisier, TIME) == pytest.approx(3 * base, rel=1e-3)
    assert k2_cdpp(7 * white(TIME, 1), TIME) == pytest.approx(base, rel=1e-9)


def test_slow_trend_is_removed():
    trend = 1e-2 * np.sin(2 * np.pi * (TIME - TIME[0]) * 24 / 5.0)   # 1 %, 5-hour period
    for seed in range(3):
        noise = white(TIME, seed)
        trended = noise + F0 * trend
        assert chunked_std_ppm(trended) > 1.5 * chunked_std_ppm(noise)  # the trend matters
        assert k2_cdpp(trended, TIME) == pytest.approx(k2_cdpp(noise, TIME), rel=0.03)


def test_quadratic_in_time_across_gaps_is_removed_exactly():
    # Gap-aware: a fit in sample index would leave residuals at every gap.
    t = TIME - TIME[0]
    flux = F0 * (1 + 0.05 * t - 0.02 * t**2)
    highpassed = savgol_highpass(flux, TIME)
    assert np.ptp(highpassed) < 1e-6 * F0
    assert k2_cdpp(flux, TIME) < 1e-3


def test_time_fit_equals_savgol_filter_without_gaps():
    t = 60000.0 + np.arange(500) / 1440.0
    flux = white(t, 4) + 50 * np.sin(np.arange(500) / 40)
    expected = savgol_filter(flux, 41, 2, mode="interp")
    np.testing.assert_allclose(_quadratic_trend(flux, t, 41), expected, rtol=0, atol=1e-6)


def test_trend_weights_are_kept_per_time_series_and_stay_correct():
    """A search scores hundreds of curves on the same times: the fit's weights are kept,
    and a curve on other times (or the same times again later) still gets its own fit."""
    from archi import noise

    noise._TREND_WEIGHTS.clear()
    t = 60000.0 + np.arange(300) / 1440.0
    gapped = np.concatenate([t[:150], t[150:] + 0.05])
    for times in (t, gapped, t):
        flux = white(times, 5) + 80 * np.sin(np.arange(300) / 30)
        # the same fit as a direct least-squares quadratic of each window, in time
        expected = np.empty(300)
        for i in range(300):
            lo = min(max(i - 20, 0), 300 - 41)
            u = times[lo:lo + 41] - times[i]
            expected[i] = np.polyval(np.polyfit(u, flux[lo:lo + 41], 2), 0.0)
        np.testing.assert_allclose(_quadratic_trend(flux, times, 41), expected, rtol=1e-9)
    assert len(noise._TREND_WEIGHTS) == 2  # t and gapped
    for k in range(20):  # bounded: only the last few series are kept
        _quadratic_trend(np.ones(50), np.arange(50.0) + k, 41)
    assert len(noise._TREND_WEIGHTS) == noise._TREND_CACHE_SIZE


def test_cosmic_ray_spikes_are_clipped():
    rng = np.random.default_rng(11)
    clean = white(TIME, 11)
    spiky = clean.copy()
    hits = rng.choice(TIME.size, TIME.size // CHUNK, replace=False)   # ~one hit per block
    spiky[hits] += 20 * SIGMA * F0
    reference = k2_cdpp(clean, TIME)
    assert k2_cdpp(spiky, TIME, clip_mad=None) > 3 * reference
    # Clipping happens after the detrend (as in archi and EVEREST), so each spike also
    # leaks ~5 % of its height into the trend of its 40 neighbours: a small excess remains
    # (measured 1.166x the clean value; 3.79x unclipped).
    assert 1.0 < k2_cdpp(spiky, TIME) / reference < 1.25


def test_nan_samples_are_dropped():
    flux = white(TIME, 5)
    holes = np.random.default_rng(5).choice(TIME.size, 100, replace=False)
    with_nan = flux.copy()
    with_nan[holes] = np.nan
    time_nan = TIME.copy()
    time_nan[holes[:10]] = np.nan
    keep = np.ones(TIME.size, bool)
    keep[holes] = False
    expected = k2_cdpp(flux[keep], TIME[keep])
    assert k2_cdpp(with_nan, TIME) == expected
    flux_time_nan = flux.copy()
    flux_time_nan[holes[10:]] = np.nan
    assert k2_cdpp(flux_time_nan, time_nan) == expected


def test_unsorted_input_is_sorted_by_time():
    flux = white(TIME, 6)
    order = np.random.default_rng(6).permutation(TIME.size)
    assert k2_cdpp(flux[order], TIME[order]) == k2_cdpp(flux, TIME)


@pytest.mark.parametrize("flux", [
    np.full(200, np.nan),            # always out of the field
    np.array([]),                    # nothing
    np.full(40, F0),                 # shorter than the 41-sample window
])
def test_unusable_series_get_the_penalty(flux):
    assert k2_cdpp(flux, TIME[:flux.size]) == INVALID_CDPP


def test_shortest_usable_series_gives_a_real_value():
    value = k2_cdpp(white(TIME, 2)[:41], TIME[:41])
    assert 0 < value < 0.1 * INVALID_CDPP


def test_non_positive_median_flux_gets_the_penalty():
    noise_only = SIGMA * F0 * np.random.default_rng(3).standard_normal(TIME.size)
    assert k2_cdpp(noise_only - 10 * SIGMA * F0, TIME) == INVALID_CDPP
    assert k2_cdpp(np.zeros(TIME.size), TIME) == INVALID_CDPP


def test_duplicate_times_get_the_penalty():
    two = np.repeat([60000.0, 60001.0], 30)           # every 41-sample window: 2 times
    assert k2_cdpp(white(two, 0), two) == INVALID_CDPP
    three = np.repeat([60000.0, 60000.01, 60001.0], 20)  # every window: 3 times, enough
    assert k2_cdpp(white(three, 0), three) < INVALID_CDPP


def test_shape_mismatch_and_bad_parameters_raise():
    with pytest.raises(ValueError, match="shapes"):
        k2_cdpp(np.ones(50), np.ones(49))
    with pytest.raises(ValueError, match="savgol_window"):
        k2_cdpp(white(TIME, 0), TIME, savgol_window=40)
    with pytest.raises(ValueError, match="hanning_window"):
        k2_cdpp(white(TIME, 0), TIME, hanning_window=2)
    with pytest.raises(ValueError, match="chunk"):
        k2_cdpp(white(TIME, 0), TIME, chunk=1)


# ------------------------------------------------------------------------------------------
# load_metric
# ------------------------------------------------------------------------------------------


def test_k2_spec():
    assert load_metric("K2") is k2_cdpp
    assert load_metric(" k2 ") is k2_cdpp


def test_metric_from_module_path():
    assert load_metric("archi.noise:k2_cdpp") is k2_cdpp


def test_metric_from_file_path_relative_to_cwd_and_base_dir(monkeypatch):
    flux, time = white(TIME, 0), TIME
    monkeypatch.chdir(REPO)
    from_cwd = load_metric(f"{THIS_FILE}:peak_to_peak")
    from_base = load_metric(f"{THIS_FILE}:peak_to_peak", base_dir=REPO)
    from_abs = load_metric(f"{REPO / THIS_FILE}:peak_to_peak")
    for metric in (from_cwd, from_base, from_abs):
        assert metric(flux, time) == peak_to_peak(flux, time)


def test_metric_from_yaml_config(tmp_path, monkeypatch):
    (tmp_path / "metrics").mkdir()
    (tmp_path / "metrics" / "mine.py").write_text(textwrap.dedent("""
        import numpy as np

        def rms(flux, time):
            return float(np.std(flux / np.median(flux)) * 1e6)

        class Metrics:
            @staticmethod
            def mad(flux, time):
                return float(np.median(np.abs(flux - np.median(flux))))
        """))
    config = yaml.safe_load("file: metrics/mine.py:rms\nmodule: mine:Metrics.mad\n")
    flux = white(TIME, 0)
    metric = load_metric(config["file"], base_dir=tmp_path)
    assert score(metric, flux, TIME, True) == pytest.approx(1e6 * np.std(flux / np.median(flux)))
    monkeypatch.syspath_prepend(str(tmp_path / "metrics"))
    assert load_metric(config["module"])(flux, TIME) > 0


def _write(path: Path, text: str) -> str:
    path.write_text(text)
    return str(path)


@pytest.mark.parametrize(("spec", "problem"), [
    ("", "no ':'"),
    ("CDPP", "no ':'"),
    (":k2_cdpp", "empty module"),
    ("archi.noise:", "empty function"),
    ("archi_no_such_module:f", "cannot import module"),
    ("archi.noise:no_such_function", "has no attribute"),
    ("archi.noise:INVALID_CDPP", "not a function"),
    ("no/such/file.py:f", "does not exist"),
    (f"{THIS_FILE}:no_such_function", "has no attribute"),
])
def test_bad_specs_raise_config_error_naming_them(spec, problem, monkeypatch):
    monkeypatch.chdir(REPO)
    with pytest.raises(ConfigError) as info:
        load_metric(spec)
    message = str(info.value)
    assert repr(spec) in message and problem in message
    assert "\n" not in message


def test_broken_user_code_raises_config_error(tmp_path, monkeypatch):
    bad_file = _write(tmp_path / "broken.py", "import numpy\nraise RuntimeError('boom\\nmore')\n")
    bad_syntax = _write(tmp_path / "syntax.py", "def f(:\n")
    _write(tmp_path / "broken_module.py", "1 / 0\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    for spec, problem in [(f"{bad_file}:f", "RuntimeError: boom"),
                          (f"{bad_syntax}:f", "SyntaxError"),
                          ("broken_module:f", "ZeroDivisionError")]:
        with pytest.raises(ConfigError) as info:
            load_metric(spec)
        assert repr(spec) in str(info.value) and problem in str(info.value)
        assert "\n" not in str(info.value)


def test_non_string_spec_raises_config_error():
    with pytest.raises(ConfigError, match="42"):
        load_metric(42)  # type: ignore[arg-type]


# ------------------------------------------------------------------------------------------
# score
# ------------------------------------------------------------------------------------------


def _must_not_be_called(flux, time):
    raise AssertionError("metric called")


def test_invalid_run_gets_penalty_without_calling_metric():
    assert score(_must_not_be_called, white(TIME, 0), TIME, False) == INVALID_CDPP
    assert score(_must_not_be_called, np.full(TIME.size, np.nan), TIME, True) == INVALID_CDPP


def test_valid_run_gets_metric_value_on_finite_samples():
    seen = {}

    def metric(flux, time):
        seen["flux"], seen["time"] = flux, time
        return np.float32(12.5)

    flux = white(TIME, 0)
    flux[:5] = np.nan
    value = score(metric, flux, TIME, True)
    assert value == 12.5 and type(value) is float
    assert seen["flux"].size == TIME.size - 5 and np.all(np.isfinite(seen["flux"]))
    np.testing.assert_array_equal(seen["time"], TIME[5:])
    assert score(k2_cdpp, flux, TIME, True) == k2_cdpp(flux, TIME)


@pytest.mark.parametrize("bad_value", [np.nan, np.inf, -np.inf])
def test_non_finite_metric_value_gets_penalty(bad_value):
    assert score(lambda f, t: bad_value, white(TIME, 0), TIME, True) == INVALID_CDPP


def test_raising_metric_surfaces_as_config_error():
    def metric(flux, time):
        raise ZeroDivisionError("oops")

    with pytest.raises(ConfigError, match=r"metric .*metric raised ZeroDivisionError.*oops") as e:
        score(metric, white(TIME, 0), TIME, True)
    assert isinstance(e.value.__cause__, ZeroDivisionError)


@pytest.mark.parametrize("bad_value", ["12", None, np.ones(3)])
def test_metric_returning_a_non_number_raises_config_error(bad_value):
    with pytest.raises(ConfigError, match="not a number"):
        score(lambda f, t: bad_value, white(TIME, 0), TIME, True)


def test_score_rejects_mismatched_arrays():
    with pytest.raises(ValueError, match="shapes"):
        score(k2_cdpp, np.ones(10), np.ones(11), True)


GOLDEN = Path(__file__).parent / "data" / "cdpp_golden_lightcurve.txt"
"""300 cadences of 59.9 s: a 0.2 % sinusoid over 0.3 d, 500 ppm white noise, a +1 % and a
-1.5 % outlier (time [MJD], flux [e])."""


@pytest.mark.parametrize("clip, frames, pyarchi, rel", [
    (5.0, np.arange(300), 96.73333802753622, 1e-6),  # measured: 1.2e-9 apart
    (None, np.arange(300), 101.76533451565167, 1e-6),  # measured: 3e-10
    # a 1-hour gap: pyarchi's SavGol2 weights the fit by 1/sqrt(flux), archi does not
    (5.0, np.r_[0:100, 160:300], 96.48786013874006, 5e-4),  # measured: 1.4e-4
])
def test_k2_cdpp_matches_pyarchis_value(clip, frames, pyarchi, rel):
    """Golden values from an independent implementation: pyarchi 1.2.1's
    ``pyarchi.utils.noise_metrics.CDPP.CDPP`` (outl=True / False), run once on this file."""
    time, flux = np.loadtxt(GOLDEN, unpack=True)
    assert k2_cdpp(flux[frames], time[frames], clip_mad=clip) == pytest.approx(pyarchi, rel=rel)
