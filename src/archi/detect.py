"""Initial detection: the stars of a visit and their first-frame positions.

* ``fits``: the DRP star catalogue; RA/DEC are mapped to pixels with the first frame's roll
  angle about the target's DRP centroid (:mod:`archi.geometry`), and stars fainter than
  ``magnitude_limit`` or outside the field of view are dropped.
* ``dynam``: the image. Candidates come from a matched filter on the first frame (the kernel
  is the visit's own empirical PSF, :mod:`archi.psf`), found one by one, each fitted
  and removed before the next search (CLEAN). Each candidate is then verified in frames
  spread over the roll: a real star turns with the field, while residual artefacts of a
  bright star's PSF stay fixed to it on the detector. All candidates are fitted together
  (blends included) at their predicted positions; those without a significant, consistent
  flux are dropped. Positions are then refined by a multi-frame fit (``repeat_removal``
  passes).
* ``P+S``: the target from P, every other star from S.

Stars are numbered 0 = target, then by distance from it; stars found in the image are
matched to the catalogue (within 3 px) when there is one, and then placed where the
catalogue puts them. With ``decontaminate``, the others are vetted against the field model
(:mod:`archi.vetting`).
"""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray

from archi.errors import ArchiError
from archi.fieldmodel import fit_frame
from archi.framequality import first_good_frame, good_frames
from archi.psf import EmpiricalPsf, blur_offsets
from archi.geometry import (FIELD_CENTRE, FIELD_RADIUS, field_turn, predicted_positions,
                            roll_offsets, roll_per_exposure, rotate_offsets)
from archi.geometry import catalogue_positions as catalogue_tracks
from archi.options import DetectionOptions, Options
from archi.photometry import noise_per_pixel
from archi.stars import StarList
from archi.visit import Visit

MATCH_RADIUS = 3.0
"""Largest distance [pixel] between an image detection and a catalogue position to match."""
MERGE_RADIUS = 6.0
"""Image detections closer than this [pixel] are one star (blended pairs 10-20 px apart stay
two)."""
CORE_RADIUS = 20
"""Radius [pixel] of the matched-filter kernel (the PSF core)."""


class DetectionError(ArchiError):
    """No usable star list (e.g. the target is not where the DRP says)."""


def _in_field(x: NDArray, y: NDArray, margin: float = 0.0) -> NDArray[np.bool_]:
    return np.hypot(x - FIELD_CENTRE[0], y - FIELD_CENTRE[1]) <= FIELD_RADIUS - margin


# ---------------------------------------------------------------------------------------
# catalogue
# ---------------------------------------------------------------------------------------

def catalogue_positions(visit: Visit) -> tuple[NDArray, NDArray]:
    """First-frame pixel positions of every catalogue row (row 0 = target at its centroid),
    mapped by the visit's :class:`~archi.geometry.SkyTransform` (``Visit.sky``)."""
    x, y = catalogue_tracks(visit, np.array([0]))
    return x[:, 0], y[:, 0]


def detect_from_catalogue(visit: Visit, magnitude_limit: float) -> StarList:
    """Stars of the DRP catalogue brighter than ``magnitude_limit`` inside the field."""
    cat = visit.catalogue
    if cat is None:
        raise DetectionError(f"{visit.folder}: initial_detect 'fits' needs the DRP star "
                             f"catalogue (EXT_PRE_StarCatalogue), which this visit lacks")
    x, y = catalogue_positions(visit)
    # inside the field at some frame (the field turns about a target that is off-centre)
    frames = np.unique(np.linspace(0, visit.n_frames - 1, 50).astype(int))
    px, py = catalogue_tracks(visit, frames)
    inside = _in_field(px, py).any(axis=1)
    keep = np.flatnonzero((cat.mag <= magnitude_limit) & inside)
    keep = np.union1d(keep, [0])  # the target, whatever its magnitude
    return StarList(x0=x[keep], y0=y[keep], catalogue_row=keep.astype(np.int64),
                    source_id=cat.ids[keep], ra=cat.ra[keep], dec=cat.dec[keep],
                    mag=cat.mag[keep], brightness=10 ** (-0.4 * (cat.mag[keep] - cat.mag[0])))


# ---------------------------------------------------------------------------------------
# image
# ---------------------------------------------------------------------------------------

