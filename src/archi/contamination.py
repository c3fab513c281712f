"""The neighbours' light: a model of the whole field, frame by frame, and what it puts into
each star's aperture.

CHEOPS's PSF is fixed on the detector while the field turns about the target, so the light a
neighbour sheds into a star's aperture changes with the roll. The field model places the
visit's empirical PSF (:class:`archi.fieldmodel.EmpiricalPsf`) at every star's tracked
position in every frame (rotational blur within the exposure included), scaled by the
star's flux fitted on the images. For star ``j`` and aperture ``A_j``:

    FLUX_RAW_j = A_j(data)
    CONTA_j    = A_j(model) - A_j(model of star j alone)      the neighbours' light [e]
    FLUX_j     = FLUX_RAW_j - CONTA_j = A_j(data - model) + A_j(model of star j alone)

The last form is what the factor search measures: one pass over the residual cube
``data - model`` serves every star and radius (:class:`ResidualCube`), and the star's own
modelled light is added back per frame (:func:`own_light`), so a wrong own flux cancels.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace

import numpy as np
from numba import njit
from numpy.typing import NDArray

from archi.fieldmodel import fit_frame
from archi.geometry import (FIELD_CENTRE, FIELD_RADIUS, predicted_positions, roll_per_exposure,
                            sky_offsets)
from archi.psf import EmpiricalPsf, rotational_blur
from archi.photometry import aperture_photometry, noise_per_pixel
from archi.stars import StarList, Tracks
from archi.visit import Visit

FLUX_SAMPLE_FRAMES = 24
"""Frames spread over the visit on which every star's flux is fitted (median taken)."""

BLUR_STEP = 2.0
"""Rotational blur: the arc a star sweeps in one exposure is sampled every this many
pixels (the PSF's core is ~8 px wide: finer samples change the model by < 0.1 %)."""

PSF_RADIUS = 70
"""Radius of the field model's PSF stamp [pixel]. Wide: a bright target's halo reaches
its neighbours' apertures (60 px left 1 % errors in the light 20-30 px out on the crowded
test scene, 70 px 0.4 %)."""

PSF_FRAMES = 25
"""Frames (spread over the visit, so over many roll angles) whose median is the PSF."""

PSF_ITERATIONS = 4
"""Times the PSF is rebuilt with the neighbours' model subtracted (on the crowded test scene
the light a 10 px circle 22 px from a star gets from it is off by 14 %, 10 %, 3 %, 0.7 %
and 0.1 % after 0-4 rebuilds)."""

MIN_COVERED = 0.3
"""A star's flux is fitted when at least this fraction of its PSF falls on the field;
beyond, it comes from its catalogue magnitude (stars outside the field)."""


