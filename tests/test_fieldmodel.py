"""The tracker's vectorised fit (fieldmodel.fit_shifts) on frames with known truth."""

from __future__ import annotations

import numpy as np

from archi.fieldmodel import EmpiricalPsf, fit_frame, fit_shifts


def gaussian_psf(radius: int = 30, sigma: float = 3.0) -> EmpiricalPsf:
    yy, xx = np.indices((2 * radius + 1, 2 * radius + 1)) - radius
    stamp = np.exp(-0.5 * (xx ** 2 + yy ** 2) / sigma ** 2)
    return EmpiricalPsf(stamp / stamp.sum(), radius)


def frames_with(psf, x, y, flux, n_frames, noise=0.0, seed=0):
    """(n_frames, 100, 100) frames of stars at x[j, k], y[j, k] with fluxes flux[j]."""
    rng = np.random.default_rng(seed)
    out = np.zeros((n_frames, 100, 100))
    for k in range(n_frames):
        for j in range(len(flux)):
            s, _, _, ix0, iy0 = psf.render(x[j, k], y[j, k])
            ys, xs = max(iy0, 0), max(ix0, 0)
            ye, xe = min(iy0 + psf.size, 100), min(ix0 + psf.size, 100)
            out[k, ys:ye, xs:xe] += flux[j] * s[ys - iy0:ye - iy0, xs - ix0:xe - ix0]
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
    # one linearised step on templates quantised to 0.1 px (as the rendering here)
    assert np.median(err) < 0.06 and err.max() < 0.15, (np.median(err), err.max())
    np.testing.assert_allclose(np.median(fit.flux, axis=1), flux, rtol=0.02)
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