def _clean_candidates(image: NDArray, psf: EmpiricalPsf, variance: float, snr: float,
                      max_stars: int = 60) -> list[tuple[float, float, float]]:
    """Matched-filter CLEAN on one frame: (x, y, S/N) of candidates, brightest first."""
    from scipy import ndimage  # lazy: keeps factor jobs' imports light
    valid = np.isfinite(image)
    img = ndimage.median_filter(np.where(valid, image, 0.0), 3)  # cosmic rays, hot pixels
    r = psf.radius
    yy, xx = np.indices(psf.stamp.shape) - r
    core = np.hypot(xx, yy) <= CORE_RADIUS
    kernel = np.where(core, psf.stamp - psf.stamp[core].mean(), 0.0)
    kernel2 = kernel ** 2
    norm = float((kernel * psf.stamp).sum())
    gy, gx = np.indices(image.shape)
    inner = valid & _in_field(gx, gy, margin=1.0)
    coverage = _correlate(valid.astype(float), np.abs(kernel) / np.abs(kernel).sum())
    inner &= coverage > 0.7
    photon = _correlate(np.clip(img, 0, None) + variance, kernel2)
    resid = img.copy()
    model = np.zeros_like(img)
    found: list[tuple[float, float, float]] = []
    searched = inner.copy()  # False within 5 px of a candidate found already
    for _ in range(max_stars):
        num = _correlate(resid, kernel)
        var = photon + _correlate((0.05 * model) ** 2, kernel2)
        s = np.where(searched, num / np.sqrt(np.clip(var, 1e-9, None)), 0.0)
        y, x = np.unravel_index(int(np.argmax(s)), s.shape)
        if s[y, x] < snr:
            break
        dx = _parabola(num[y, x - 1], num[y, x], num[y, x + 1])
        dy = _parabola(num[y - 1, x], num[y, x], num[y + 1, x])
        px, py = x + dx, y + dy
        flux = num[y, x] / norm
        stamp, _, _, ix0, iy0 = psf.render(px, py, gradients=False)
        ys, xs = max(iy0, 0), max(ix0, 0)
        ye, xe = min(iy0 + psf.size, img.shape[0]), min(ix0 + psf.size, img.shape[1])
        piece = flux * stamp[ys - iy0:ye - iy0, xs - ix0:xe - ix0]
        resid[ys:ye, xs:xe] -= piece
        model[ys:ye, xs:xe] += piece
        found.append((float(px), float(py), float(s[y, x])))
        _exclude_disc(searched, px, py, 5.0)
    return found


def _exclude_disc(mask: NDArray[np.bool_], x: float, y: float, radius: float) -> None:
    """Set ``mask`` False on pixels closer than ``radius`` [pixel] to (x, y), in place."""
    y0, y1 = max(int(np.floor(y - radius)), 0), min(int(np.ceil(y + radius)) + 1, mask.shape[0])
    x0, x1 = max(int(np.floor(x - radius)), 0), min(int(np.ceil(x + radius)) + 1, mask.shape[1])
    if y0 >= y1 or x0 >= x1:
        return
    yy, xx = np.ogrid[y0:y1, x0:x1]
    mask[y0:y1, x0:x1] &= ~(np.hypot(xx - x, yy - y) < radius)


def _correlate(image: NDArray, kernel: NDArray) -> NDArray:
    """Cross-correlation with an odd-sized kernel centred on each pixel, zeros beyond the
    edges (OpenCV: as exact as an FFT convolution, and 0.06 s of imports, not 0.5 s)."""
    import cv2  # lazy: only detection needs it

    return cv2.filter2D(np.asarray(image, dtype=np.float64), -1, kernel,
                        borderType=cv2.BORDER_CONSTANT)


def _parabola(a: float, b: float, c: float) -> float:
    d = a - 2 * b + c
    return 0.0 if d >= 0 else float(np.clip(0.5 * (a - c) / d, -0.5, 0.5))


def _verification_frames(visit: Visit, n: int = 6) -> NDArray:
    """Good frames spread over the visit, the first good one first (the others' fluxes are
    compared with its)."""
    good = good_frames(visit.cube)
    return good[np.unique(np.linspace(0, len(good) - 1, min(n, len(good))).astype(int))]