@dataclass(frozen=True)
class FieldModel:
    """Every star of the field as the visit's PSF scaled by a flux, frame by frame.

    ``x``, ``y``: positions (n_stars, n_frames) [pixel]; ``flux``: electrons per stacked
    image (n_stars,) or (n_stars, n_frames); ``droll_deg``: the roll change during one
    exposure (rotational blur about the target at ``target_x``, ``target_y``).
    """

    psf: EmpiricalPsf
    x: NDArray[np.float64]
    y: NDArray[np.float64]
    flux: NDArray[np.float64]
    target_x: NDArray[np.float64]
    target_y: NDArray[np.float64]
    droll_deg: float
    shape: tuple[int, int] = (200, 200)
    usable: NDArray[np.bool_] | None = None  # pixels the images hold (NaN elsewhere)
    _cache: dict = field(default_factory=dict, init=False, repr=False, compare=False)

    def _stamps(self, kx: NDArray, ky: NDArray) -> tuple[NDArray, NDArray, int]:
        """The PSF's stamps at every sub-pixel phase (float32, one contiguous bank: the
        kernel reads them in any order), the bank rows of phase keys (kx, ky), and the
        zero pixels about each stamp."""
        if "stamps" not in self._cache:
            keys = np.arange(-(self.psf.oversample // 2), self.psf.oversample // 2 + 1)
            kxx, kyy = np.meshgrid(keys, keys)
            bank, _ = self.psf.phase_bank(kxx.ravel(), kyy.ravel())
            self._cache["stamps"] = np.ascontiguousarray(bank[:, 0], dtype=np.float32)
            self._cache["pad"] = self.psf.bank_pad
        n_keys = self.psf.oversample + 1
        half = self.psf.oversample // 2
        rows = ((ky + half) * n_keys + (kx + half)).astype(np.int64)
        return self._cache["stamps"], rows, self._cache["pad"]

    @property
    def n_stars(self) -> int:
        return self.x.shape[0]

    @property
    def n_frames(self) -> int:
        return self.x.shape[1]

    def star_flux(self, frames: slice | NDArray) -> NDArray[np.float64]:
        """Fluxes (n_stars, n) of the frames ``frames`` (a slice or frame indices)."""
        f = np.asarray(self.flux, dtype=float)
        index = np.arange(self.n_frames)[frames]
        return np.repeat(f[:, None], len(index), axis=1) if f.ndim == 1 else f[:, index]

    def render(self, frames: slice | NDArray, stars: Sequence[int] | None = None,
               origin: tuple[NDArray, NDArray] | None = None,
               shape: tuple[int, int] | None = None) -> NDArray[np.float64]:
        """Model images (n, H, W) [e] of ``frames`` (a slice or frame indices), of ``stars``
        (all by default); NaN where the images hold no data.

        ``origin`` (x0, y0) per frame and ``shape``: render patches of the frames instead
        (pixel (i, j) of patch k is pixel (y0[k] + i, x0[k] + j) of frame k)."""
        stars = np.arange(self.n_stars) if stars is None else np.asarray(stars, dtype=int)
        index = np.arange(self.n_frames)[frames]
        out = np.zeros((len(index),) + (shape or self.shape))
        if len(stars) == 0 or len(index) == 0:
            return out
        x, y = self.x[stars][:, index], self.y[stars][:, index]
        flux = self.star_flux(index)[stars]
        blur = rotational_blur(x, y, self.target_x[index], self.target_y[index],
                               self.droll_deg, step=BLUR_STEP)
        offsets = np.zeros((1,) + x.shape + (2,)) if blur is None else blur
        m = offsets.shape[0]
        # frame by frame (frame, star, blur sample): one frame's image stays in the cache
        offsets = offsets.transpose(2, 1, 0, 3)
        px = (x.T[:, :, None] + offsets[..., 0]).ravel()
        py = (y.T[:, :, None] + offsets[..., 1]).ravel()
        weight = np.broadcast_to(flux.T[:, :, None] / m, offsets.shape[:-1]).ravel()
        frame = np.broadcast_to(np.arange(len(index))[:, None, None], offsets.shape[:-1]).ravel()
        usable = np.isfinite(px) & np.isfinite(py) & np.isfinite(weight) & (weight != 0)
        px, py, weight, frame = px[usable], py[usable], weight[usable], frame[usable]
        # the four phases of the PSF's bank about each position, bilinearly weighted: a star
        # moving by a hundredth of a pixel moves its modelled light too (the nearest phase
        # alone would place it up to 1/(2 oversample) pixel off)
        (ix, kx, wx), (iy, ky, wy) = (_phase_pairs(p, self.psf.oversample) for p in (px, py))
        ix, kx, wx = (np.repeat(a, 2, axis=0).ravel() for a in (ix, kx, wx))
        iy, ky, wy = (np.tile(a, (2, 1)).ravel() for a in (iy, ky, wy))
        weight, frame = np.tile(weight, 4) * wx * wy, np.tile(frame, 4)
        if origin is not None:
            ix = ix - np.asarray(origin[0])[frame]
            iy = iy - np.asarray(origin[1])[frame]
        stamps, rows, pad = self._stamps(kx, ky)
        _add_stamps(out, stamps, rows, ix - self.psf.radius - pad,
                    iy - self.psf.radius - pad, weight.astype(np.float64),
                    frame.astype(np.int64), pad, self.psf.size)
        if self.usable is not None:
            _blank_unusable(out, self.usable, origin)
        return out


def _blank_unusable(images: NDArray, usable: NDArray, origin) -> None:
    """NaN on the pixels of ``images`` (frames, or patches with corners ``origin``) that
    the data do not hold, so that sums over the model and the data cover the same pixels."""
    if origin is None:
        images[:, ~usable] = np.nan
        return
    height, width = images.shape[1:]
    padded = np.pad(usable, ((height, height), (width, width)), constant_values=False)
    for k, (x0, y0) in enumerate(zip(*origin)):
        patch = padded[y0 + height:y0 + 2 * height, x0 + width:x0 + 2 * width]
        images[k][~patch] = np.nan


@njit(cache=True)
def _add_stamps(out, bank, rows, ix0, iy0, weight, frame, pad, size):  # pragma: no cover
    """out[frame[q]] += weight[q] * stamp of phase row ``rows[q]`` of the PSF's phase bank
    (its stamps, the ``size`` pixels after ``pad``), the bank's corner at (ix0, iy0)."""
    height, width = out.shape[1], out.shape[2]
    for q in range(rows.shape[0]):
        f, w = frame[q], weight[q]
        s = bank[rows[q]]
        y_lo, y_hi = max(pad, -iy0[q]), min(pad + size, height - iy0[q])
        x_lo, x_hi = max(pad, -ix0[q]), min(pad + size, width - ix0[q])
        for a in range(y_lo, y_hi):
            row = iy0[q] + a
            for b in range(x_lo, x_hi):
                out[f, row, ix0[q] + b] += w * s[a, b]


def _phase_pairs(p: NDArray, oversample: int) -> tuple[NDArray, NDArray, NDArray]:
    """The two phase-bank keys bracketing positions ``p`` [pixel]: whole pixels and keys
    (in [-oversample/2, oversample/2)) and their linear weights, each (2, len(p))."""
    steps = p * oversample
    low = np.floor(steps)
    keys = np.stack([low, low + 1]).astype(np.int64)
    pixel = np.floor_divide(keys + oversample // 2, oversample)
    frac = steps - low
    return pixel, keys - pixel * oversample, np.stack([1.0 - frac, frac])


class ResidualCube:
    """``cube - model`` (of ``stars``, all by default) read like the cube: a frame index or a
    slice of frames, rendered as it is read.

    ``cosmics``: hits replaced in the data as they are read. With ``sky=True`` each frame's
    median residual over its usable pixels is removed too:
    the DRP estimates the background on pixels where the stars' halos still shed light,
    so it subtracts a little too much (measured on the demo: ~50 e per pixel)."""

    def __init__(self, cube: NDArray, model: FieldModel, stars: Sequence[int] | None = None,
                 sky: bool = True, cosmics=None):
        self.cube = cube
        self.cosmics = cosmics
        self.model = model
        self.stars = stars
        self.sky = sky
        self.shape = cube.shape
        self.sky_values = np.zeros(cube.shape[0])  # filled as frames are read

    def __len__(self) -> int:
        return self.shape[0]

    def __getitem__(self, frames: int | slice) -> NDArray[np.float64]:
        if not isinstance(frames, slice):
            k = int(frames)
            return self[k:k + 1][0]
        data = np.array(self.cube[frames], dtype=float)
        if self.cosmics is not None:  # the data's hits, before the model is subtracted
            self.cosmics.patch(data, frames.indices(len(self))[0])
        residual = data - self.model.render(frames, self.stars)
        if self.sky:
            level = sky_residual(residual)
            self.sky_values[frames] = level
            residual -= level[:, None, None]
        return residual


def sky_residual(residual: NDArray) -> NDArray[np.float64]:
    """Per frame of ``residual`` (n, H, W) = data - field model: the median over usable
    pixels, the level the DRP's background subtraction left (0 for a frame without any)."""
    flat = residual.reshape(len(residual), -1)
    with np.errstate(all="ignore"):
        import warnings
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            return np.nan_to_num(np.nanmedian(flat, axis=1))


def fit_fluxes(visit: Visit, x: NDArray, y: NDArray, psf: EmpiricalPsf, droll_deg: float,
               n_frames: int = FLUX_SAMPLE_FRAMES, cube=None) -> tuple[NDArray, NDArray]:
    """Every star's flux [e per stacked image] and the fraction of its PSF on the field's
    pixels: a simultaneous PSF fit of all stars at positions (x, y) (n_stars, n_frames) on
    ``n_frames`` frames spread over the visit, medians taken."""
    index = np.unique(np.linspace(0, visit.n_frames - 1, min(n_frames, visit.n_frames))
                      .astype(int))
    variance = noise_per_pixel(visit)
    cube = visit.cube if cube is None else cube
    fluxes = np.full((len(index), x.shape[0]), np.nan)
    covered = np.zeros_like(fluxes)
    for row, k in enumerate(index):
        ok = np.isfinite(x[:, k]) & np.isfinite(y[:, k])
        blur = rotational_blur(x[ok, k:k + 1], y[ok, k:k + 1], visit.target_x[k:k + 1],
                               visit.target_y[k:k + 1], droll_deg)
        per_star = None if blur is None else [blur[:, j, 0, :] for j in range(int(ok.sum()))]
        fit = fit_frame(np.asarray(cube[k], dtype=float), x[ok, k], y[ok, k], psf,
                        variance_floor=float(variance[k]), blur=per_star)
        fluxes[row, ok], covered[row, ok] = fit.flux, fit.covered
    with np.errstate(all="ignore"):
        return np.nanmedian(fluxes, axis=0), np.median(covered, axis=0)


class _SkyCorrected:
    """The cube minus the model of ``stars`` and minus each frame's sky residual (measured
    against the whole model), read frame by frame: what the PSF and the fluxes are fitted
    on from the second iteration on."""

    def __init__(self, cube: NDArray, model: FieldModel, stars: Sequence[int]):
        self.cube, self.model, self.stars = cube, model, list(stars)
        self.shape = cube.shape

    def __getitem__(self, k: int) -> NDArray[np.float64]:
        frame = np.asarray(self.cube[k], dtype=float)
        whole = self.model.render(slice(k, k + 1))[0]
        sky = sky_residual((frame - whole)[None])[0]
        part = self.model.render(slice(k, k + 1), self.stars)[0] if self.stars else 0.0
        return frame - part - sky


def _catalogue_extras(visit: Visit, stars: StarList, reach: float
                      ) -> tuple[NDArray, NDArray, NDArray]:
    """Catalogue stars not among ``stars`` whose light can reach the field (within
    ``reach`` pixels of the field's edge at some frame): positions (m, n_frames) from the
    catalogue and the roll, and their magnitudes."""
    cat = visit.catalogue
    if cat is None or len(cat) == 0:
        empty = np.zeros((0, visit.n_frames))
        return empty, empty, np.zeros(0)
    rows = np.setdiff1d(np.arange(len(cat)), stars.catalogue_row[stars.catalogue_row >= 0])
    dx, dy = sky_offsets(cat.ra[rows], cat.dec[rows], cat.ra[0], cat.dec[0])
    x, y = predicted_positions(visit, dx, dy, np.arange(visit.n_frames))
    near = (np.hypot(x - FIELD_CENTRE[0], y - FIELD_CENTRE[1])
            <= FIELD_RADIUS + reach).any(axis=1) & np.isfinite(cat.mag[rows])
    return x[near], y[near], cat.mag[rows][near]


def _model_fluxes(fitted: NDArray, covered: NDArray, mag: NDArray, target_flux: float,
                  target_mag: float) -> NDArray:
    """Fitted fluxes where enough of a star's PSF is on the field, else (stars outside it)
    the target's flux scaled by the catalogue magnitudes; never negative."""
    from_mag = target_flux * 10 ** (-0.4 * (mag - target_mag))
    use_fit = (covered >= MIN_COVERED) & np.isfinite(fitted)
    flux = np.where(use_fit, fitted, np.where(np.isfinite(from_mag), from_mag, 0.0))
    return np.clip(np.nan_to_num(flux), 0.0, None)


def field_model(visit: Visit, stars: StarList, tracks: Tracks,
                psf: EmpiricalPsf | None = None, iterations: int = PSF_ITERATIONS,
                psf_radius: int = PSF_RADIUS, psf_frames: int = PSF_FRAMES) -> FieldModel:
    """The field model of a visit: its tracked ``stars`` (rows 0..n-1, the same order) and
    every other catalogue star whose light can reach the field (after them), fluxes fitted
    on the images.

    The visit's PSF is the median of target-centred cut-outs at many roll angles; the
    neighbours' halos, present at every roll, would stay in its wings (measured on the demo:
    twice the true light 30-60 px out). So the PSF is rebuilt ``iterations`` times from
    the frames with every other star's model subtracted.
    """
    droll = roll_per_exposure(visit)
    usable = np.isfinite(np.asarray(visit.cube[0]))
    psf = psf or EmpiricalPsf.from_visit(visit, psf_radius, psf_frames)
    ex, ey, emag = _catalogue_extras(visit, stars, float(psf.radius))
    x, y = np.vstack([tracks.x, ex]), np.vstack([tracks.y, ey])
    mag = np.concatenate([stars.mag, emag])
    model = None
    sky_free = visit.cube
    for _ in range(iterations + 1):
        if model is not None:
            others = list(range(1, model.n_stars))
            cleaned = replace(visit, cube=_SkyCorrected(visit.cube, model, others))
            psf = EmpiricalPsf.from_visit(cleaned, psf_radius, psf_frames)
            sky_free = _SkyCorrected(visit.cube, model, [])
        fitted, covered = fit_fluxes(visit, x, y, psf, droll, cube=sky_free)
        target_mag = mag[0] if np.isfinite(mag[0]) else np.nan
        flux = _model_fluxes(fitted, covered, mag, float(fitted[0]), target_mag)
        model = FieldModel(psf, x, y, flux, visit.target_x, visit.target_y, droll,
                           tuple(visit.cube.shape[1:]), usable)
    return model


class _OneStarBoxes:
    """The model of one star alone on a box that follows it: frame k is the (size, size)
    patch with its corner at (``x0[k]``, ``y0[k]``), read like a cube."""

    def __init__(self, model: FieldModel, star: int, size: int):
        self.model, self.star, self.size = model, star, size
        self.x0 = np.floor(np.nan_to_num(model.x[star]) + 0.5).astype(np.int64) - size // 2
        self.y0 = np.floor(np.nan_to_num(model.y[star]) + 0.5).astype(np.int64) - size // 2
        self.shape = (model.n_frames, size, size)

    def __getitem__(self, frames: slice) -> NDArray[np.float64]:
        return self.model.render(frames, [self.star], origin=(self.x0[frames], self.y0[frames]),
                                 shape=(self.size, self.size))


def own_light(model: FieldModel, tracks: Tracks, apertures: Sequence, star: int,
              chunk_frames: int = 64) -> NDArray[np.float64]:
    """The modelled light of ``star`` alone in each of ``apertures`` (all centred on its
    track), per frame: (len(apertures), n_frames) [e]. Measured on a box that follows the
    star, with the same photometry as the data."""
    reach = max(_reach(a) for a in apertures)
    boxes = _OneStarBoxes(model, star, 2 * reach + 3)
    n = len(apertures)
    x = np.repeat(tracks.x[star][None] - boxes.x0[None], n, axis=0)
    y = np.repeat(tracks.y[star][None] - boxes.y0[None], n, axis=0)
    local = Tracks(x, y, np.repeat(tracks.measured[star][None], n, axis=0))
    return np.nan_to_num(aperture_photometry(boxes, local, list(apertures), chunk_frames).flux)


def _reach(aperture) -> int:
    """Pixels from the star's position to the farthest pixel the aperture can weigh."""
    radius = getattr(aperture, "radius", None)
    if radius is not None:
        return int(np.ceil(radius / getattr(aperture, "grid", 1))) + 2
    return int(np.ceil(getattr(aperture, "reach", 100)))


@dataclass(frozen=True)
class Decontaminated:
    """Per star and frame (n_stars, n_frames) [e]; ``sky`` per frame [e per pixel]."""

    flux: NDArray[np.float64]  # the star's own light: raw - conta - sky * area
    flux_raw: NDArray[np.float64]  # the aperture sum
    conta: NDArray[np.float64]  # the modelled neighbours' light in the aperture
    sky: NDArray[np.float64]  # the background level the DRP left in each frame


def decontaminate(cube: NDArray, model: FieldModel, tracks: Tracks, apertures: Sequence,
                  chunk_frames: int = 64, cosmics=None) -> Decontaminated:
    """Raw aperture sums, the neighbours' modelled light in them, and the star's own light
    (``cosmics``: hits replaced in the data as the photometry reads them)."""
    raw = aperture_photometry(cube, tracks, apertures, chunk_frames, cosmics)
    residual_cube = ResidualCube(cube, model, cosmics=cosmics)
    residual = aperture_photometry(residual_cube, tracks, apertures, chunk_frames).flux
    own = np.zeros_like(residual)
    for j, aperture in enumerate(apertures):
        if aperture is not None:
            own[j] = own_light(model, tracks, [aperture], j, chunk_frames)[0]
    flux = residual + own
    sky = residual_cube.sky_values
    return Decontaminated(flux, raw.flux, raw.flux - flux - sky[None, :] * raw.area, sky)


def star_fluxes(visit: Visit, tracks: Tracks, psf: EmpiricalPsf | None = None,
                n_frames: int = 8) -> NDArray[np.float64]:
    """Every tracked star's flux [e per stacked image], fitted with the visit's PSF on
    ``n_frames`` frames (0 where it cannot be fitted): one brightness scale for every star,
    whichever way it was found (catalogue or image)."""
    psf = psf or EmpiricalPsf.from_visit(visit)
    fitted, _ = fit_fluxes(visit, tracks.x, tracks.y, psf, roll_per_exposure(visit), n_frames)
    return np.clip(np.nan_to_num(fitted), 0.0, None)


def model_field(visit: Visit, stars: StarList, tracks: Tracks, options, cosmics=None,
                workers: int = 1) -> tuple[Tracks, FieldModel]:
    """The field model, and the tracks it makes possible.

    The PSF cleaned of the neighbours' light (:func:`field_model`) tracks the stars better
    than the first one: ``dynam`` stars are tracked again with it, then fixed in the turning
    field (:func:`archi.astrometry.rigid_tracks`, about the DRP's centroid of the target),
    and the fluxes fitted again at those positions."""
    from archi.astrometry import rigid_tracks
    from archi.track import track_stars

    first = field_model(visit, stars, tracks)
    if any(options.star_tracking(j) == "dynam" for j in range(stars.n_stars)):
        tracks = track_stars(visit, stars, options, psf=first.psf, cosmics=cosmics,
                             workers=workers)
        tracks = rigid_tracks(tracks, visit.roll_angle, visit.target_x, visit.target_y)
    return tracks, field_model(visit, stars, tracks, psf=first.psf, iterations=0)


CONTAMINATION_SAMPLE_FRAMES = 16
"""Frames spread over the visit on which each run's contamination is measured."""


def run_contamination(model: FieldModel, tracks: Tracks, stars: NDArray, apertures: Sequence,
                      measure: NDArray | None = None,
                      n_frames: int = CONTAMINATION_SAMPLE_FRAMES) -> NDArray[np.float64]:
    """Each run's neighbours' light over its own light in its aperture (row i: star
    ``stars[i]`` through ``apertures[i]``), the median of the ratio of the medians over
    ``n_frames`` frames spread over the visit; NaN for runs not to ``measure``."""
    index = np.unique(np.linspace(0, model.n_frames - 1, min(n_frames, model.n_frames))
                      .astype(int))
    sample = Tracks(tracks.x[stars][:, index], tracks.y[stars][:, index],
                    tracks.measured[stars][:, index])
    keep = np.ones(len(stars), bool) if measure is None else np.asarray(measure, bool)
    chosen = [a if k else None for a, k in zip(apertures, keep)]
    total = aperture_photometry(_Frames(model, index), sample, chosen).flux
    own = np.full_like(total, np.nan)
    sampled = _subset_frames(model, index)
    all_tracks = Tracks(tracks.x[:, index], tracks.y[:, index], tracks.measured[:, index])
    for j in np.unique(stars[keep]):
        rows = np.flatnonzero((stars == j) & keep)
        own[rows] = own_light(sampled, all_tracks, [apertures[i] for i in rows], int(j))
    with np.errstate(all="ignore"):
        ratio = np.nanmedian(total - own, axis=1) / np.nanmedian(own, axis=1)
    return np.where(keep, ratio, np.nan)


class _Frames:
    """The model at some frames of the visit (``index``), read like a cube of them."""

    def __init__(self, model: FieldModel, index: NDArray):
        self.model, self.index = model, index
        self.shape = (len(index),) + model.shape

    def __getitem__(self, frames: slice) -> NDArray[np.float64]:
        return self.model.render(self.index[frames])


def _subset_frames(model: FieldModel, index: NDArray) -> FieldModel:
    """The model of the frames ``index`` only."""
    flux = model.flux if np.ndim(model.flux) == 1 else model.flux[:, index]
    subset = replace(model, x=model.x[:, index], y=model.y[:, index], flux=flux,
                     target_x=model.target_x[index], target_y=model.target_y[index])
    subset._cache.update(model._cache)  # the same PSF: its stamps are shared
    return subset


def neighbours_light(model: FieldModel, tracks: Tracks, apertures: Sequence,
                     chunk_frames: int = 64) -> NDArray[np.float64]:
    """The neighbours' modelled light in each star's aperture (None: NaN), per frame:
    (n_stars, n_frames) [e]: the whole model's sum minus the star's own."""
    every = np.arange(model.n_frames)
    total = aperture_photometry(_Frames(model, every), tracks, apertures, chunk_frames).flux
    for j, aperture in enumerate(apertures):
        if aperture is not None:
            total[j] -= own_light(model, tracks, [aperture], j, chunk_frames)[0]
    return total
