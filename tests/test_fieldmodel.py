"""The tracker's vectorised fit (fieldmodel.fit_shifts) on frames with known truth."""

from __future__ import annotations

import numpy as np
import pytest

from archi.fieldmodel import _solve_symmetric3, fit_frame, fit_shifts
from archi.psf import EmpiricalPsf, frames_spread_in_roll, window_templates


def gaussian_psf(radius: int = 30, sigma: float = 3.0) -> EmpiricalPsf:
    yy, xx = np.indices((2 * radius + 1, 2 * radius + 1)) - radius
    stamp = np.exp(-0.5 * (xx ** 2 + yy ** 2) / sigma ** 2)
    return EmpiricalPsf(stamp / stamp.sum(), radius)


def frames_with(psf, x, y, flux, n_frames, noise=0.0, seed=0):
    """(n_frames, 100, 100) frames of stars at x[j, k], y[j, k] with fluxes flux[j]: the
    Gaussian of :func:`gaussian_psf` (``psf``: its sigma is read from it) evaluated at the
    exact positions, not the code's rendering (which quantises positions to 0.1 px)."""
    sigma = float(np.sqrt((psf.stamp * (np.indices(psf.stamp.shape)[1] - psf.radius) ** 2)
                          .sum()))
    rng = np.random.default_rng(seed)
    yy, xx = np.indices((100, 100))
    out = np.zeros((n_frames, 100, 100))
    for k in range(n_frames):
        for j in range(len(flux)):
            r2 = (xx - x[j, k]) ** 2 + (yy - y[j, k]) ** 2
            out[k] += flux[j] * np.exp(-0.5 * r2 / sigma ** 2) / (2 * np.pi * sigma ** 2)
    return out + rng.normal(0.0, noise, out.shape) if noise else out


def test_shifts_of_a_blended_pair_are_recovered_in_every_frame():
    psf = gaussian_psf()
    n = 40
    rng = np.random.default_rng(3)
    true_x = np.array([40.0, 52.0])[:, None] + rng.uniform(-0.5, 0.5, (2, n))
    true_y = np.array([50.0, 53.0])[:, None] + rng.uniform(-0.5, 0.5, (2, n))
    flux = np.array([1e6, 4e5])
    frames = frames_with(psf, true_x, true_y, flux, n, noise=3.0)
    # predictions off by up to 0.5 px, differently in every frame
    pred_x = true_x + rng.uniform(-0.5, 0.5, (2, n))
    pred_y = true_y + rng.uniform(-0.5, 0.5, (2, n))
    fit = fit_shifts(frames, pred_x, pred_y, psf, np.full(n, 9.0), half=8)
    err = np.hypot(pred_x + fit.dx - true_x, pred_y + fit.dy - true_y)
    # one linearised step on templates quantised to 0.1 px, the frames drawn at the exact
    # positions: measured median 0.042 px, max 0.068; fluxes within 0.03 %
    assert np.median(err) < 0.06 and err.max() < 0.12, (np.median(err), err.max())
    np.testing.assert_allclose(np.median(fit.flux, axis=1), flux, rtol=0.002)
    assert (fit.covered > 0.99).all()
    # without modelling the neighbour (12.4 px away) the pair pulls each other's positions
    alone = fit_shifts(frames, pred_x, pred_y, psf, np.full(n, 9.0), half=8,
                       neighbour_distance=1.0)
    err_alone = np.hypot(pred_x + alone.dx - true_x, pred_y + alone.dy - true_y)
    assert err_alone.max() > 3 * err.max()


def test_shifts_agree_with_the_frame_by_frame_fit():
    psf = gaussian_psf()
    n = 6
    x = np.array([[30.3] * n, [70.6] * n])
    y = np.array([[40.2] * n, [60.9] * n])
    frames = frames_with(psf, x, y, np.array([2e5, 1e5]), n)
    pred_x, pred_y = x + 0.3, y - 0.2
    fit = fit_shifts(frames, pred_x, pred_y, psf, np.ones(n))
    for k in range(n):
        one = fit_frame(frames[k], pred_x[:, k], pred_y[:, k], psf, positions=True)
        np.testing.assert_allclose(fit.dx[:, k], one.dx, atol=0.01)
        np.testing.assert_allclose(fit.dy[:, k], one.dy, atol=0.01)


def test_a_star_off_the_frame_is_not_covered():
    psf = gaussian_psf()
    frames = frames_with(psf, np.array([[50.0]]), np.array([[50.0]]), np.array([1e5]), 1)
    frames[:, :, 60:] = np.nan
    fit = fit_shifts(frames, np.array([[50.0], [75.0]]).reshape(2, 1),
                     np.array([[50.0], [50.0]]).reshape(2, 1), psf, np.ones(1))
    assert fit.covered[0, 0] > 0.99 and fit.covered[1, 0] < 0.01