def _multi_frame_fit(visit: Visit, psf: EmpiricalPsf, dx0: NDArray, dy0: NDArray,
                     frames: NDArray, positions: bool
                     ) -> tuple[NDArray, NDArray, NDArray, NDArray]:
    """Fit all stars in each of ``frames`` at predicted positions. Returns flux, flux_err
    (n_stars, n_frames) and the position corrections rotated back to roll 0 (n_stars,)."""
    px, py = predicted_positions(visit, dx0, dy0, frames)
    droll = roll_per_exposure(visit)
    variance = noise_per_pixel(visit)  # sky, dark and read noise per pixel [e^2]
    flux = np.zeros((len(dx0), len(frames)))
    err = np.zeros_like(flux)
    sx = np.zeros_like(flux)
    sy = np.zeros_like(flux)
    for i, k in enumerate(frames):
        frame = np.asarray(visit.cube[k], dtype=float)
        blur = [blur_offsets(px[j, i], py[j, i], visit.target_x[k], visit.target_y[k], droll)
                for j in range(len(dx0))]
        fit = fit_frame(frame, px[:, i], py[:, i], psf, positions=positions,
                        variance_floor=float(variance[k]), blur=blur)
        flux[:, i], err[:, i] = fit.flux, fit.flux_err
        # shifts measured on the detector, back to the roll-0 frame
        sx[:, i], sy[:, i] = rotate_offsets(fit.dx, fit.dy, -field_turn(visit)[k])
    good = np.isfinite(err) & (err > 0) & (flux > 0)
    w = np.where(good, (flux / np.where(good, err, 1.0)) ** 2, 0.0)
    wsum = np.clip(w.sum(axis=1), 1e-30, None)
    shift_x = (w * np.clip(sx, -2, 2)).sum(axis=1) / wsum
    shift_y = (w * np.clip(sy, -2, 2)).sum(axis=1) / wsum
    return flux, err, shift_x, shift_y


def detect_in_image(visit: Visit, options: DetectionOptions, psf: EmpiricalPsf | None = None
                    ) -> StarList:
    """Stars found in the images (see the module docstring): in the first good frame
    (:func:`archi.framequality.first_good_frame`: a lost frame 0 holds no star)."""
    psf = psf or EmpiricalPsf.from_visit(visit)
    first = first_good_frame(visit.cube)
    image = np.asarray(visit.cube[first], dtype=float)
    candidates = _clean_candidates(image, psf, float(noise_per_pixel(visit)[first]),
                                   options.detection_snr)
    if not candidates:
        raise DetectionError(f"{visit.folder}: no star found in the first frame ({first})")
    x = np.array([c[0] for c in candidates])
    y = np.array([c[1] for c in candidates])
    # the target: the detection nearest the DRP centroid
    tx, ty = visit.target_x[first], visit.target_y[first]
    d_target = np.hypot(x - tx, y - ty)
    t = int(np.argmin(d_target))
    if d_target[t] > 5.0:
        raise DetectionError(f"{visit.folder}: no star within 5 px of the DRP target centroid "
                             f"({tx:.1f}, {ty:.1f}) in frame {first}")
    order = [t] + [i for i in range(len(x)) if i != t]
    x, y = x[order], y[order]
    dx0, dy0 = roll_offsets(visit, x, y, first)
    dx0[0] = dy0[0] = 0.0  # the target defines the rotation centre

    frames = _verification_frames(visit)
    for _ in range(4):  # verify, merge duplicates, refine; again if refinement merged two
        dx0, dy0 = _confirmed(visit, psf, dx0, dy0, frames, options.detection_snr)
        for _ in range(max(1, options.repeat_removal)):  # position refinement passes
            flux, err, shx, shy = _multi_frame_fit(visit, psf, dx0, dy0, frames,
                                                   positions=True)
            dx0 = dx0 + np.where(np.arange(len(dx0)) == 0, 0.0, shx)
            dy0 = dy0 + np.where(np.arange(len(dy0)) == 0, 0.0, shy)
        if not _duplicates(dx0, dy0, np.median(flux, axis=1)).any():
            break
    px, py = predicted_positions(visit, dx0, dy0, np.array([0]))
    brightness = np.median(flux, axis=1)
    stars = _star_list(px[:, 0], py[:, 0], brightness)
    return match_catalogue(visit, stars)


def _confirmed(visit: Visit, psf: EmpiricalPsf, dx0: NDArray, dy0: NDArray, frames: NDArray,
               snr_limit: float) -> tuple[NDArray, NDArray]:
    """Drop candidates without a significant, consistent flux in the verification frames,
    and duplicates of brighter ones; refit after each removal."""
    for _ in range(8):
        flux, err, _, _ = _multi_frame_fit(visit, psf, dx0, dy0, frames, positions=False)
        level = np.median(flux, axis=1)
        snr = np.median(np.where(err > 0, flux / err, 0.0), axis=1)
        consistent = (level > 0) & (level > 0.3 * flux[:, 0])
        keep = (snr >= snr_limit) & consistent & ~_duplicates(dx0, dy0, level)
        keep[0] = True
        if keep.all():
            break
        dx0, dy0 = dx0[keep], dy0[keep]
    return dx0, dy0


