"""Home of the field model and its images: every star of a visit as the visit's PSF scaled
by a flux, placed at its position in every frame (with the rotational blur of the
exposure), and the data minus that model, read like the cube.

CHEOPS's PSF is fixed on the detector while the field turns about the target, so the light
a neighbour sheds into a star's aperture changes with the roll; the model follows it frame
by frame. It is fitted to a visit by :mod:`archi.fieldfit` and measured in the stars'
apertures by :mod:`archi.contamination`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace

import numpy as np
from numba import njit
from numpy.typing import NDArray

from archi import parallel
from archi.medians import nanmedian_first
from archi.psf import EmpiricalPsf, rotational_blur

BLUR_STEP = 2.0
"""Rotational blur: the arc a star sweeps in one exposure is sampled every this many
pixels (the PSF's core is ~8 px wide: finer samples change the model by < 0.1 %)."""


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
    target_x: NDArray[np.float64]  # the point the field turns about [pixel]
    target_y: NDArray[np.float64]
    flux: NDArray[np.float64]
    droll_deg: float
    shape: tuple[int, int] = (200, 200)
    usable: NDArray[np.bool_] | None = None  # pixels the images hold (NaN elsewhere)
    # the whole model rendered once (n_frames, H, W) [e], float32, or None: later passes
    # over the visit (each factor of the search, the extraction) read it instead of
    # rendering it again
    images: NDArray[np.float32] | None = field(default=None, repr=False, compare=False)

    def _stamps(self, kx: NDArray, ky: NDArray) -> tuple[NDArray, NDArray, int]:
        """The PSF's stamps at every sub-pixel phase (float32, one contiguous bank: the
        kernel reads them in any order), the bank rows of phase keys (kx, ky), and the
        zero pixels about each stamp."""
        return self.psf.phase_stamps(), self.psf.phase_rows(kx, ky), 0

    @property
    def n_stars(self) -> int:
        """Stars in the model: the tracked ones first, then catalogue ones."""
        return len(self.x)

    @property
    def n_frames(self) -> int:
        return len(self.target_x)

    def rendered(self, chunk_frames: int = 64, workers: int = 1) -> FieldModel:
        """This model with :attr:`images` filled (rendered chunk by chunk; ``workers``:
        processes sharing the chunks, writing into one shared array)."""
        shape = (self.n_frames,) + self.shape
        images = (parallel.shared_empty(shape, np.float32) if workers > 1
                  else np.empty(shape, np.float32))

        def frames(first: int, stop: int) -> None:
            for start in range(first, stop, chunk_frames):
                sl = slice(start, min(start + chunk_frames, stop))
                images[sl] = self.render(sl)

        parallel.split_frames(frames, self.n_frames, chunk_frames, workers)
        return replace(self, images=images)

    def star_flux(self, frames: slice | NDArray) -> NDArray[np.float64]:
        """Fluxes (n_stars, n) of the frames ``frames`` (a slice or frame indices)."""
        f = np.asarray(self.flux, dtype=float)
        index = np.arange(self.n_frames)[frames]
        return np.repeat(f[:, None], len(index), axis=1) if f.ndim == 1 else f[:, index]

    def render(self, frames: slice | NDArray, stars: Sequence[int] | None = None,
               origin: tuple[NDArray, NDArray] | None = None,
               shape: tuple[int, int] | None = None, separate: bool = False
               ) -> NDArray[np.float64]:
        """Model images (n, H, W) [e] of ``frames`` (a slice or frame indices), of ``stars``
        (all by default); NaN where the images hold no data. ``separate``: each star on its
        own image, (n, n_stars, H, W), each exactly as rendered alone (one pass over the
        stamps for all of them).

        ``origin`` (x0, y0) per frame and ``shape``: render patches of the frames instead
        (pixel (i, j) of patch k is pixel (y0[k] + i, x0[k] + j) of frame k)."""
        if self.images is not None and stars is None and origin is None and not separate:
            return np.asarray(self.images[frames], dtype=np.float64)
        stars = np.arange(self.n_stars) if stars is None else np.asarray(stars, dtype=int)
        index = np.arange(self.n_frames)[frames]
        layers = len(stars) if separate else 1
        out = np.zeros((len(index) * layers,) + (shape or self.shape))
        if len(stars) == 0 or len(index) == 0:
            return out.reshape((len(index), len(stars)) + out.shape[1:]) if separate else out
        if separate:  # frame k's star j on image k * n_stars + j
            parts = [self._samples(index, stars[j:j + 1]) for j in range(layers)]
            px, py, weight = (np.concatenate([p[i] for p in parts]) for i in range(3))
            frame = np.concatenate([p[3] * layers + j for j, p in enumerate(parts)])
        else:
            px, py, weight, frame = self._samples(index, stars)
        # the four phases of the PSF's bank about each position, bilinearly weighted: a star
        # moving by a hundredth of a pixel moves its modelled light too (the nearest phase
        # alone would place it up to 1/(2 oversample) pixel off)
        (ix, kx, wx), (iy, ky, wy) = (_phase_pairs(p, self.psf.oversample) for p in (px, py))
        ix, kx, wx = (np.repeat(a, 2, axis=0).ravel() for a in (ix, kx, wx))
        iy, ky, wy = (np.tile(a, (2, 1)).ravel() for a in (iy, ky, wy))
        weight, frame = np.tile(weight, 4) * wx * wy, np.tile(frame, 4)
        if origin is not None:
            ix = ix - np.asarray(origin[0])[frame // layers]
            iy = iy - np.asarray(origin[1])[frame // layers]
        stamps, rows, pad = self._stamps(kx, ky)
        _add_stamps(out, stamps, rows, ix - self.psf.radius - pad,
                    iy - self.psf.radius - pad, weight.astype(np.float64),
                    frame.astype(np.int64), pad, self.psf.size)
        if self.usable is not None:
            _blank_unusable(out, self.usable, None if origin is None else
                            tuple(np.repeat(np.asarray(o), layers) for o in origin))
        return out.reshape((len(index), layers) + out.shape[1:]) if separate else out

    def _samples(self, index: NDArray, stars: NDArray) -> tuple[NDArray, ...]:
        """The points the PSF is placed at for ``stars`` in frames ``index``: x, y [pixel],
        flux [e] and the frame's place in ``index``, frame by frame (frame, star, blur
        sample: one frame's image stays in the cache), the rotational blur sampled over
        these stars' longest arc."""
        x, y = self.x[stars][:, index], self.y[stars][:, index]
        flux = self.star_flux(index)[stars]
        blur = rotational_blur(x, y, self.target_x[index], self.target_y[index],
                               self.droll_deg, step=BLUR_STEP)
        offsets = np.zeros((1,) + x.shape + (2,)) if blur is None else blur
        m = offsets.shape[0]
        offsets = offsets.transpose(2, 1, 0, 3)
        px = (x.T[:, :, None] + offsets[..., 0]).ravel()
        py = (y.T[:, :, None] + offsets[..., 1]).ravel()
        weight = np.broadcast_to(flux.T[:, :, None] / m, offsets.shape[:-1]).ravel()
        frame = np.broadcast_to(np.arange(len(index))[:, None, None], offsets.shape[:-1]).ravel()
        usable = np.isfinite(px) & np.isfinite(py) & np.isfinite(weight) & (weight != 0)
        return px[usable], py[usable], weight[usable], frame[usable]


def _blank_unusable(images: NDArray, usable: NDArray, origin) -> None:
    """NaN on the pixels of ``images`` (frames, or patches with corners ``origin``) that
    the data do not hold, so that sums over the model and the data cover the same pixels."""
    if origin is None:
        np.copyto(images, np.nan, where=~usable)  # 2x faster than images[:, ~usable] = nan
        return
    _blank_patches(images, usable, np.asarray(origin[0], np.int64),
                   np.asarray(origin[1], np.int64))


@njit(cache=True)
def _blank_patches(images, usable, x0, y0):  # pragma: no cover
    """NaN on pixel (i, j) of patch k unless pixel (y0[k] + i, x0[k] + j) is ``usable``."""
    height, width = usable.shape
    for k in range(images.shape[0]):
        for i in range(images.shape[1]):
            v = y0[k] + i
            for j in range(images.shape[2]):
                u = x0[k] + j
                if not (0 <= v < height and 0 <= u < width and usable[v, u]):
                    images[k, i, j] = np.nan


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
            # row slices indexed from 0: no negative-index check, so the loop vectorises
            # (3x faster, the same sums)
            dst = out[f, iy0[q] + a, ix0[q] + x_lo:ix0[q] + x_hi]
            src = s[a, x_lo:x_hi]
            for b in range(src.shape[0]):
                dst[b] += w * src[b]


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
    so it subtracts a little too much (measured on the demo: ~50 e per pixel).
    ``sky_values``: those levels, already measured (:func:`measure_residual_sky`): removed
    as they are, not measured again."""

    def __init__(self, cube: NDArray, model: FieldModel, stars: Sequence[int] | None = None,
                 sky: bool = True, cosmics=None, sky_values: NDArray | None = None):
        self.cube = cube
        self.cosmics = cosmics
        self.model = model
        self.stars = stars
        self.sky = sky
        self.shape = cube.shape
        self.known_sky = sky_values is not None
        # filled as frames are read, unless known
        self.sky_values = (np.zeros(cube.shape[0]) if sky_values is None
                           else np.asarray(sky_values, dtype=float))

    def __len__(self) -> int:
        return self.shape[0]

    def __getitem__(self, frames: int | slice) -> NDArray[np.float64]:
        if not isinstance(frames, slice):
            k = int(frames)
            return self[k:k + 1][0]
        data = np.asarray(self.cube[frames], dtype=float)
        if not (data.flags.owndata and data.flags.writeable):  # a view of the cube: a copy
            data = data.copy()
        if self.cosmics is not None:  # the data's hits, before the model is subtracted
            self.cosmics.patch(data, frames.indices(len(self))[0])
        whole = self.model.images is not None and self.stars is None
        # the rendered model subtracted as it is (float32 to float64 on the fly: no copies)
        residual = np.subtract(data, self.model.images[frames] if whole else
                               self.model.render(frames, self.stars), out=data)
        if self.sky:
            if self.known_sky:
                level = self.sky_values[frames]
            else:
                level = sky_residual(residual)
                self.sky_values[frames] = level
            residual -= level[:, None, None]
        return residual


def measure_residual_sky(cube: NDArray, model: FieldModel, cosmics=None,
                         chunk_frames: int = 64, workers: int = 1) -> NDArray[np.float64]:
    """Per frame, the background level the DRP left (:func:`sky_residual` of the data minus
    the whole ``model``, ``cosmics`` replaced first) [e per pixel]: one pass over the cube
    (``workers``: processes sharing its chunks)."""
    residual = ResidualCube(cube, model, cosmics=cosmics)

    def frames(first: int, stop: int) -> NDArray[np.float64]:
        for start in range(first, stop, chunk_frames):
            residual[start:min(start + chunk_frames, stop)]
        return residual.sky_values[first:stop]

    parts = parallel.split_frames(frames, len(residual), chunk_frames, workers)
    return np.concatenate(parts)


def sky_residual(residual: NDArray) -> NDArray[np.float64]:
    """Per frame of ``residual`` (n, H, W) = data - field model: the median over usable
    pixels, the level the DRP's background subtraction left (0 for a frame without any)."""
    flat = residual.reshape(len(residual), -1)
    # compiled: np.nanmedian's numbers, without its per-row Python loop (2-3x faster)
    return np.nan_to_num(nanmedian_first(flat.T))


class ModelFrames:
    """The model at some frames of the visit (``index``), read like a cube of them."""

    def __init__(self, model: FieldModel, index: NDArray):
        self.model, self.index = model, index
        self.shape = (len(index),) + model.shape

    def __getitem__(self, frames: slice) -> NDArray[np.float64]:
        return self.model.render(self.index[frames])


def subset_frames(model: FieldModel, index: NDArray) -> FieldModel:
    """The model of the frames ``index`` only."""
    flux = model.flux if np.ndim(model.flux) == 1 else model.flux[:, index]
    images = None if model.images is None else model.images[index]
    subset = replace(model, x=model.x[:, index], y=model.y[:, index], flux=flux,
                     target_x=model.target_x[index], target_y=model.target_y[index],
                     images=images)
    return subset
