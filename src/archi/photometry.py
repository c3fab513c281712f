"""Aperture photometry of every star in every frame.

The engine reads the cube in chunks of frames (each chunk once), and for each star gathers
its aperture's cut-out in all frames of the chunk at once (vectorised over frames), so the
cost is linear in frames and stars and memory stays bounded. Apertures are any objects with
``weights(x, y) -> (weights (n, h, w), ix0 (n,), iy0 (n,))`` (:class:`archi.masks.Aperture`).
Circles (exact, and binary on the pixel grid: the factor search's hot path) are summed by
one compiled kernel with the same numbers, :func:`archi.circlesum.circle_sums`: every
circle in every frame of a chunk in one call, weights 1 inside and exact weights on the
rim only.
A non-finite position measures nothing: flux and area 0, flagged out of bounds.

Uncertainties follow archi's model, per frame k and star:

    sigma^2 = F + A * (B_k + D_k + NEXP * RON_k^2)

with F the flux [e], A the aperture area [pixel], B_k and D_k the DRP background and dark
per pixel (the official light curve's BACKGROUND and DARK divided by its aperture area),
and RON_k the read noise per readout in electrons (COR metadata RON x 1.96 e/ADU).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np
from numpy.typing import NDArray

from archi.circlesum import circle_and_box_sums
from archi.cosmics import CosmicHits, dilate3
from archi.masks import Aperture, CircleAperture
from archi.stars import Tracks
from archi.visit import Visit


@dataclass(frozen=True)
class ApertureSums:
    """Per star and frame (n_stars, n_frames)."""

    flux: NDArray[np.float64]  # weighted sum of finite pixels [e]
    area: NDArray[np.float64]  # weights on finite pixels [pixel]
    out_of_bounds: NDArray[np.bool_]  # the aperture touches NaN pixels or the image edge

    @classmethod
    def joined(cls, parts: Sequence[ApertureSums]) -> ApertureSums:
        """Consecutive frame ranges of the same stars, as one."""
        return cls(*(np.concatenate([getattr(p, name) for p in parts], axis=1)
                     for name in ("flux", "area", "out_of_bounds")))


def cut(frames: NDArray, ix0: NDArray, iy0: NDArray, shape: tuple[int, int]
        ) -> tuple[NDArray, NDArray]:
    """Cutouts (n, h, w) of ``frames`` (n, ny, nx) at (ix0, iy0): values (0 where unusable)
    and whether each pixel is usable (finite and inside the image)."""
    n, ny, nx = frames.shape
    h, w = shape
    rows = iy0[:, None] + np.arange(h)[None, :]
    cols = ix0[:, None] + np.arange(w)[None, :]
    row_ok = (rows >= 0) & (rows < ny)
    col_ok = (cols >= 0) & (cols < nx)
    values = frames[np.arange(n)[:, None, None], np.clip(rows, 0, ny - 1)[:, :, None],
                    np.clip(cols, 0, nx - 1)[:, None, :]]
    valid = np.isfinite(values) & row_ok[:, :, None] & col_ok[:, None, :]
    return np.where(valid, values, 0.0), valid


def weigh(values: NDArray, valid: NDArray, weights: NDArray
          ) -> tuple[NDArray, NDArray, NDArray]:
    """(sums, area on usable pixels, touches an unusable pixel) of cutouts under weights."""
    sums = (weights * values).sum(axis=(1, 2))
    area = np.where(valid, weights, 0.0).sum(axis=(1, 2))
    touches = ((weights > 0) & ~valid).any(axis=(1, 2))
    return sums, area, touches


def gather(frames: NDArray, weights: NDArray, ix0: NDArray, iy0: NDArray
           ) -> tuple[NDArray, NDArray, NDArray]:
    """Weighted sums of ``frames`` (n, ny, nx) under ``weights`` (n, h, w) placed at
    (ix0, iy0) per frame: (sums, area on finite pixels, touches NaN or edge)."""
    return weigh(*cut(frames, ix0, iy0, weights.shape[1:]), weights)


def is_kernel_circle(aperture: object) -> bool:
    """Whether ``aperture`` is summed by the compiled circle kernel
    (:func:`archi.circlesum.circle_sums`): exact circles (any grid: only the radius scaling
    applies to them) and binary circles on the pixel grid itself (``grid`` 1), moving by
    sub-pixels or by whole pixels as archi's."""
    return isinstance(aperture, CircleAperture) and (
        aperture.mode == "exact" or aperture.grid == 1)


class AddedBoxes(Protocol):
    """Images added to the cube row by row in :func:`aperture_photometry`: row i sums the
    cube plus box ``box_of[i]`` (-1: none). Read by frames: ``boxes[sl]`` is (boxes (B, m,
    S, S), x0 (B, m), y0 (B, m)): box b of frame k has its pixel (0, 0) at frame pixel
    (x0[b, k], y0[b, k]); pixels beyond a box or not finite add nothing."""

    box_of: NDArray[np.int64]

    def __getitem__(self, frames: slice) -> tuple[NDArray, NDArray, NDArray]: ...