def test_window_templates_are_the_phase_stamps_sampled_on_the_window():
    psf = gaussian_psf()
    rng = np.random.default_rng(5)
    n = 200
    x, y = rng.uniform(0, 100, n), rng.uniform(0, 100, n)
    # window centres near the star, at the stamp's edge and far beyond it
    ix = np.floor(x + 0.5).astype(int) + rng.integers(-50, 51, n)
    iy = np.floor(y + 0.5).astype(int) + rng.integers(-50, 51, n)
    half = 6
    got = window_templates(psf, x, y, ix, iy, half)
    assert got.shape == (n, 3, 2 * half + 1, 2 * half + 1)
    for k in range(n):
        jx, jy = np.floor(x[k] + 0.5), np.floor(y[k] + 0.5)
        parts = psf.phase_stamp(x[k] - jx, y[k] - jy)
        for c in range(3):
            want = np.zeros((2 * half + 1, 2 * half + 1))
            for a in range(2 * half + 1):
                for b in range(2 * half + 1):
                    ry = int(psf.radius + iy[k] - jy - half + a)
                    rx = int(psf.radius + ix[k] - jx - half + b)
                    if 0 <= ry < psf.size and 0 <= rx < psf.size:
                        want[a, b] = parts[c][ry, rx]
            np.testing.assert_array_equal(got[k, c], want)


def test_symmetric_solve_agrees_with_numpy_and_flags_singular_systems():
    rng = np.random.default_rng(2)
    a = rng.normal(size=(50, 3, 40))
    normal = a @ a.swapaxes(-1, -2)
    normal[7] = 0.0  # nothing to fit
    normal[9] = np.outer([1.0, 2.0, 3.0], [1.0, 2.0, 3.0])  # rank 1
    rhs = rng.normal(size=(50, 3))
    sol, var = _solve_symmetric3(normal, rhs)
    good = np.setdiff1d(np.arange(50), [7, 9])
    want = np.linalg.solve(normal[good], rhs[good][..., None])[..., 0]
    np.testing.assert_allclose(sol[good], want, rtol=1e-10)
    inverse = np.linalg.inv(normal[good])
    np.testing.assert_allclose(var[good], np.diagonal(inverse, axis1=1, axis2=2), rtol=1e-10)
    assert np.isnan(sol[[7, 9]]).all() and np.isnan(var[[7, 9]]).all()


def test_rendering_without_gradients_gives_the_same_stamp():
    psf = gaussian_psf()
    blur = np.array([[-1.2, 0.4], [0.0, 0.0], [1.3, -0.6]])
    s, gx, gy, ix0, iy0 = psf.render(40.37, 52.81, blur)
    s1, none_x, none_y, ix1, iy1 = psf.render(40.37, 52.81, blur, gradients=False)
    np.testing.assert_array_equal(s, s1)
    assert none_x is None and none_y is None and (ix0, iy0) == (ix1, iy1)
    assert gx.shape == gy.shape == s.shape


def test_a_frame_fit_of_stars_off_the_frame_is_empty():
    psf = gaussian_psf()
    fit = fit_frame(np.full((50, 50), np.nan), np.array([20.0, 500.0]),
                    np.array([20.0, 500.0]), psf, positions=True)
    assert (fit.flux == 0).all() and np.isinf(fit.flux_err).all() and (fit.covered == 0).all()


def test_fit_frame_fits_a_constant_level_with_the_fluxes():
    """The DRP leaves a background level, and a star's halo reaches every pixel: fitted
    together, flux and level are both recovered (noise-free image); a fit without the level
    puts part of it into the flux."""
    from archi.psf import EmpiricalPsf

    radius = 30
    yy, xx = np.indices((2 * radius + 1, 2 * radius + 1)) - radius
    stamp = np.exp(-(xx ** 2 + yy ** 2) / (2 * 4.0 ** 2)) + 1e-3 / (1 + (xx ** 2 + yy ** 2) / 100)
    psf = EmpiricalPsf(stamp / stamp.sum(), radius)
    image = np.full((100, 100), 7.5)
    image[20:81, 20:81] += 2.0e5 * psf.stamp
    with_level = fit_frame(image, np.array([50.0]), np.array([50.0]), psf, sky=True)
    assert with_level.flux[0] == pytest.approx(2.0e5, rel=1e-9)
    assert with_level.sky == pytest.approx(7.5, rel=1e-9)
    without = fit_frame(image, np.array([50.0]), np.array([50.0]), psf)
    assert without.flux[0] > 2.0e5 * 1.01


