"""Image formation for a chunk of frames, and the DRP's corrections of it.

Per stacked image (``TEXPTIME = NEXP * EXPTIME`` seconds), in electrons:

    raw = Poisson(stars + (background + dark_map) * TEXPTIME) + N(0, RON * sqrt(NEXP))
          + cosmic rays

The DRP's COR image then subtracts the reference dark map (hot pixels included) and a
background level estimated from the field far from the target, and sets pixels outside the
circular field of view to NaN.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np
from astropy.stats import sigma_clip
from astropy.utils.exceptions import AstropyUserWarning
from numpy.typing import NDArray

from archi.geometry import FIELD_CENTRE, FIELD_RADIUS, SUBARRAY_SIZE, rotate_offsets
from archi.simulate.config import SimulationConfig
from archi.simulate.psf import PixelPsf
from archi.simulate.scene import Scene

BACKGROUND_ANNULUS = 70.0
"""The DRP-like background estimate uses field pixels farther than this from the target
[pixel], where the target's halo is faint."""


@dataclass(frozen=True)
class Detector:
    dark_map: NDArray[np.float64]  # dark current per pixel [e/s], hot pixels included
    fov: NDArray[np.bool_]  # inside the circular field of view
    read_noise: float  # per readout [e]


def make_detector(cfg: SimulationConfig, rng: np.random.Generator) -> Detector:
    shape = (SUBARRAY_SIZE, SUBARRAY_SIZE)
    dark = np.full(shape, cfg.dark_rate) * (1.0 + 0.1 * rng.standard_normal(shape))
    dark = np.clip(dark, 0.0, None)
    n_hot = rng.binomial(dark.size, cfg.hot_pixel_fraction) if cfg.hot_pixel_fraction else 0
    if n_hot:
        idx = rng.choice(dark.size, n_hot, replace=False)
        lo, hi = np.log(cfg.hot_pixel_rate[0]), np.log(cfg.hot_pixel_rate[1])
        dark.flat[idx] = np.exp(rng.uniform(lo, hi, n_hot))
    yy, xx = np.indices(shape)
    fov = np.hypot(xx - FIELD_CENTRE[0], yy - FIELD_CENTRE[1]) <= FIELD_RADIUS
    return Detector(dark, fov, cfg.read_noise)


@dataclass
class ChunkImages:
    """Images of one chunk of frames (n, 200, 200)."""

    cor: NDArray[np.float64]  # DRP-corrected image, NaN outside the field [e]
    stars: NDArray[np.float64]  # noise-free light of all stars [e]
    target: NDArray[np.float64]  # noise-free light of the target alone [e]
    background_estimate: NDArray[np.float64]  # DRP background level per pixel (n,) [e]
    cosmics: list[tuple[int, float, float, float]]  # (frame in chunk, x, y, electrons)


def substep_offsets(distance: float, droll_deg: float, blur: bool) -> NDArray[np.float64]:
    """Roll offsets [deg] sampling one exposure finely enough that a star at ``distance``
    moves at most ~1 px between samples (rotational blur)."""
    arc = abs(np.radians(droll_deg)) * distance
    n = max(1, int(np.ceil(arc))) if blur else 1
    return ((np.arange(n) + 0.5) / n - 0.5) * droll_deg


def render_stars(psf: PixelPsf, scene: Scene, roll: NDArray, target_x: NDArray,
                 target_y: NDArray, flux: NDArray, droll_deg: float, blur: bool
                 ) -> tuple[NDArray, NDArray]:
    """Noise-free images of all stars and of the target alone, shape (n, 200, 200).

    ``roll``, ``target_x``, ``target_y``: per frame at mid-exposure (``roll``: the angle the
    field is turned by, :meth:`SimulationConfig.field_turn`); ``flux``: electrons per frame,
    shape (n_stars, n); ``droll_deg``: roll change during one exposure (the blur is the same
    either way the field turns).
    """
    n = len(roll)
    stars = np.zeros((n, SUBARRAY_SIZE, SUBARRAY_SIZE))
    target = np.zeros_like(stars)
    distance = np.hypot(scene.dx, scene.dy)
    reach = FIELD_RADIUS + psf.half + 2.0
    for i in range(scene.n_stars):
        offsets = substep_offsets(distance[i], droll_deg, blur)
        for k in range(n):
            rx, ry = rotate_offsets(scene.dx[i], scene.dy[i], roll[k] + offsets)
            x, y = target_x[k] + rx, target_y[k] + ry
            if np.hypot(x.mean() - FIELD_CENTRE[0], y.mean() - FIELD_CENTRE[1]) > reach:
                continue
            share = flux[i, k] / len(offsets)
            for xs, ys in zip(x, y):
                psf.add_star(stars[k], xs, ys, share)
                if i == 0:
                    psf.add_star(target[k], xs, ys, share)
    return stars, target