def circles_in_chunk(frames: NDArray, x: NDArray, y: NDArray,
                     circles: Sequence[CircleAperture], boxes: tuple | None = None,
                     box_of: NDArray | None = None) -> tuple[NDArray, NDArray, NDArray]:
    """(flux, area, out of bounds), each (len(circles), m), of circles (exact, or binary
    with grid 1) in a chunk of frames (m, ny, nx) (cosmics patched), circle i for stars at
    ``x[i], y[i]`` (m,) [pixel]: the numbers of weighing cutouts with their weights
    (:func:`gather`), from :func:`archi.circlesum.circle_and_box_sums`. ``boxes`` (the
    chunk's (boxes, x0, y0): :class:`AddedBoxes`) and ``box_of`` (circle i's box, -1:
    none): each circle's sum over its box is added to its flux."""
    m, n = frames.shape[0], len(circles)
    x, y = np.asarray(x, float).reshape(n, m), np.asarray(y, float).reshape(n, m)
    centres = [c.centres(x[i], y[i]) for i, c in enumerate(circles)]
    cx = np.array([c[0] for c in centres], dtype=np.float64).reshape(n, m)
    cy = np.array([c[1] for c in centres], dtype=np.float64).reshape(n, m)
    radius = np.array([c.real_radius for c in circles], dtype=np.float64)
    binary = np.array([c.mode != "exact" for c in circles], dtype=np.bool_)
    if boxes is None:
        boxes = (np.zeros((0, m, 0, 0)), np.zeros((0, m), np.int64), np.zeros((0, m), np.int64))
        box_of = np.full(n, -1, np.int64)
    images, x0, y0 = boxes
    flux, area, oob, boxed = circle_and_box_sums(
        np.ascontiguousarray(frames, dtype=np.float64), cx, cy, radius, binary,
        np.ascontiguousarray(images, dtype=np.float64), np.asarray(x0, np.int64),
        np.asarray(y0, np.int64), np.asarray(box_of, np.int64))
    return flux + boxed, area, oob


def aperture_photometry(cube: NDArray, tracks: Tracks, apertures: Sequence[Aperture | None],
                        chunk_frames: int = 64, cosmics: CosmicHits | None = None,
                        frames: tuple[int, int] | None = None,
                        boxes: AddedBoxes | None = None) -> ApertureSums:
    """Sum every star's aperture in every frame. ``apertures[j]`` None skips star j;
    ``cosmics``: hit pixels replaced in each chunk as it is read. ``frames`` ``(first,
    stop)``: only those frames (the result's columns), in chunks from ``first``.
    ``boxes``: row j sums the cube plus its box (:class:`AddedBoxes`; area and bounds are
    the cube's)."""
    n_stars, n_frames = tracks.x.shape
    first, stop = frames if frames is not None else (0, n_frames)
    flux = np.full((n_stars, stop - first), np.nan)
    area = np.zeros((n_stars, stop - first))
    oob = np.zeros((n_stars, stop - first), dtype=bool)
    fast = [j for j, a in enumerate(apertures) if is_kernel_circle(a)]
    for start in range(first, stop, chunk_frames):
        sl = slice(start, min(start + chunk_frames, stop))  # frames of the cube ...
        out = slice(sl.start - first, sl.stop - first)  # ... and columns of the result
        chunk = np.asarray(cube[sl], dtype=np.float64)  # a residual cube's chunk is fresh
        if cosmics is not None:
            if not chunk.flags.owndata:  # a view of the cube: patch a copy
                chunk = chunk.copy()
            cosmics.patch(chunk, start)
        added = None if boxes is None else boxes[sl]
        if fast:
            flux[fast, out], area[fast, out], oob[fast, out] = circles_in_chunk(
                chunk, tracks.x[fast, sl], tracks.y[fast, sl], [apertures[j] for j in fast],
                added, None if boxes is None else boxes.box_of[fast])
        for j, aperture in enumerate(apertures):
            if aperture is None or is_kernel_circle(aperture):
                continue
            w, ix0, iy0 = aperture.weights(tracks.x[j, sl], tracks.y[j, sl])
            flux[j, out], area[j, out], oob[j, out] = gather(chunk, w, ix0, iy0)
            oob[j, out] |= ~(np.isfinite(tracks.x[j, sl]) & np.isfinite(tracks.y[j, sl]))
            if added is not None and boxes.box_of[j] >= 0:
                images, x0, y0 = (a[boxes.box_of[j]] for a in added)
                flux[j, out] += gather(images, w, ix0 - x0, iy0 - y0)[0]
    return ApertureSums(flux, area, oob)


