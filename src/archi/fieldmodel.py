"""An empirical PSF of the visit and a simultaneous linear fit of many stars in a frame.

CHEOPS's PSF is fixed on the detector (the optics roll with the CCD) while the field turns
about the target. A median of target-centred cut-outs taken at different roll angles
therefore gives the PSF free of the neighbours' light, from the data themselves.

:func:`fit_frame` models a frame as a sum of that PSF placed at given positions and solves
for every star's flux at once (blends included); with ``positions=True`` it also solves for
small shifts (a linearised, Gauss-Newton step), which measures positions to a small fraction
of a pixel.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray
from scipy import ndimage

from archi.visit import Visit


@dataclass
class EmpiricalPsf:
    """PSF image of unit total flux on a (2R+1)^2 stamp, centred where the DRP puts the
    target's centroid."""

    stamp: NDArray[np.float64]
    radius: int
    oversample: int = 10
    _cache: dict | None = None

    @classmethod
    def from_visit(cls, visit: Visit, radius: int = 60, n_frames: int = 25) -> EmpiricalPsf:
        """Median of target-centred cut-outs of up to ``n_frames`` frames spread over the visit."""
        index = np.unique(np.linspace(0, visit.n_frames - 1, min(n_frames, visit.n_frames))
                          .astype(int))
        pad = radius + 3
        cuts = []
        for k in index:
            frame = np.asarray(visit.cube[k], dtype=float)
            tx, ty = visit.target_x[k], visit.target_y[k]
            ix, iy = int(round(tx)), int(round(ty))
            big = np.full((2 * pad + 1, 2 * pad + 1), np.nan)
            y0, x0 = iy - pad, ix - pad
            ys, xs = max(y0, 0), max(x0, 0)
            ye, xe = min(y0 + 2 * pad + 1, frame.shape[0]), min(x0 + 2 * pad + 1, frame.shape[1])
            big[ys - y0:ye - y0, xs - x0:xe - x0] = frame[ys:ye, xs:xe]
            valid = np.isfinite(big)
            shifted = ndimage.shift(np.where(valid, big, 0.0), (iy - ty, ix - tx), order=3)
            cover = ndimage.shift(valid.astype(float), (iy - ty, ix - tx), order=1)
            shifted[cover < 0.99] = np.nan
            cuts.append(shifted[3:-3, 3:-3])
        with np.errstate(all="ignore"):
            stamp = np.nanmedian(np.array(cuts), axis=0)
        yy, xx = np.indices(stamp.shape) - radius
        stamp = np.where((np.hypot(xx, yy) <= radius) & np.isfinite(stamp), stamp, 0.0)
        stamp = np.clip(stamp, 0.0, None)
        total = stamp.sum()
        if not total > 0:
            raise ValueError("the target's image has no positive flux: cannot build a PSF")
        # No recentring: the cut-outs are aligned on the DRP centroid, which defines where a
        # star "is" (neighbours' residual light in the halo would bias a recomputed centroid).
        return cls(stamp / stamp.sum(), radius)

    @property
    def size(self) -> int:
        return 2 * self.radius + 1

    def phase_stamp(self, fx: float, fy: float) -> tuple[NDArray, NDArray, NDArray]:
        """Stamp and its x/y gradients for a star at sub-pixel offset (fx, fy) in [-0.5, 0.5)
        from the stamp centre (quantised to 1/oversample px, cached)."""
        if self._cache is None:
            self._cache = {}
        key = (int(round(fx * self.oversample)), int(round(fy * self.oversample)))
        hit = self._cache.get(key)
        if hit is None:
            s = ndimage.shift(self.stamp, (key[1] / self.oversample, key[0] / self.oversample),
                              order=3, mode="constant")
            gy, gx = np.gradient(s)
            hit = self._cache[key] = (s, gx, gy)
        return hit

    def render(self, x: float, y: float, blur: NDArray | None = None
               ) -> tuple[NDArray, NDArray, NDArray, int, int]:
        """Unit-flux image of a star at (x, y) on a stamp, with gradients and its origin.

        ``blur``: optional (m, 2) offsets [pixel] averaged over (rotational blur during the
        exposure). Returns (stamp, d/dx, d/dy, ix0, iy0).
        """
        ix, iy = int(np.floor(x + 0.5)), int(np.floor(y + 0.5))
        offsets = np.zeros((1, 2)) if blur is None else np.asarray(blur)
        acc = np.zeros((self.size, self.size))
        gxs = np.zeros_like(acc)
        gys = np.zeros_like(acc)
        for ox, oy in offsets:
            sx, sy = x + ox - ix, y + oy - iy
            jx, jy = int(np.floor(sx + 0.5)), int(np.floor(sy + 0.5))
            s, gx, gy = self.phase_stamp(sx - jx, sy - jy)
            acc += _roll_zero(s, jx, jy)
            gxs += _roll_zero(gx, jx, jy)
            gys += _roll_zero(gy, jx, jy)
        m = len(offsets)
        return acc / m, gxs / m, gys / m, ix - self.radius, iy - self.radius


def _roll_zero(a: NDArray, dx: int, dy: int) -> NDArray:
    """Shift an array by whole pixels, filling with zeros (no wrap-around)."""
    if dx == 0 and dy == 0:
        return a
    out = np.zeros_like(a)
    h, w = a.shape
    ys, yd = (slice(0, h - dy), slice(dy, h)) if dy >= 0 else (slice(-dy, h), slice(0, h + dy))
    xs, xd = (slice(0, w - dx), slice(dx, w)) if dx >= 0 else (slice(-dx, w), slice(0, w + dx))
    out[yd, xd] = a[ys, xs]
    return out


