"""A CHEOPS-like PSF: broad, defocused, three-lobed, with an extended halo.

The analytic model (three Gaussian knots at 120 deg-ish position angles, a ring, a weak core
and a Lorentzian-like halo truncated at 64 px) was fitted to the enclosed energy of the
CHEOPS white PSF shipped with pycheops (``CHEOPS_IT_PSFwhite``): 50 % within 10.6 px,
80 % within 16 px, 90 % within 20.8 px, 95 % within ~35 px. Fractions of this model in
circular apertures: R=15: 0.760, R=20: 0.891, R=25: 0.923, R=30: 0.937, R=40: 0.961
(real PSF: 0.766, 0.890, 0.920, 0.934, 0.951).

The PSF's orientation is fixed on the detector (the optics roll with the CCD); only the
stars move. The model is normalised to 1 within its 64-px support, so the true flux of a
star is the sum of its noise-free image.

:class:`PixelPsf` pre-integrates the model over pixels for a grid of sub-pixel phases, so a
star is placed by adding one stamp: fast and exactly flux-conserving.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray


@dataclass(frozen=True)
class PsfModel:
    """Parameters of the analytic PSF (lengths in pixels)."""

    lobe_radius: float = 12.726
    lobe_sigma: float = 3.875
    lobe_angles_deg: tuple[float, float, float] = (80.0, -39.0, -146.0)
    ring_radius: float = 6.999
    ring_sigma: float = 2.818
    core_sigma: float = 6.561
    halo_radius: float = 13.082
    halo_beta: float = 1.0792
    weights: tuple[float, float, float, float] = (0.3709, 0.4156, 0.0565, 0.1570)
    support_radius: float = 64.0

    def components(self, x: NDArray, y: NDArray) -> list[NDArray]:
        """Unnormalised lobes, ring, core, halo evaluated at offsets (x, y) [pixel]."""
        r = np.hypot(x, y)
        lobes = sum(np.exp(-((x - self.lobe_radius * np.cos(a)) ** 2
                             + (y - self.lobe_radius * np.sin(a)) ** 2)
                           / (2 * self.lobe_sigma ** 2))
                    for a in np.radians(self.lobe_angles_deg))
        ring = np.exp(-(r - self.ring_radius) ** 2 / (2 * self.ring_sigma ** 2))
        core = np.exp(-r ** 2 / (2 * self.core_sigma ** 2))
        halo = (1 + (r / self.halo_radius) ** 2) ** (-self.halo_beta)
        return [lobes, ring, core, halo]


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
        for my in range(k):
            for mx in range(k):
                block = fine[k - my: k - my + size * k, k - mx: k - mx + size * k]
                img = block.reshape(size, k, size, k).sum(axis=(1, 3))
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
