"""A CHEOPS-like PSF: broad, defocused, three-lobed, with an extended halo and far wings.

The analytic model (three Gaussian knots at 120 deg-ish position angles, a ring, a weak core,
a Lorentzian-like halo and a flat floor, truncated at 100 px) was fitted to the CHEOPS white
PSF shipped with pycheops 1.1.27 (``pycheops/data/instrument/
CHEOPS_IT_PSFwhite_CH_TU2018-01-01.txt``, 200 x 200 detector pixels, unit sum): the core to
its enclosed energy (50 % within 10.6 px, 80 % within 16 px, 90 % within 20.8 px), the halo
and floor to its radial profile 25-100 px from its light centroid, where it falls from
1e-5 of the flux per pixel at 30 px to 1.5e-6 at 65 px, then slowly, to 8e-7 in the file's
corners.
Fractions in circles about the light centroid (pixel centres inside), model / real (the
real one over its whole 200 x 200 image): R=10: 0.456/0.422, 15: 0.762/0.794,
20: 0.894/0.899, 30: 0.940/0.934, 40: 0.958/0.951, 60: 0.977/0.970, 80: 0.989/0.981,
100: 1.000/0.992 (the real file keeps 0.8 % in its corners, beyond 100 px). Per pixel,
30-100 px out, the model's means in 10-px annuli are within 7 % of the real ones.

The PSF's orientation is fixed on the detector (the optics roll with the CCD); only the
stars move. The model is normalised to 1 within its 100-px support, so the true flux of a
star is the sum of its noise-free image.

:class:`PixelPsf` pre-integrates the model over pixels for a grid of sub-pixel phases, so a
star is placed by adding one stamp: fast and exactly flux-conserving.
:meth:`PixelPsf.from_image` builds the same stamps from a sampled PSF image instead (the
real file itself: option ``psf_file`` of the simulator, :mod:`archi.simulate.psf_file`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray
from scipy.ndimage import map_coordinates, spline_filter


@dataclass(frozen=True)
class PsfModel:
    """Parameters of the analytic PSF (lengths in pixels)."""

    lobe_radius: float = 12.726
    lobe_sigma: float = 3.875
    lobe_angles_deg: tuple[float, float, float] = (80.0, -39.0, -146.0)
    ring_radius: float = 6.999
    ring_sigma: float = 2.818
    core_sigma: float = 6.561
    halo_radius: float = 21.108
    halo_beta: float = 2.2028
    # lobes, ring, core, halo, floor: each component's share of the light within the support
    weights: tuple[float, ...] = (0.3637, 0.4076, 0.0554, 0.1483, 0.0250)
    support_radius: float = 100.0

    def components(self, x: NDArray, y: NDArray) -> list[NDArray]:
        """Unnormalised lobes, ring, core, halo, floor evaluated at offsets (x, y) [pixel]."""
        r = np.hypot(x, y)
        lobes = sum(np.exp(-((x - self.lobe_radius * np.cos(a)) ** 2
                             + (y - self.lobe_radius * np.sin(a)) ** 2)
                           / (2 * self.lobe_sigma ** 2))
                    for a in np.radians(self.lobe_angles_deg))
        ring = np.exp(-(r - self.ring_radius) ** 2 / (2 * self.ring_sigma ** 2))
        core = np.exp(-r ** 2 / (2 * self.core_sigma ** 2))
        halo = (1 + (r / self.halo_radius) ** 2) ** (-self.halo_beta)
        # the real PSF's far wings stay near 1e-6 of the flux per pixel from 70 px outwards
        floor = np.ones_like(r)
        return [lobes, ring, core, halo, floor]


class PixelPsf:
    """Pixel-integrated PSF stamps for ``oversample**2`` sub-pixel phases.

    ``stamp(fx, fy)`` returns the (size, size) image of a unit-flux star whose centre lies
    at offset (fx, fy) in [0, 1) from the stamp's central pixel; positions are quantised to
    ``1/oversample`` pixel.
    """

    def __init__(self, model: PsfModel | None = None, oversample: int = 10):
        self.model = model or PsfModel()
        self.oversample = k = int(oversample)
        half = int(np.ceil(self.model.support_radius))
        self.half = half
        self.size = size = 2 * half + 1
        # fine grid with one extra pixel so every phase shift stays inside it
        n_fine = (size + 1) * k
        u = (np.arange(n_fine) + 0.5) / k - (half + 1.5)  # pixel q spans [q - 0.5, q + 0.5)
        x, y = np.meshgrid(u, u)
        # centre the model on its light centroid: a star's position is where a centroid of
        # its light falls, as for the DRP's CENTROID_X/Y of the target
        shift = self._centroid(u)
        x, y = x + shift[0], y + shift[1]
        fine = self._fine_model(x, y)
        self.stamps = np.empty((k, k, size, size))
        for mx in range(k):  # bin columns once per x phase, then rows per y phase
            columns = fine[:, k - mx: k - mx + size * k].reshape(n_fine, size, k).sum(axis=2)
            for my in range(k):
                img = columns[k - my: k - my + size * k].reshape(size, k, size).sum(axis=1)
                self.stamps[my, mx] = img / img.sum()

    def _fine_model(self, x: NDArray, y: NDArray) -> NDArray:
        inside = np.hypot(x, y) <= self.model.support_radius
        fine = np.zeros_like(x)
        for weight, comp in zip(self.model.weights, self.model.components(x, y)):
            comp = np.where(inside, comp, 0.0)
            fine += weight * comp / comp.sum()
        return fine

    def _centroid(self, u: NDArray) -> tuple[float, float]:
        x, y = np.meshgrid(u, u)
        fine = self._fine_model(x, y)
        return float((fine * x).sum() / fine.sum()), float((fine * y).sum() / fine.sum())

    @classmethod
    def from_image(cls, image: NDArray, samples_per_pixel: int = 1,
                   oversample: int = 10) -> PixelPsf:
        """Stamps from a sampled PSF image instead of the analytic model.

        ``image``: rows along the detector's y, columns along its x, as the PSF lies on the
        detector; ``samples_per_pixel`` samples per detector pixel along each axis (1: each
        value is already a whole pixel's light, as in pycheops' file). The image is
        integrated over detector pixels, interpolated to every sub-pixel phase with a cubic
        spline, centred on its light centroid like the analytic model, and every stamp is
        normalised to unit flux. Beyond the largest circle the image holds about the
        centroid, the wings are made round (:func:`_round_wings`), out to its corners."""
        image = np.asarray(image, dtype=float)
        k_in = int(samples_per_pixel)
        image = _round_wings(image / image.sum(), k_in)
        image = image / image.sum()
        centre = [float((image.sum(axis=1 - axis) * (np.arange(n) + 0.5)).sum()) / k_in
                  for axis, n in enumerate(image.shape)]  # (y, x) [pixel from the corner]
        extent = [max(c, n / k_in - c) for c, n in zip(centre, image.shape)]
        self = cls.__new__(cls)
        self.model = None
        self.oversample = k = int(oversample)
        self.half = half = int(np.ceil(max(extent)))
        self.size = size = 2 * half + 1
        coefficients, pad = _pixel_spline(image, k_in)
        q = np.arange(size) - half
        self.stamps = np.empty((k, k, size, size))
        for my in range(k):
            for mx in range(k):
                # the pixel q from the star lies at centre + q - phase in the image, where
                # the pixel-integrated image's sample a sits at a / k_in + 0.5 - pad / k_in
                ay = (centre[0] + q - my / k - 0.5) * k_in + pad
                ax = (centre[1] + q - mx / k - 0.5) * k_in + pad
                yy, xx = np.meshgrid(ay, ax, indexing="ij")
                img = map_coordinates(coefficients, [yy, xx], order=3, prefilter=False,
                                      mode="nearest")
                img = np.clip(img, 0.0, None)  # the spline's undershoots next to steep edges
                self.stamps[my, mx] = img / img.sum()
        return self

    def quantise(self, position: NDArray) -> tuple[NDArray, NDArray]:
        """Split positions [pixel] into integer pixel and phase index (rounded to the grid)."""
        steps = np.round(np.asarray(position, float) * self.oversample).astype(np.int64)
        return np.floor_divide(steps, self.oversample), np.mod(steps, self.oversample)

    def add_star(self, image: NDArray, x: float, y: float, flux: float) -> None:
        """Add a star of ``flux`` centred at (x, y) [pixel] to ``image`` in place (clipped).

        Between the grid's phases the stamps of the four nearest phases are mixed with
        bilinear weights, so a star moving by a hundredth of a pixel moves its light too
        (placing it on the nearest phase would jump by up to 1/(2 oversample) pixel)."""
        k = self.oversample
        fx, fy = x * k, y * k
        lx, ly = int(np.floor(fx)), int(np.floor(fy))
        tx, ty = fx - lx, fy - ly
        for sx, wx in ((lx, 1.0 - tx), (lx + 1, tx)):
            for sy, wy in ((ly, 1.0 - ty), (ly + 1, ty)):
                if wx * wy > 0:
                    self._add_on_grid(image, sx, sy, flux * wx * wy)

    def _add_on_grid(self, image: NDArray, step_x: int, step_y: int, flux: float) -> None:
        """Add a star at (step_x, step_y) / oversample [pixel], a point of the phase grid."""
        ix, px = divmod(step_x, self.oversample)
        iy, py = divmod(step_y, self.oversample)
        ny, nx = image.shape
        x0, y0 = int(ix) - self.half, int(iy) - self.half
        xs0, ys0 = max(x0, 0), max(y0, 0)
        xs1, ys1 = min(x0 + self.size, nx), min(y0 + self.size, ny)
        if xs0 >= xs1 or ys0 >= ys1:
            return
        stamp = self.stamps[int(py), int(px)]
        image[ys0:ys1, xs0:xs1] += flux * stamp[ys0 - y0: ys1 - y0, xs0 - x0: xs1 - x0]


def enclosed_fraction(psf: PixelPsf, radius: float) -> float:
    """Fraction of a centred star's flux in pixels whose centres lie within ``radius``."""
    yy, xx = np.indices((psf.size, psf.size)) - psf.half
    return float(psf.stamps[0, 0][np.hypot(xx, yy) <= radius].sum())