@dataclass(frozen=True)
class FrameFit:
    """Result of :func:`fit_frame` for n stars."""

    flux: NDArray[np.float64]  # [electrons]
    flux_err: NDArray[np.float64]
    dx: NDArray[np.float64]  # position corrections [pixel] (0 unless positions were fitted)
    dy: NDArray[np.float64]
    covered: NDArray[np.float64]  # fraction of each star's PSF on valid pixels


def blur_offsets(x: float, y: float, cx: float, cy: float, droll_deg: float) -> NDArray:
    """Offsets along the arc a star at (x, y) sweeps about (cx, cy) during one exposure
    (the roll changes by ``droll_deg``), sampled every pixel or so."""
    r = np.hypot(x - cx, y - cy)
    arc = abs(np.radians(droll_deg)) * r
    n = max(1, int(np.ceil(arc)))
    if n == 1:
        return np.zeros((1, 2))
    angles = np.radians(((np.arange(n) + 0.5) / n - 0.5) * droll_deg)
    dx, dy = x - cx, y - cy
    c, s = np.cos(angles), np.sin(angles)
    # the same rotation sense as archi.geometry.rotate_offsets
    return np.column_stack([dx * c + dy * s - dx, -dx * s + dy * c - dy])


def fit_frame(image: NDArray, x: NDArray, y: NDArray, psf: EmpiricalPsf, *,
              positions: bool = False, variance_floor: float = 1.0,
              blur: list[NDArray] | None = None, clip: float = 6.0) -> FrameFit:
    """Fit fluxes (and optionally position shifts) of stars at (x, y) in one frame.

    Weighted linear least squares, weights 1/(|model| + floor) with ``variance_floor`` the
    per-pixel variance of sky, dark and read noise [e^2]; pixels deviating by more than
    ``clip`` sigma after a first solve (cosmic rays) are dropped and the fit repeated.
    """
    n = len(x)
    ny, nx = image.shape
    valid = np.isfinite(image)
    cols: list[tuple[NDArray, NDArray, NDArray]] = []
    covered = np.zeros(n)
    region = np.zeros(image.shape, dtype=bool)
    stamps = []
    for j in range(n):
        s, gx, gy, ix0, iy0 = psf.render(float(x[j]), float(y[j]),
                                         None if blur is None else blur[j])
        ys, xs = max(iy0, 0), max(ix0, 0)
        ye, xe = min(iy0 + psf.size, ny), min(ix0 + psf.size, nx)
        if ys >= ye or xs >= xe:
            stamps.append(None)
            continue
        sl = (slice(ys - iy0, ye - iy0), slice(xs - ix0, xe - ix0))
        stamps.append(((ys, ye, xs, xe), s[sl], gx[sl], gy[sl]))
        inside = valid[ys:ye, xs:xe]
        covered[j] = s[sl][inside].sum()
        region[ys:ye, xs:xe] |= inside & (s[sl] > 1e-7)
    pix = np.flatnonzero(region)
    index = np.full(image.size, -1)
    index[pix] = np.arange(len(pix))
    per_star = 3 if positions else 1
    design = np.zeros((len(pix), n * per_star))
    for j, item in enumerate(stamps):
        if item is None:
            continue
        (ys, ye, xs, xe), s, gx, gy = item
        flat = (np.arange(ys, ye)[:, None] * nx + np.arange(xs, xe)[None, :]).ravel()
        rows = index[flat]
        keep = rows >= 0
        design[rows[keep], j * per_star] = s.ravel()[keep]
        if positions:
            # d/d(shift) of f * T(p - shift) = -f * grad T
            design[rows[keep], j * per_star + 1] = -gx.ravel()[keep]
            design[rows[keep], j * per_star + 2] = -gy.ravel()[keep]
    data = image.ravel()[pix]
    use = np.ones(len(pix), dtype=bool)
    solution = np.zeros(n * per_star)
    err = np.full(n * per_star, np.inf)
    for _ in range(2):
        model = design @ solution
        weight = 1.0 / (np.abs(np.where(solution.any(), model, data)) + variance_floor)
        a = design[use] * np.sqrt(weight[use])[:, None]
        b = data[use] * np.sqrt(weight[use])
        live = np.abs(a).sum(axis=0) > 0
        sol = np.zeros(n * per_star)
        sol[live], *_ = np.linalg.lstsq(a[:, live], b, rcond=None)
        solution = sol
        try:
            cov = np.linalg.inv(a[:, live].T @ a[:, live])
            err = np.full(n * per_star, np.inf)
            err[live] = np.sqrt(np.clip(np.diag(cov), 0, None))
        except np.linalg.LinAlgError:
            pass
        resid = (data - design @ solution) * np.sqrt(weight)
        bad = np.abs(resid) > clip
        if not bad[use].any():
            break
        use &= ~bad
    flux = solution[::per_star]
    flux_err = err[::per_star]
    if positions:
        with np.errstate(divide="ignore", invalid="ignore"):
            dx = np.where(flux > 0, solution[1::3] / flux, 0.0)
            dy = np.where(flux > 0, solution[2::3] / flux, 0.0)
    else:
        dx = dy = np.zeros(n)
    return FrameFit(flux, flux_err, dx, dy, covered)