def test_excluded_pixels_keep_a_passing_neighbour_out_of_the_psf():
    """A neighbour's residual light sits at one place in a third of the frames (as a badly
    subtracted star turning past the target's wing): the plain median is pulled up there
    (measured: by 0.70 sigma), while with those pixels excluded the PSF there is the median
    of the other frames: the same as a PSF built from those frames alone (measured: to
    0.001 sigma, the normalisation)."""
    from types import SimpleNamespace

    rng = np.random.default_rng(3)
    n, sigma, radius = 30, 1.0, 20
    yy, xx = np.indices((200, 200))
    tx = 100.0 + rng.uniform(-0.3, 0.3, n)
    ty = 99.0 + rng.uniform(-0.3, 0.3, n)
    spot = (xx - 112.0) ** 2 + (yy - 99.0) ** 2 <= 4.3 ** 2  # the neighbour's footprint
    hit = np.arange(n) % 3 == 0
    cube = np.empty((n, 200, 200))
    for k in range(n):
        star = 5000.0 * np.exp(-((xx - tx[k]) ** 2 + (yy - ty[k]) ** 2) / (2 * 3.0 ** 2))
        cube[k] = star + sigma * rng.standard_normal((200, 200)) + 20.0 * sigma * (hit[k] & spot)
    flux = 5000.0 * 2 * np.pi * 3.0 ** 2  # the Gaussian's total: stamps back to electrons
    yr, xr = np.indices((2 * radius + 1, 2 * radius + 1)) - radius
    region = np.hypot(xr - 12, yr) <= 3.5  # well inside the footprint in every frame

    def psf(frames, exclude=None):
        visit = SimpleNamespace(n_frames=int(frames.sum()), cube=cube[frames],
                                target_x=tx[frames], target_y=ty[frames],
                                roll_angle=np.linspace(360.0, 0.0, n)[frames])
        return EmpiricalPsf.from_visit(visit, radius=radius, n_frames=n,
                                       exclude=exclude).stamp * flux

    everything = np.ones(n, dtype=bool)
    reference = psf(~hit)[region]
    plain = psf(everything)[region]
    cleaned = psf(everything, lambda k: spot if hit[k] else np.zeros_like(spot))[region]
    assert np.mean(plain - reference) > 0.3 * sigma
    assert np.max(np.abs(cleaned - reference)) < 0.01 * sigma


def test_psf_frames_are_spread_evenly_in_roll():
    """A visit of 1.5 orbits covers half the angles twice: frames spread in time give those
    angles twice as many frames; spread in roll, every 30-degree sector gets 4 or 5 of 50."""
    roll = np.linspace(360.0, -180.0, 300, endpoint=False)  # decreasing, as CHEOPS's
    chosen = frames_spread_in_roll(roll, 50)
    assert len(chosen) == 50 and len(np.unique(chosen)) == 50
    per_sector = np.histogram(np.mod(roll[chosen], 360.0), bins=12, range=(0, 360))[0]
    assert per_sector.min() >= 4 and per_sector.max() <= 5, per_sector
    in_time = np.linspace(0, 299, 50).astype(int)
    assert np.histogram(np.mod(roll[in_time], 360.0), bins=12, range=(0, 360))[0].max() >= 6


def test_psf_frames_of_a_short_visit_span_the_angles_it_covers():
    """A third of an orbit across 0 deg: the frames cover the whole 120-degree arc, evenly."""
    roll = np.mod(np.linspace(60.0, -60.0, 90), 360.0)
    chosen = frames_spread_in_roll(roll, 12)
    angles = np.sort((roll[chosen] + 180.0) % 360.0 - 180.0)
    assert angles[0] < -50 and angles[-1] > 50
    assert np.all(np.diff(angles) > 6.0), angles  # 10 deg apart when even
    assert np.array_equal(frames_spread_in_roll(roll, 200), np.arange(90))


def test_psf_frames_are_taken_among_the_usable_ones():
    """Bad frames (framequality) are never chosen; the others still spread over the roll."""
    roll = np.linspace(360.0, -180.0, 300, endpoint=False)
    usable = np.ones(300, bool)
    usable[::3] = False  # a third of the frames lost
    chosen = frames_spread_in_roll(roll, 50, usable)
    assert len(chosen) == 50 and usable[chosen].all()
    per_sector = np.histogram(np.mod(roll[chosen], 360.0), bins=12, range=(0, 360))[0]
    assert per_sector.min() >= 4 and per_sector.max() <= 5, per_sector
    few = np.zeros(300, bool)
    few[[5, 70, 140]] = True
    assert list(frames_spread_in_roll(roll, 50, few)) == [5, 70, 140]