def _round_wings(image: NDArray, samples_per_pixel: int) -> NDArray[np.float64]:
    """``image`` (unit sum) padded to a square about its light centroid that holds the
    circle through its farthest corner; the padding takes the mean of the image's samples
    at its radius (1-pixel rings) out to that corner, 0 beyond.

    Why: a square image cut through the wings (pycheops' file: 200 x 200 px, 0.8 % of the
    light beyond 100 px, in its corners only) would make a star's wing 100-140 px out
    appear and disappear as the field turns; far wings that are round are the simplest
    shape the file allows (its 70-100 px rings scatter by 11-27 % about their means)."""
    k = samples_per_pixel
    ny, nx = image.shape
    cy, cx = [float((image.sum(axis=1 - a) * (np.arange(n) + 0.5)).sum()) for a, n in
              enumerate(image.shape)]  # [samples from the corner]
    inner = min(cy, cx, ny - cy, nx - cx) / k  # [pixel]
    yy, xx = np.indices(image.shape)
    r = np.hypot(yy + 0.5 - cy, xx + 0.5 - cx) / k
    rings = np.floor(r).astype(int)
    mean = np.bincount(rings.ravel(), image.ravel()) / np.maximum(np.bincount(rings.ravel()), 1)
    pad = int(np.ceil(r.max() * k - min(cy, cx, ny - cy, nx - cx))) + 1
    out = np.pad(image, pad)
    yy, xx = np.indices(out.shape)
    r = np.hypot(yy + 0.5 - cy - pad, xx + 0.5 - cx - pad) / k
    ring = np.floor(r).astype(int)
    added = np.ones(out.shape, bool)
    added[pad:pad + ny, pad:pad + nx] = False  # the file's own samples are kept
    profile = np.where(ring < len(mean), mean[np.minimum(ring, len(mean) - 1)], 0.0)
    out[added & (r > inner)] = profile[added & (r > inner)]
    return out


def _pixel_spline(image: NDArray, samples_per_pixel: int) -> tuple[NDArray, int]:
    """Cubic-spline coefficients of ``image`` summed over whole detector pixels (boxes of
    ``samples_per_pixel`` samples at every sample step), and the zero padding [samples] the
    image got on each side so the light fades to nothing at the array's edges."""
    k_in = samples_per_pixel
    pad = k_in + 4
    padded = np.pad(image, pad)
    for axis in (0, 1):
        cumulative = np.cumsum(padded, axis=axis)
        cumulative = np.insert(cumulative, 0, 0.0, axis=axis)
        n = padded.shape[axis] - k_in + 1
        # box a covers samples a..a+k_in-1: its centre is at a / k_in + 0.5 pixel - pad
        padded = (np.take(cumulative, np.arange(k_in, k_in + n), axis=axis)
                  - np.take(cumulative, np.arange(n), axis=axis))
    return spline_filter(padded, order=3, mode="nearest"), pad
