"""An empirical PSF of the visit and a simultaneous linear fit of many stars in a frame.

CHEOPS's PSF is fixed on the detector (the optics roll with the CCD) while the field turns
about the target. A median of target-centred cut-outs taken at different roll angles
therefore gives the PSF free of the neighbours' light, from the data themselves.

:func:`fit_frame` models a frame as a sum of that PSF placed at given positions and solves
for every star's flux at once (blends included); with ``positions=True`` it also solves for
small shifts (a linearised, Gauss-Newton step), which measures positions to a small fraction
of a pixel. :func:`fit_shifts` does the same star by star on small windows, vectorised over
the frames of a chunk, with neighbours modelled iteratively: the tracker's 40x faster form
(1000 frames of 9 stars in about 0.7 s).
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

    BANK_PAD = 24
    """Zero pixels about each stamp of the phase bank from the start: the tracker's 25 px
    windows (:func:`fit_shifts`) read past a stamp without the bank being copied."""

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
        s, gx, gy = self._phase_parts(fx, fy)
        return s, gx, gy

    def _phase_parts(self, fx: float, fy: float) -> NDArray:
        """:meth:`phase_stamp` as one (3, size, size) view of the phase bank."""
        kx, ky = int(round(fx * self.oversample)), int(round(fy * self.oversample))
        bank, row = self.phase_bank(np.array([kx]), np.array([ky]))
        pad = self.bank_pad
        return bank[row[0], :, pad:pad + self.size, pad:pad + self.size]

    def phase_bank(self, kx: NDArray, ky: NDArray, pad: int = 0) -> tuple[NDArray, NDArray]:
        """Stamps and x/y gradients of phase keys (kx, ky) [1/oversample px], filled as
        phases are used, and the row of each key (same shape as the keys).

        The bank is one array (n_phases + 1, 3, size + 2 p, size + 2 p) (stamp, d/dx, d/dy)
        with at least ``pad`` zero pixels about each stamp (p >= pad, so windows reaching
        past a stamp read zeros) and a last phase of zeros only (for windows beyond it).
        """
        from scipy import ndimage  # lazy: keeps factor jobs' imports light

        self._ensure_bank(max(pad, self.BANK_PAD))
        bank, filled, p = self._cache["bank"], self._cache["filled"], self._cache["pad"]
        n_keys = self.oversample + 1  # keys -oversample/2 .. +oversample/2
        half = self.oversample // 2
        row = (np.asarray(ky) + half) * n_keys + (np.asarray(kx) + half)
        for r in np.unique(row[~filled[row]]):
            shift_x = (r % n_keys - half) / self.oversample
            shift_y = (r // n_keys - half) / self.oversample
            # = ndimage.shift(self.stamp, ..., order=3, mode="constant"), with the spline
            # coefficients computed once for every phase
            s = ndimage.shift(self._spline(), (shift_y, shift_x), order=3, mode="constant",
                              prefilter=False)
            gy, gx = np.gradient(s)
            bank[r, :, p:p + self.size, p:p + self.size] = s, gx, gy
            filled[r] = True
        return bank, row

    def _spline(self) -> NDArray:
        """Cubic spline coefficients of the stamp (what ``ndimage.shift`` prefilters)."""
        from scipy import ndimage  # lazy: keeps factor jobs' imports light

        if "spline" not in self._cache:
            self._cache["spline"] = ndimage.spline_filter(self.stamp, 3, output=np.float64,
                                                          mode="constant")
        return self._cache["spline"]

    @property
    def bank_pad(self) -> int:
        """Zero pixels about each stamp of the phase bank (see :meth:`phase_bank`)."""
        return 0 if self._cache is None else self._cache["pad"]

    def _ensure_bank(self, pad: int) -> None:
        """Allocate the phase bank with at least ``pad`` zero pixels about each stamp,
        keeping the phases filled so far (a wider pad copies them once)."""
        n_phases = (self.oversample + 1) ** 2
        if self._cache is not None and self._cache["pad"] >= pad:
            return
        side = self.size + 2 * pad
        # np.zeros: pages of unused phases are never touched, so cost no memory
        bank = np.zeros((n_phases + 1, 3, side, side))
        filled = np.zeros(n_phases, dtype=bool)
        if self._cache is not None:
            old, p = self._cache["bank"], self._cache["pad"]
            filled = self._cache["filled"]
            bank[:-1, :, pad:pad + self.size, pad:pad + self.size][filled] = \
                old[:-1, :, p:p + self.size, p:p + self.size][filled]
        self._cache = {**(self._cache or {}), "bank": bank, "filled": filled, "pad": pad}

    def render(self, x: float, y: float, blur: NDArray | None = None, gradients: bool = True
               ) -> tuple[NDArray, NDArray | None, NDArray | None, int, int]:
        """Unit-flux image of a star at (x, y) on a stamp, with gradients and its origin.

        ``blur``: optional (m, 2) offsets [pixel] averaged over (rotational blur during the
        exposure). Returns (stamp, d/dx, d/dy, ix0, iy0); the gradients are None unless
        ``gradients``.
        """
        ix, iy = int(np.floor(x + 0.5)), int(np.floor(y + 0.5))
        offsets = np.zeros((1, 2)) if blur is None else np.asarray(blur)
        parts = 3 if gradients else 1
        acc = np.zeros((parts, self.size, self.size))
        for ox, oy in offsets:
            sx, sy = x + ox - ix, y + oy - iy
            jx, jy = int(np.floor(sx + 0.5)), int(np.floor(sy + 0.5))
            acc += _roll_zero(self._phase_parts(sx - jx, sy - jy)[:parts], jx, jy)
        acc /= len(offsets)
        gx, gy = (acc[1], acc[2]) if gradients else (None, None)
        return acc[0], gx, gy, ix - self.radius, iy - self.radius


def _roll_zero(a: NDArray, dx: int, dy: int) -> NDArray:
    """Shift an array by whole pixels along its last two axes, filling with zeros (no
    wrap-around)."""
    if dx == 0 and dy == 0:
        return a
    # a copy and a contiguous add beat one strided in-place add 1.5x
    out = np.zeros_like(a)
    h, w = a.shape[-2:]
    ys, yd = (slice(0, h - dy), slice(dy, h)) if dy >= 0 else (slice(-dy, h), slice(0, h + dy))
    xs, xd = (slice(0, w - dx), slice(dx, w)) if dx >= 0 else (slice(-dx, w), slice(0, w + dx))
    out[..., yd, xd] = a[..., ys, xs]
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
                                         None if blur is None else blur[j], gradients=positions)
        ys, xs = max(iy0, 0), max(ix0, 0)
        ye, xe = min(iy0 + psf.size, ny), min(ix0 + psf.size, nx)
        if ys >= ye or xs >= xe:
            stamps.append(None)
            continue
        sl = (slice(ys - iy0, ye - iy0), slice(xs - ix0, xe - ix0))
        stamps.append(((ys, ye, xs, xe), s[sl]) + ((gx[sl], gy[sl]) if positions else ()))
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
        (ys, ye, xs, xe), s = item[:2]
        flat = (np.arange(ys, ye)[:, None] * nx + np.arange(xs, xe)[None, :]).ravel()
        rows = index[flat]
        keep = rows >= 0
        design[rows[keep], j * per_star] = s.ravel()[keep]
        if positions:
            # d/d(shift) of f * T(p - shift) = -f * grad T
            gx, gy = item[2:]
            design[rows[keep], j * per_star + 1] = -gx.ravel()[keep]
            design[rows[keep], j * per_star + 2] = -gy.ravel()[keep]
    data = image.ravel()[pix]
    use = np.ones(len(pix), dtype=bool)
    solution = np.zeros(n * per_star)
    err = np.full(n * per_star, np.inf)
    model = data  # the weights' model: the data until there is a solution
    for _ in range(2):
        weight = 1.0 / (np.abs(model) + variance_floor)
        root = np.sqrt(weight)
        a = _scaled_columns(design, root, None if use.all() else np.flatnonzero(use))
        b = data[use] * root[use]
        # columns with a nonzero (not NaN) entry; no temporary |a|
        live = (a.max(axis=0, initial=0.0) > 0) | (a.min(axis=0, initial=0.0) < 0)
        # normal equations: the matrix is tiny (3 columns a star) and its inverse gives the
        # errors too; 10-50x faster than an SVD of the tall design matrix
        a_live = a if live.all() else a[:, live]
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
        fitted = design @ solution
        model = fitted if solution.any() else data
        resid = (data - fitted) * root
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


def _scaled_columns(design: NDArray, scale: NDArray, rows: NDArray | None = None) -> NDArray:
    """``design[rows] * scale[rows, None]`` (all rows by default) column-major, as a column
    selection of it would be (the same numbers for BLAS, with no copy when every column is
    kept); in blocks of rows, so the transposition stays in the CPU cache (2.5x faster for
    60 columns)."""
    n_rows = len(design) if rows is None else len(rows)
    out = np.empty((n_rows, design.shape[1]), order="F")
    step = 4096 if design.shape[1] > 16 else max(n_rows, 1)
    for start in range(0, n_rows, step):
        block = slice(start, start + step)
        pick = block if rows is None else rows[block]
        np.multiply(design[pick], scale[pick, None], out=out[block])
    return out


# ----------------------------------------------------------------------------------------
# star by star, vectorised over frames (the dynam tracker)
# ----------------------------------------------------------------------------------------

def _split(p: NDArray, oversample: int) -> tuple[NDArray, NDArray]:
    """Nearest whole pixel and sub-pixel phase key (as :meth:`EmpiricalPsf.phase_stamp`)."""
    whole = np.floor(p + 0.5).astype(np.int64)
    return whole, np.rint((p - whole) * oversample).astype(np.int64)


def window_templates(psf: EmpiricalPsf, x: NDArray, y: NDArray, ix: NDArray, iy: NDArray,
                     half: int) -> NDArray:
    """Unit-flux PSF of a star at (x, y) and its x/y gradients sampled on the
    (2 half + 1)^2 window centred on pixel (ix, iy) [pixel]: (..., 3, w, w) for arguments
    broadcasting to shape (...); zero where the window is beyond the PSF stamp."""
    windows, index = _window_index(psf, x, y, ix, iy, half)
    return windows[index]


def _window_index(psf: EmpiricalPsf, x: NDArray, y: NDArray, ix: NDArray, iy: NDArray,
                  half: int) -> tuple[NDArray, tuple]:
    """The phase bank as a view of every (3, w, w) window, and the index into it of the
    windows of :func:`window_templates` (indexing part of it gives part of the windows)."""
    x, y, ix, iy = np.broadcast_arrays(np.asarray(x, float), np.asarray(y, float),
                                       np.asarray(ix), np.asarray(iy))
    w = 2 * half + 1
    jx, kx = _split(x, psf.oversample)
    jy, ky = _split(y, psf.oversample)
    bank, row = psf.phase_bank(kx, ky, pad=w - 1)
    pad = psf.bank_pad
    # window origins in the padded bank; those in [first, last] overlap the stamp
    oy = psf.radius + (iy - jy) - half + pad
    ox = psf.radius + (ix - jx) - half + pad
    first, last = pad - (w - 1), pad + psf.size - 1
    away = (oy < first) | (oy > last) | (ox < first) | (ox > last)
    row = np.where(away, len(bank) - 1, row)  # the all-zero phase
    # gathering whole (3, w, w) blocks is 3-5x faster than pixel by pixel
    windows = np.lib.stride_tricks.sliding_window_view(bank, (w, w), axis=(2, 3))
    return windows, (row, slice(None), np.clip(oy, first, last), np.clip(ox, first, last))


def _designs(templates: NDArray) -> NDArray:
    """Design matrices (..., 3, p) of a linearised fit from :func:`window_templates`
    (..., 3, w, w): columns T, dT/dx, dT/dy, for unknowns (f, -f dx, -f dy) of
    f * T(p - shift) (the sign on the unknowns, not on the large templates)."""
    *lead, _, h, w = templates.shape
    return templates.reshape(*lead, 3, h * w)


def _apply(design: NDArray, sol: NDArray) -> NDArray:
    """Model design @ sol: design (..., 3, p), sol (..., 3) -> (..., p)."""
    return (sol[..., None, :] @ design)[..., 0, :]


def _solve3(design: NDArray, data: NDArray, weight: NDArray) -> tuple[NDArray, NDArray]:
    """Weighted least squares with 3 unknowns for every leading index: design (..., 3, p),
    data and weight (..., p). Returns solutions (..., 3) and their variances (..., 3); NaN
    where singular."""
    aw = design * weight[..., None, :]
    normal = aw @ np.swapaxes(design, -1, -2)
    rhs = (aw @ data[..., None])[..., 0]
    return _solve_symmetric3(normal, rhs)


def _solve_symmetric3(normal: NDArray, rhs: NDArray) -> tuple[NDArray, NDArray]:
    """Solutions of ``normal @ sol = rhs`` for positive semi-definite (..., 3, 3) matrices
    (their upper triangles are used) and (..., 3) right-hand sides, and the diagonals of
    the inverses; NaN where singular. Cofactors: 3x faster than LAPACK on many tiny
    systems."""
    a, b, c = normal[..., 0, 0], normal[..., 0, 1], normal[..., 0, 2]
    d, e, f = normal[..., 1, 1], normal[..., 1, 2], normal[..., 2, 2]
    c00, c01, c02 = d * f - e * e, c * e - b * f, b * e - c * d
    c11, c12, c22 = a * f - c * c, b * c - a * e, a * d - b * b
    det = a * c00 + b * c01 + c * c02
    # (the largest entry of a positive semi-definite matrix is on its diagonal)
    ok = det > 1e-300 * np.maximum(np.maximum(a, d), f) ** 3
    inv_det = 1.0 / np.where(ok, det, np.nan)
    r0, r1, r2 = rhs[..., 0], rhs[..., 1], rhs[..., 2]
    sol, var = np.empty(rhs.shape), np.empty(rhs.shape)
    sol[..., 0] = (c00 * r0 + c01 * r1 + c02 * r2) * inv_det
    sol[..., 1] = (c01 * r0 + c11 * r1 + c12 * r2) * inv_det
    sol[..., 2] = (c02 * r0 + c12 * r1 + c22 * r2) * inv_det
    var[..., 0], var[..., 1], var[..., 2] = c00 * inv_det, c11 * inv_det, c22 * inv_det
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
    data, valid = _data_windows(np.asarray(frames, dtype=float), ix - half, iy - half, size)
    own = _own_designs(psf, x, y, ix, iy, half, blur)
    # neighbours' PSF (and gradients) on each star's window, by frame: pair q (star pj[q]'s
    # window, star pm[q]'s light) in rows 3q..3q+2; one gather, one allocation (page faults)
    close = np.hypot(x[:, None] - x[None], y[:, None] - y[None]).min(axis=2)
    pj, pm = np.nonzero((close < neighbour_distance) & ~np.eye(n_stars, dtype=bool))
    pairs = _designs(window_templates(psf, x[pm].T, y[pm].T, ix[pj].T, iy[pj].T, half))
    pairs = pairs.reshape(n, 3 * len(pj), size * size)
    bounds = np.searchsorted(pj, np.arange(n_stars + 1))
    # star by star: one star's arrays fit in the CPU cache, all stars' would not (1.5x)
    sol = np.zeros((n_stars, n, 3))
    var = np.full((n_stars, n, 3), np.inf)
    use = valid.copy()
    weigh = use.astype(float)  # 1 on the pixels used, 0 elsewhere
    for sweep in range(sweeps):
        clean = np.nan_to_num(sol)
        new_sol, new_var = np.empty_like(sol), np.empty_like(var)
        for j in range(n_stars):
            if sweep == 0:  # nothing fitted yet: no neighbour light, the data as the model
                target, variance = data[j], np.abs(data[j]) + floor
            else:
                mine = slice(bounds[j], bounds[j + 1])
                others = _apply(pairs[:, 3 * mine.start:3 * mine.stop],
                                clean[pm[mine]].swapaxes(0, 1).reshape(n, -1))
                target = data[j] - others
                fitted = _apply(own[j], clean[j])
                variance = np.abs(fitted + others) + floor
                if sweep == sweeps - 1:
                    resid = (target - fitted) / np.sqrt(variance)
                    use[j] = valid[j] & (np.abs(resid) <= clip)
                    weigh[j] = use[j]
            new_sol[j], new_var[j] = _solve3(own[j], target, weigh[j] / variance)
        sol, var = new_sol, new_var
    flux = sol[:, :, 0]
    with np.errstate(divide="ignore", invalid="ignore"):
        dx = np.where(flux > 0, -sol[:, :, 1] / flux, 0.0)
        dy = np.where(flux > 0, -sol[:, :, 2] / flux, 0.0)
        covered = np.array([(d[:, 0] * ok).sum(axis=-1) / d[:, 0].sum(axis=-1)
                            for d, ok in zip(own, valid)])
    return ShiftFit(np.nan_to_num(flux), np.sqrt(np.nan_to_num(var[:, :, 0], nan=np.inf)),
                    np.nan_to_num(dx), np.nan_to_num(dy), np.nan_to_num(covered))


def _data_windows(frames: NDArray, ix0: NDArray, iy0: NDArray, size: int
                  ) -> tuple[NDArray, NDArray]:
    """Pixels (n_stars, n, size^2) of the size x size windows with origins (ix0, iy0)
    (n_stars, n) in frames (n, H, W), NaN and beyond-edge pixels as 0, and which are
    valid."""
    n_stars, n = ix0.shape
    height, width = frames.shape[-2:]
    if ((ix0 >= 0) & (iy0 >= 0) & (ix0 + size <= width) & (iy0 + size <= height)).all():
        # whole windows gathered as blocks: 10x faster than pixel by pixel
        windows = np.lib.stride_tricks.sliding_window_view(frames, (size, size), axis=(1, 2))
        data = windows[np.arange(n), iy0, ix0]
    else:
        data = np.stack([cutouts(frames, ix0[j], iy0[j], (size, size))
                         for j in range(n_stars)])
    data = data.reshape(n_stars, n, size * size)
    valid = np.isfinite(data)
    data[~valid] = 0.0
    return data, valid


def _own_designs(psf: EmpiricalPsf, x: NDArray, y: NDArray, ix: NDArray, iy: NDArray,
                 half: int, blur: NDArray | None) -> list[NDArray]:
    """Each star's design on its own window, (n, 3, p) a star; with ``blur``
    (m, n_stars, n, 2) [pixel] the mean of the templates over the m offsets."""
    if blur is None:
        return list(_designs(window_templates(psf, x, y, ix, iy, half)))
    windows, (row, _, oy, ox) = _window_index(psf, x + blur[..., 0], y + blur[..., 1],
                                              ix, iy, half)
    out = []
    for j in range(x.shape[0]):
        # offset by offset into one sum: the (n, 3, w, w) terms stay in the CPU cache
        acc = windows[row[0, j], :, oy[0, j], ox[0, j]]
        for i in range(1, len(blur)):
            acc += windows[row[i, j], :, oy[i, j], ox[i, j]]
        acc /= len(blur)
        out.append(_designs(acc))
    return out
