"""Home of the neighbours' light: what the field model (:mod:`archi.fieldimage`) puts
into each star's aperture, frame by frame. For star ``j`` and aperture ``A_j``:

    FLUX_RAW_j = A_j(data)
    CONTA_j    = A_j(model) - A_j(model of star j alone)      the neighbours' light [e]
    FLUX_j     = A_j(data - model) + A_j(model of star j alone)

``FLUX`` is the star's own light: the mask's sum minus its neighbours' light and minus the
background level the DRP left (a frame's median residual x the mask's area). It is what the
factor search measures: one pass over the residual cube ``data - model``
(:class:`~archi.fieldimage.ResidualCube`) serves every star and radius, and each star's own
modelled light is added back per frame (:func:`own_light`), so an error in its own fitted
flux cancels. The raw sums come from the same reads of the cube (:class:`RawSumsReader`):
each frame is read once for FLUX_RAW and FLUX.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from archi.fieldimage import FieldModel, ModelFrames, ResidualCube, subset_frames
from archi.photometry import ApertureSums, aperture_photometry
from archi.stars import Tracks


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


class OwnLightBoxes:
    """Each row's star's own modelled light, on boxes that follow the star, to be added to
    the residual cube ``data - model`` by the photometry (:class:`archi.photometry.AddedBoxes`),
    so that row i sums its star's own light: ``stars[i]`` (-1: none) through
    ``apertures[i]`` (None: none). One box per star, wide enough for its own widest
    aperture (the model is rendered on no more pixels than that star's circles weigh);
    boxes are stacked in the top-left corner of equal squares, zero beyond."""

    def __init__(self, model: FieldModel, stars: NDArray, apertures: Sequence):
        stars = np.where([a is None for a in apertures], -1, np.asarray(stars, np.int64))
        measured = np.unique(stars[stars >= 0])
        self.box_of = np.searchsorted(measured, stars).astype(np.int64)
        self.box_of[stars < 0] = -1
        self.boxes = []
        for j in measured:
            reach = max(_reach(a) for a, s in zip(apertures, stars) if s == j)
            self.boxes.append(_OneStarBoxes(model, int(j), 2 * reach + 3))

    def __getitem__(self, frames: slice) -> tuple[NDArray, NDArray, NDArray]:
        size = max((b.size for b in self.boxes), default=0)
        n = len(range(*frames.indices(self.boxes[0].shape[0]))) if self.boxes else 0
        images = np.zeros((len(self.boxes), n, size, size))
        for image, b in zip(images, self.boxes):
            image[:, :b.size, :b.size] = b[frames]
        x0 = np.array([b.x0[frames] for b in self.boxes], np.int64)
        y0 = np.array([b.y0[frames] for b in self.boxes], np.int64)
        return images, x0, y0


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
    (``cosmics``: hits replaced in the data as the photometry reads them), from one read
    of each frame of ``cube``."""
    raw = RawSumsReader(cube, tracks, apertures, cosmics, chunk_frames)
    residual_cube = ResidualCube(raw, model)  # the reader returns frames with hits replaced
    boxes = OwnLightBoxes(model, np.arange(len(apertures)), apertures)
    flux = aperture_photometry(residual_cube, tracks, apertures, chunk_frames, boxes=boxes).flux
    raw_sums, sky = raw.sums(), residual_cube.sky_values
    return Decontaminated(flux, raw_sums.flux,
                          neighbours_light_in_sums(raw_sums.flux, flux, raw_sums.area, sky), sky)


class RawSumsReader:
    """``cube`` read like itself, each slice of frames with its cosmic hits replaced
    (``cosmics``), and every star's raw aperture sums (``apertures[j]`` through
    ``tracks``; None: none) taken from each slice as it is read: a pass over
    ``ResidualCube(reader, model)`` yields the raw sums (FLUX_RAW) too, without a second
    read of the cube. :meth:`sums` measures the frames not read here (e.g. read by forked
    processes) with the same photometry. A frame index (not a slice) reads the cube as it
    is, unpatched and not summed."""

    def __init__(self, cube, tracks: Tracks, apertures: Sequence, cosmics=None,
                 chunk_frames: int = 64):
        self.cube, self.tracks, self.apertures = cube, tracks, list(apertures)
        self.cosmics, self.chunk_frames = cosmics, chunk_frames
        self.shape, self.dtype, self.ndim = tuple(cube.shape), np.dtype(np.float64), 3
        flux = np.full(tracks.x.shape, np.nan)
        self._sums = ApertureSums(flux, np.zeros_like(flux), np.zeros(flux.shape, bool))
        self._summed = np.zeros(tracks.n_frames, bool)

    def __len__(self) -> int:
        return self.shape[0]

    def __getitem__(self, frames):
        if not isinstance(frames, slice) or frames.step not in (None, 1):
            return self.cube[frames]
        start, stop, _ = frames.indices(len(self))
        chunk = np.asarray(self.cube[frames], dtype=np.float64)
        if not (chunk.flags.owndata and chunk.flags.writeable):  # a view of the cube
            chunk = chunk.copy()  # patched here
        if self.cosmics is not None:
            self.cosmics.patch(chunk, start)
        if stop > start:
            self._store(aperture_photometry(chunk, self._tracks_of(start, stop),
                                            self.apertures, chunk_frames=stop - start), start)
        return chunk

    def _tracks_of(self, start: int, stop: int) -> Tracks:
        t = self.tracks
        return Tracks(t.x[:, start:stop], t.y[:, start:stop], t.measured[:, start:stop])

    def _store(self, part: ApertureSums, start: int) -> None:
        stop = start + part.flux.shape[1]
        for name in ("flux", "area", "out_of_bounds"):
            getattr(self._sums, name)[:, start:stop] = getattr(part, name)
        self._summed[start:stop] = True

    def sums(self) -> ApertureSums:
        """The raw sums of every frame (n_stars, n_frames): those taken as frames were read,
        the others measured now."""
        missing = np.flatnonzero(~self._summed)
        for run in np.split(missing, np.flatnonzero(np.diff(missing) > 1) + 1):
            if len(run):
                first, stop = int(run[0]), int(run[-1]) + 1
                self._store(aperture_photometry(self.cube, self.tracks, self.apertures,
                                                self.chunk_frames, self.cosmics,
                                                frames=(first, stop)), first)
        return self._sums


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
    total = aperture_photometry(ModelFrames(model, index), sample, chosen).flux
    own = np.full_like(total, np.nan)
    sampled = subset_frames(model, index)
    all_tracks = Tracks(tracks.x[:, index], tracks.y[:, index], tracks.measured[:, index])
    for j in np.unique(stars[keep]):
        rows = np.flatnonzero((stars == j) & keep)
        own[rows] = own_light(sampled, all_tracks, [apertures[i] for i in rows], int(j))
    with warnings.catch_warnings():  # runs not measured are all NaN
        warnings.simplefilter("ignore", RuntimeWarning)
        ratio = np.nanmedian(total - own, axis=1) / np.nanmedian(own, axis=1)
    return np.where(keep, ratio, np.nan)


def neighbours_light_in_sums(raw: NDArray, flux: NDArray, area: NDArray, sky: NDArray
                             ) -> NDArray[np.float64]:
    """The neighbours' modelled light [e] in masks whose raw sums ``raw``, own light
    ``flux`` (the module docstring's FLUX) and area [pixel] were measured, per star and
    frame: ``raw - flux - sky * area`` with ``sky`` the background level the DRP left in
    each frame [e per pixel]. The same as :func:`neighbours_light` (to rounding) without
    another pass over the model."""
    return raw - flux - np.asarray(sky)[None, :] * area


def neighbours_light(model: FieldModel, tracks: Tracks, apertures: Sequence,
                     chunk_frames: int = 64) -> NDArray[np.float64]:
    """The neighbours' modelled light in each star's aperture (None: NaN), per frame:
    (n_stars, n_frames) [e]: the whole model's sum minus the star's own."""
    every = np.arange(model.n_frames)
    total = aperture_photometry(ModelFrames(model, every), tracks, apertures, chunk_frames).flux
    for j, aperture in enumerate(apertures):
        if aperture is not None:
            total[j] -= own_light(model, tracks, [aperture], j, chunk_frames)[0]
    return total
