"""An empirical PSF of the visit and a simultaneous linear fit of many stars in a frame.

CHEOPS's PSF is fixed on the detector (the optics roll with the CCD) while the field turns
about the target. A median of target-centred cut-outs taken at different roll angles
therefore gives the PSF free of the neighbours' light, from the data themselves.

:func:`fit_frame` models a frame as a sum of that PSF placed at given positions and solves
for every star's flux at once (blends included); with ``positions=True`` it also solves for
small shifts (a linearised, Gauss-Newton step), which measures positions to a small fraction
of a pixel. :func:`fit_shifts` does the same star by star on small windows, vectorised over
the frames of a chunk, with neighbours modelled iteratively: the tracker's 40x faster form
(1000 frames of 9 stars in about 1 s).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from archi.masks import cutouts
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
        from scipy import ndimage  # lazy: keeps factor jobs' imports light
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
        from the stamp centre (quantised to 1/oversample px, cached in the phase bank)."""
        kx, ky = int(round(fx * self.oversample)), int(round(fy * self.oversample))
        bank, row = self.phase_bank(np.array([kx]), np.array([ky]))
        return bank[0, row[0]], bank[1, row[0]], bank[2, row[0]]

    def phase_bank(self, kx: NDArray, ky: NDArray) -> tuple[NDArray, NDArray]:
        """Stamps and gradients of phase keys (kx, ky) [1/oversample px] in one array
        (3, n_phases, size, size), and the row of each key; filled as phases are used."""
        from scipy import ndimage  # lazy: keeps factor jobs' imports light

        n_keys = self.oversample + 1  # keys -oversample/2 .. +oversample/2
        if self._cache is None:
            self._cache = {"bank": np.zeros((3, n_keys * n_keys, self.size, self.size)),
                           "filled": np.zeros(n_keys * n_keys, dtype=bool)}
        bank, filled = self._cache["bank"], self._cache["filled"]
        half = self.oversample // 2
        row = (np.asarray(ky) + half) * n_keys + (np.asarray(kx) + half)
        for r in np.unique(row[~filled[row]]):
            shift_x = (r % n_keys - half) / self.oversample
            shift_y = (r // n_keys - half) / self.oversample
            s = ndimage.shift(self.stamp, (shift_y, shift_x), order=3, mode="constant")
            gy, gx = np.gradient(s)
            bank[0, r], bank[1, r], bank[2, r] = s, gx, gy
            filled[r] = True
        return bank, row

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


def rotational_blur(x: NDArray, y: NDArray, cx: NDArray, cy: NDArray, droll_deg: float
                    ) -> NDArray | None:
    """Offsets along the arcs stars at (x, y) (n_stars, n) sweep about (cx, cy) (n,) while
    the roll changes by ``droll_deg`` in one exposure: (m, n_stars, n, 2), sampled about
    every pixel of the longest arc; None when no arc reaches a pixel."""
    dx = np.asarray(x, float) - np.asarray(cx, float)
    dy = np.asarray(y, float) - np.asarray(cy, float)
    m = int(np.ceil(abs(np.radians(droll_deg)) * np.nanmax(np.hypot(dx, dy), initial=0.0)))
    if m <= 1:
        return None
    angles = np.radians(((np.arange(m) + 0.5) / m - 0.5) * droll_deg)
    c = np.cos(angles)[:, None, None]
    s = np.sin(angles)[:, None, None]
    # the same rotation sense as archi.geometry.rotate_offsets
    return np.stack([dx * c + dy * s - dx, -dx * s + dy * c - dy], axis=-1)


def blur_offsets(x: float, y: float, cx: float, cy: float, droll_deg: float) -> NDArray:
    """:func:`rotational_blur` of one star in one frame: (m, 2) offsets [pixel]."""
    blur = rotational_blur(np.array([[x]]), np.array([[y]]), np.array([cx]), np.array([cy]),
                           droll_deg)
    return np.zeros((1, 2)) if blur is None else blur[:, 0, 0, :]


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
        # normal equations: the matrix is tiny (3 columns a star) and its inverse gives the
        # errors too; 10-50x faster than an SVD of the tall design matrix
        a_live = a[:, live]
        normal = a_live.T @ a_live
        sol = np.zeros(n * per_star)
        err = np.full(n * per_star, np.inf)
        try:
            cov = np.linalg.inv(normal)
        except np.linalg.LinAlgError:
            sol[live] = np.linalg.lstsq(a_live, b, rcond=None)[0]
        else:
            sol[live] = cov @ (a_live.T @ b)
            err[live] = np.sqrt(np.clip(np.diag(cov), 0, None))
        solution = sol
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


# ----------------------------------------------------------------------------------------
# star by star, vectorised over frames (the dynam tracker)
# ----------------------------------------------------------------------------------------

def _split(p: NDArray, oversample: int) -> tuple[NDArray, NDArray]:
    """Nearest whole pixel and sub-pixel phase key (as :meth:`EmpiricalPsf.phase_stamp`)."""
    whole = np.floor(p + 0.5).astype(np.int64)
    return whole, np.rint((p - whole) * oversample).astype(np.int64)


def window_templates(psf: EmpiricalPsf, x: NDArray, y: NDArray, ix: NDArray, iy: NDArray,
                     half: int, gradients: bool = True) -> list[NDArray]:
    """Unit-flux PSF of a star at (x[k], y[k]) (and its x/y gradients) sampled on the
    (2 half + 1)^2 window centred on pixel (ix[k], iy[k]), for every k: arrays (n, w, w)."""
    jx, kx = _split(np.asarray(x, float), psf.oversample)
    jy, ky = _split(np.asarray(y, float), psf.oversample)
    bank, row = psf.phase_bank(kx, ky)
    u = np.arange(-half, half + 1)
    ry = psf.radius + (np.asarray(iy) - jy)[:, None] + u[None, :]
    rx = psf.radius + (np.asarray(ix) - jx)[:, None] + u[None, :]
    inside = (((ry >= 0) & (ry < psf.size))[:, :, None]
              & ((rx >= 0) & (rx < psf.size))[:, None, :])
    index = (row[:, None, None], np.clip(ry, 0, psf.size - 1)[:, :, None],
             np.clip(rx, 0, psf.size - 1)[:, None, :])
    return [np.where(inside, part[index], 0.0) for part in bank[:3 if gradients else 1]]


def _solve3(design: NDArray, data: NDArray, weight: NDArray) -> tuple[NDArray, NDArray]:
    """Per frame weighted least squares with 3 unknowns: design (n, p, 3), data and weight
    (n, p). Returns solutions (n, 3) and their variances (n, 3); NaN where singular."""
    aw = design * weight[:, :, None]
    awt = aw.transpose(0, 2, 1)
    normal = awt @ design
    rhs = (awt @ data[:, :, None])[:, :, 0]
    ok = np.linalg.det(normal) > 1e-300 * np.abs(normal).max(axis=(1, 2)) ** 3
    normal[~ok] = np.eye(3)
    cov = np.linalg.inv(normal)
    sol = np.einsum("kij,kj->ki", cov, rhs)
    var = np.diagonal(cov, axis1=1, axis2=2).copy()
    sol[~ok] = np.nan
    var[~ok] = np.nan
    return sol, var


@dataclass(frozen=True)
class ShiftFit:
    """Per star and frame (n_stars, n_frames), from :func:`fit_shifts`."""

    flux: NDArray[np.float64]  # [electrons] (within the fit window's model)
    flux_err: NDArray[np.float64]
    dx: NDArray[np.float64]  # position corrections [pixel]
    dy: NDArray[np.float64]
    covered: NDArray[np.float64]  # fraction of the window's PSF on valid pixels


def fit_shifts(frames: NDArray, x: NDArray, y: NDArray, psf: EmpiricalPsf,
               variance_floor: NDArray, *, blur: NDArray | None = None, half: int = 12,
               neighbour_distance: float | None = None, sweeps: int = 6, clip: float = 6.0
               ) -> ShiftFit:
    """Flux and position shift of every star in every frame of ``frames`` (n, H, W).

    Each star is fitted on a (2 half + 1)^2 window about its predicted position (x, y)
    (n_stars, n) with the PSF and its gradients (a linearised, Gauss-Newton step), all
    frames at once. Neighbours closer than ``neighbour_distance`` [pixel] (default: every
    star whose PSF stamp reaches the window) are modelled with their own fits of the previous
    sweep (block Jacobi; six sweeps converge for a pair 15 px apart, three do not), so
    blends and bright halos do not pull positions.
    ``blur``: (m, n_stars, n, 2) offsets averaged over to model the rotational smear within
    one exposure. Weights 1/(|model| + floor); pixels beyond ``clip`` sigma (cosmic rays)
    are dropped in the last sweep.
    """
    n_stars, n = x.shape
    size = 2 * half + 1
    if neighbour_distance is None:
        neighbour_distance = psf.radius + half
    ix = np.floor(x + 0.5).astype(np.int64)
    iy = np.floor(y + 0.5).astype(np.int64)
    floor = np.asarray(variance_floor, float)[:, None]
    data, valid, own = [], [], []
    for j in range(n_stars):
        d = cutouts(frames, ix[j] - half, iy[j] - half, (size, size))
        ok = np.isfinite(d)
        data.append(np.where(ok, d, 0.0).reshape(n, -1))
        valid.append(ok.reshape(n, -1))
        if blur is None:
            t = window_templates(psf, x[j], y[j], ix[j], iy[j], half)
        else:
            parts = [window_templates(psf, x[j] + b[j, :, 0], y[j] + b[j, :, 1], ix[j], iy[j],
                                      half) for b in blur]
            t = [sum(p[i] for p in parts) / len(parts) for i in range(3)]
        own.append(np.stack([t[0], -t[1], -t[2]], axis=-1).reshape(n, -1, 3))
    # neighbours' PSF (and gradients) on each star's window
    close = np.hypot(x[:, None] - x[None], y[:, None] - y[None]).min(axis=2)
    pairs: dict[int, list[tuple[int, NDArray]]] = {j: [] for j in range(n_stars)}
    for j in range(n_stars):
        for m in range(n_stars):
            if m != j and close[j, m] < neighbour_distance:
                t = window_templates(psf, x[m], y[m], ix[j], iy[j], half)
                pairs[j].append((m, np.stack([t[0], -t[1], -t[2]], axis=-1).reshape(n, -1, 3)))
    sol = np.zeros((n_stars, n, 3))
    var = np.full((n_stars, n, 3), np.inf)
    use = [v.copy() for v in valid]
    for sweep in range(sweeps):
        new_sol, new_var = np.empty_like(sol), np.empty_like(var)
        for j in range(n_stars):
            others = np.zeros_like(data[j])
            for m, design in pairs[j]:
                others += np.einsum("kpi,ki->kp", design, np.nan_to_num(sol[m]))
            target = data[j] - others
            if sweep == 0:
                model = np.abs(data[j])
            else:
                model = np.abs(np.einsum("kpi,ki->kp", own[j], np.nan_to_num(sol[j])) + others)
            if sweep == sweeps - 1 and sweep > 0:
                fitted = np.einsum("kpi,ki->kp", own[j], np.nan_to_num(sol[j]))
                resid = (target - fitted) / np.sqrt(model + floor)
                use[j] = valid[j] & (np.abs(resid) <= clip)
            weight = use[j] / (model + floor)
            new_sol[j], new_var[j] = _solve3(own[j], target, weight)
        sol, var = new_sol, new_var
    flux = sol[:, :, 0]
    with np.errstate(divide="ignore", invalid="ignore"):
        dx = np.where(flux > 0, sol[:, :, 1] / flux, 0.0)
        dy = np.where(flux > 0, sol[:, :, 2] / flux, 0.0)
        covered = np.array([(own[j][:, :, 0] * valid[j]).sum(axis=1)
                            / own[j][:, :, 0].sum(axis=1) for j in range(n_stars)])
    return ShiftFit(np.nan_to_num(flux), np.sqrt(np.nan_to_num(var[:, :, 0], nan=np.inf)),
                    np.nan_to_num(dx), np.nan_to_num(dy), np.nan_to_num(covered))