def surely_out_of_bounds(cube: NDArray, x: NDArray, y: NDArray,
                         circles: Sequence[CircleAperture | None], samples: int = 64
                         ) -> NDArray[np.bool_]:
    """Which circles certainly touch a NaN pixel or the image edge in some frame, told from
    a few frames without measuring: True only where a whole unusable pixel (NaN in that
    frame, or just beyond the edge) lies inside the circle in one of ``samples`` frames
    spread over the visit, or a position is not finite. Those runs are out of bounds
    whatever their sums (:func:`aperture_photometry` would flag them); a False says
    nothing. Circle i is at ``x[i], y[i]`` (n_frames,) [pixel] (its
    :meth:`~archi.masks.CircleAperture.centres` there); None: not a circle, False."""
    n_frames = cube.shape[0]
    out = np.zeros(len(circles), dtype=bool)
    use = [i for i, c in enumerate(circles) if isinstance(c, CircleAperture)]
    if not use or n_frames == 0:
        return out
    x, y = np.asarray(x, float)[use], np.asarray(y, float)[use]
    out[use] = ~(np.isfinite(x) & np.isfinite(y)).all(axis=1)
    frames = np.unique(np.linspace(0, n_frames - 1, min(samples, n_frames)).astype(int))
    x, y = np.nan_to_num(x[:, frames]), np.nan_to_num(y[:, frames])
    # distance from each track (runs of one star share theirs) to the nearest unusable
    # pixel's centre, per NaN pattern of the sampled frames (one, as a rule)
    tracks: dict[bytes, int] = {}
    track_of = np.array([tracks.setdefault(x[n].tobytes() + y[n].tobytes(), n)
                         for n in range(len(x))])
    first = np.unique(track_of)
    nearest = np.empty((len(first), len(frames)))
    bad = ~np.isfinite(np.asarray(cube[frames]))
    groups: dict[bytes, list[int]] = {}
    for k, mask in enumerate(bad):
        groups.setdefault(np.packbits(mask).tobytes(), []).append(k)
    for sel in groups.values():
        by, bx = _edge_of_unusable(bad[sel[0]])
        if not len(bx):  # no usable pixel at all: every circle touches unusable ones
            nearest[:, sel] = 0.0
            continue
        d = np.hypot(x[first][:, sel, None] - bx, y[first][:, sel, None] - by)
        nearest[:, sel] = d.min(axis=2)
    nearest = nearest[np.searchsorted(first, track_of)]
    # the circle's centre is within ``reach`` of an unusable pixel's centre; that whole
    # pixel is inside when ``reach`` is below the radius by half a pixel diagonal
    reach = nearest.copy()
    for n, i in enumerate(use):
        cx, cy = circles[i].centres(x[n], y[n])
        reach[n] += np.hypot(cx - x[n], cy - y[n])  # archi's circles: snapped centres
    radius = np.array([circles[i].real_radius for i in use])
    out[use] |= (reach < radius[:, None] - np.sqrt(0.5)).any(axis=1)
    return out


def _edge_of_unusable(bad: NDArray[np.bool_]) -> tuple[NDArray, NDArray]:
    """Centres (y, x) [pixel] of the unusable pixels (``bad``, and a ring just beyond the
    image) next to a usable one (8-neighbours): the nearest unusable pixel centre to any
    point of a usable pixel is among them."""
    ring = np.pad(bad, 1, constant_values=True)
    yy, xx = np.nonzero(ring & dilate3(~ring))
    return yy - 1.0, xx - 1.0


def noise_per_pixel(visit: Visit, aperture_name: str | None = None) -> NDArray[np.float64]:
    """Variance per pixel and frame from sky, dark and read noise [e^2]."""
    return (visit.background_per_pixel(aperture_name) + visit.dark_per_pixel(aperture_name)
            + visit.nexp * visit.ron_electrons ** 2)


def flux_errors(flux: NDArray, area: NDArray, visit: Visit,
                aperture_name: str | None = None) -> NDArray[np.float64]:
    """archi's per-frame uncertainty [e] (module docstring), shape of ``flux``."""
    variance = noise_per_pixel(visit, aperture_name)[None, :]
    return np.sqrt(np.clip(flux, 0.0, None) + area * variance)


def cosmics_in_apertures(cosmics: CosmicHits, tracks: Tracks,
                         apertures: Sequence[Aperture | None]) -> NDArray[np.bool_]:
    """(n_stars, n_frames): a patched cosmic-ray pixel lies where star j's aperture
    (None: no mask) has some weight in that frame."""
    out = np.zeros((tracks.n_stars, tracks.n_frames), bool)
    if len(cosmics) == 0:
        return out
    frames = np.unique(cosmics.frame)
    for j, aperture in enumerate(apertures):
        if aperture is None:
            continue
        weights, ix0, iy0 = aperture.weights(tracks.x[j, frames], tracks.y[j, frames])
        slot = np.searchsorted(frames, cosmics.frame)  # each hit's row of ``weights``
        row, col = cosmics.y - iy0[slot], cosmics.x - ix0[slot]
        inside = ((row >= 0) & (row < weights.shape[1]) & (col >= 0)
                  & (col < weights.shape[2]))
        hit = np.zeros(len(cosmics), bool)
        hit[inside] = weights[slot[inside], row[inside], col[inside]] > 0
        out[j, np.unique(cosmics.frame[hit])] = True
    return out