def cosmic_rays(n_frames: int, texptime: float, rate_per_min: float,
                rng: np.random.Generator) -> list[tuple[int, NDArray, NDArray, NDArray]]:
    """Cosmic-ray tracks: (frame, x pixels, y pixels, electrons per pixel) per hit.

    ~4.9 px per hit and ~560 e per pixel of path with a heavy tail, capped at 50,000 e per
    hit (CHEOPSim's model, simplified)."""
    hits = []
    counts = rng.poisson(rate_per_min * texptime / 60.0, n_frames)
    for frame in np.flatnonzero(counts):
        for _ in range(counts[frame]):
            length = 1 + rng.exponential(3.9)
            angle = rng.uniform(0, 2 * np.pi)
            x0, y0 = rng.uniform(0, SUBARRAY_SIZE, 2)
            steps = np.arange(int(np.ceil(length)))
            xs = np.clip(np.round(x0 + steps * np.cos(angle)), 0, SUBARRAY_SIZE - 1).astype(int)
            ys = np.clip(np.round(y0 + steps * np.sin(angle)), 0, SUBARRAY_SIZE - 1).astype(int)
            charge = 563.0 * rng.lognormal(0.0, 0.6, len(xs))
            charge *= min(1.0, 50_000.0 / charge.sum())
            hits.append((int(frame), xs, ys, charge))
    return hits


def estimate_background(images: NDArray, fov: NDArray, target_x: NDArray,
                        target_y: NDArray) -> NDArray[np.float64]:
    """DRP-like background per pixel [e]: sigma-clipped median of field pixels far from
    the target (vectorised over frames)."""
    yy, xx = np.indices(images.shape[1:])
    far = fov[None] & (np.hypot(xx[None] - target_x[:, None, None],
                                yy[None] - target_y[:, None, None]) > BACKGROUND_ANNULUS)
    data = np.where(far, images, np.nan)
    # a tighter upper clip rejects more of the faint wings of stars
    with warnings.catch_warnings():  # the NaNs mark excluded pixels on purpose
        warnings.simplefilter("ignore", AstropyUserWarning)
        clipped = sigma_clip(data.reshape(len(images), -1), sigma_lower=3.0, sigma_upper=2.0,
                             maxiters=10, cenfunc="median", axis=1, masked=False)
    return np.nanmedian(clipped, axis=1)


def observe_chunk(cfg: SimulationConfig, psf: PixelPsf, scene: Scene, detector: Detector,
                  roll: NDArray, target_x: NDArray, target_y: NDArray, flux: NDArray,
                  background: NDArray, texptime: float, nexp: int,
                  rng: np.random.Generator) -> ChunkImages:
    """Raw images of a chunk of frames and their DRP correction.

    ``roll``: the angle the field is turned by (:meth:`SimulationConfig.field_turn`);
    ``background``: true sky level per pixel per frame [e].
    """
    droll = -360.0 / cfg.orbit_minutes * texptime / 60.0
    stars, target = render_stars(psf, scene, roll, target_x, target_y, flux, droll,
                                 cfg.rotational_blur)
    dark = detector.dark_map * texptime
    expected = stars + background[:, None, None] + dark[None]
    noisy = not cfg.noise_free
    raw = rng.poisson(expected).astype(float) if (noisy and cfg.photon_noise) else expected
    if noisy and detector.read_noise > 0:
        raw += rng.normal(0.0, detector.read_noise * np.sqrt(nexp), raw.shape)
    hits = []
    if noisy and cfg.cosmic_rate > 0:
        for frame, xs, ys, charge in cosmic_rays(len(roll), texptime, cfg.cosmic_rate, rng):
            np.add.at(raw[frame], (ys, xs), charge)
            hits.append((frame, float(xs.mean()), float(ys.mean()), float(charge.sum())))
    corrected = raw - dark[None]
    bkg = estimate_background(corrected, detector.fov, target_x, target_y)
    corrected -= bkg[:, None, None]
    corrected[:, ~detector.fov] = np.nan
    return ChunkImages(corrected, stars, target, bkg, hits)