def _duplicates(dx0: NDArray, dy0: NDArray, level: NDArray) -> NDArray[np.bool_]:
    """True for a candidate within MERGE_RADIUS of a brighter one (a residual of the same
    star left by an imperfect first subtraction)."""
    dup = np.zeros(len(dx0), dtype=bool)
    for j in np.argsort(-level):
        if dup[j]:
            continue
        near = np.hypot(dx0 - dx0[j], dy0 - dy0[j]) < MERGE_RADIUS
        near[j] = False
        dup |= near & (level <= level[j])
    return dup


def _star_list(x: NDArray, y: NDArray, brightness: NDArray) -> StarList:
    n = len(x)
    return StarList(x0=x, y0=y, catalogue_row=np.full(n, -1, dtype=np.int64),
                    source_id=np.full(n, "", dtype="U20"), ra=np.full(n, np.nan),
                    dec=np.full(n, np.nan), mag=np.full(n, np.nan),
                    brightness=np.asarray(brightness, dtype=float))


def match_catalogue(visit: Visit, stars: StarList) -> StarList:
    """Attach catalogue entries to image detections within MATCH_RADIUS (nearest first).
    A matched star is placed where ``fits`` places it (:func:`catalogue_positions`): one
    position per star whatever the detection (image positions fitted with the first PSF
    are off by 0.1-0.5 px, its halos not removed yet, enough to change the search's
    choices on the demo)."""
    cat = visit.catalogue
    if cat is None:
        return stars
    cx, cy = catalogue_positions(visit)
    rows = np.full(stars.n_stars, -1, dtype=np.int64)
    taken: set[int] = set()
    for j in np.argsort(-stars.brightness):
        d = np.hypot(cx - stars.x0[j], cy - stars.y0[j])
        for i in np.argsort(d):
            if d[i] > MATCH_RADIUS:
                break
            if int(i) not in taken:
                rows[j] = i
                taken.add(int(i))
                break
    if rows[0] < 0 and np.hypot(cx[0] - stars.x0[0], cy[0] - stars.y0[0]) <= 2 * MATCH_RADIUS:
        rows[0] = 0
    matched = rows >= 0
    pick = np.where(matched, rows, 0)

    def fill(values, empty):
        return np.where(matched, values[pick], empty)

    return StarList(x0=fill(cx, stars.x0), y0=fill(cy, stars.y0), catalogue_row=rows,
                    source_id=fill(cat.ids, "").astype("U20"), ra=fill(cat.ra, np.nan),
                    dec=fill(cat.dec, np.nan), mag=fill(cat.mag, np.nan),
                    brightness=stars.brightness)


# ---------------------------------------------------------------------------------------
# combinations
# ---------------------------------------------------------------------------------------

def _take(stars: StarList, index: NDArray) -> StarList:
    return StarList(*(np.asarray(getattr(stars, f))[index] for f in
                      ("x0", "y0", "catalogue_row", "source_id", "ra", "dec", "mag",
                       "brightness")))


def _concat(a: StarList, b: StarList) -> StarList:
    return StarList(*(np.concatenate([getattr(a, f), getattr(b, f)]) for f in
                      ("x0", "y0", "catalogue_row", "source_id", "ra", "dec", "mag",
                       "brightness")))


def sort_by_distance(stars: StarList) -> StarList:
    """Target first, then by distance from it."""
    d = stars.distance
    order = np.concatenate([[0], 1 + np.argsort(d[1:], kind="stable")])
    return _take(stars, order)


def detect_stars(visit: Visit, options: Options, psf: EmpiricalPsf | None = None) -> StarList:
    """The star list of a visit according to ``options.initial_detect`` (``psf``: the
    visit's empirical PSF, when the caller has built it already)."""
    detection = options.detection
    primary, secondary = detection.methods
    found: dict[str, StarList] = {}
    for method in {primary, secondary}:
        if method == "fits":
            found[method] = detect_from_catalogue(visit, detection.magnitude_limit)
        else:
            found[method] = detect_in_image(visit, detection, psf)
    target = _take(found[primary], np.array([0]))
    others = found[secondary]
    rest = np.arange(1, others.n_stars)
    if primary != secondary:
        # the secondary list's own target entry is the same star: drop it
        d = np.hypot(others.x0 - target.x0[0], others.y0 - target.y0[0])
        rest = rest[d[rest] > MATCH_RADIUS]
    return sort_by_distance(_concat(target, _take(others, rest)))
