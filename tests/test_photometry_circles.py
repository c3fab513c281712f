"""The compiled circle kernel (archi.circlesum) against photutils' exact overlap weights.

The reference weighs each circle's cutout with ``photutils.geometry.circular_overlap_grid``
(the routine behind ``CircularAperture.to_mask(method="exact")``), one circle at a time in
plain numpy: flux = weighted sum of the finite in-image pixels, area = their weights, out of
bounds = a pixel of weight >= 1e-12 that is NaN or beyond the edge. The kernel must give the
same flux and area to 1e-12 relative (measured: <= 5e-14) and exactly the same flags, on
200 x 200 frames with NaN pixels, circles partly beyond the edges and non-finite positions.
Binary circles are checked against ``CircleAperture(mode="binary").weights`` (numpy).
"""

from __future__ import annotations

import numpy as np
import pytest
from photutils.geometry import circular_overlap_grid

from archi import circlesum, photometry
from archi.cosmics import CosmicHits
from archi.masks import CircleAperture
from archi.photometry import aperture_photometry, gather
from archi.stars import Tracks

H, W = 200, 200  # the CHEOPS subarray
RTOL = 1e-12  # the bar; measured <= 5e-14 on these tests


def _frames(rng, m: int, signed: bool = False, shape: tuple[int, int] = (H, W),
            field_radius: float = 99.0) -> np.ndarray:
    """(m, *shape) frames with a NaN field edge (NaN beyond ``field_radius`` of the centre,
    as CHEOPS), a NaN column edge, a few NaN pixels in some frames only, a bright pixel."""
    h, w = shape
    frames = rng.normal(0.0, 50.0, (m, h, w)) if signed else rng.uniform(10.0, 1000.0, (m, h, w))
    yy, xx = np.indices((h, w))
    frames[:, np.hypot(xx - w / 2, yy - h / 2) > field_radius] = np.nan  # corners outside
    frames[:, :, -2:] = np.nan
    for k in range(0, m, 3):  # per-frame NaN pixels: the NaN pattern varies in the chunk
        frames[k, rng.integers(0, h, h * w // 1000), rng.integers(0, w, h * w // 1000)] = np.nan
    frames[:, h // 2, w // 2] = 1e5
    return frames


def _photutils_sums(frames, x, y, r):
    """(flux, area, out of bounds, sum of |weighted values|: the scale of the flux's
    rounding) of one exact circle per frame (x, y (m,), radius r): photutils' exact
    weights on the circle's cutout, weighed in numpy."""
    m = len(x)
    flux, area, oob = np.zeros(m), np.zeros(m), np.zeros(m, dtype=bool)
    magnitude = np.zeros(m)
    size = CircleAperture(r).size
    for k in range(m):
        if not (np.isfinite(x[k]) and np.isfinite(y[k])):
            oob[k] = True
            continue
        ix0, iy0 = int(np.floor(x[k] - r + 0.5)), int(np.floor(y[k] - r + 0.5))
        w = circular_overlap_grid(ix0 - 0.5 - x[k], ix0 + size - 0.5 - x[k],
                                  iy0 - 0.5 - y[k], iy0 + size - 0.5 - y[k], size, size, r,
                                  use_exact=1, subpixels=1)
        w[w < circlesum.ZERO_WEIGHT] = 0.0
        rows, cols = iy0 + np.arange(size), ix0 + np.arange(size)
        inside = ((rows >= 0) & (rows < H))[:, None] & ((cols >= 0) & (cols < W))[None, :]
        values = frames[k][np.clip(rows, 0, H - 1)][:, np.clip(cols, 0, W - 1)]
        usable = inside & np.isfinite(values)
        flux[k] = (w * np.where(usable, values, 0.0)).sum()
        magnitude[k] = (w * np.where(usable, np.abs(values), 0.0)).sum()
        area[k] = w[usable].sum()
        oob[k] = ((w > 0) & ~usable).any()
    return flux, area, oob, magnitude


def _kernel(frames, x, y, radius, binary=False):
    radius = np.atleast_1d(np.asarray(radius, float))
    return circlesum.circle_sums(frames, np.atleast_2d(x), np.atleast_2d(y), radius,
                                 np.full(len(radius), binary))


def _assert_same(got, want, rtol=RTOL):
    """Same flags, area and flux to ``rtol`` (of the sum of |weighted values| for the flux:
    signed data cancel)."""
    flux, area, oob = (np.ravel(v) for v in got)
    want = [np.ravel(v) for v in want]
    magnitude = want[3] if len(want) > 3 else np.abs(want[0])
    assert (oob == want[2]).all(), np.flatnonzero(oob != want[2])
    np.testing.assert_allclose(area, want[1], rtol=rtol, atol=1e-13)
    assert (np.abs(flux - want[0]) <= rtol * magnitude + 1e-300).all()


def _positions(rng, n: int, m: int):
    """(n, m) sub-pixel positions across the frame and beyond its edges, with half-integer
    ones (circle edges exactly on pixel boundaries for integer radii) and non-finite ones."""
    x = rng.uniform(-8.0, W + 8.0, (n, m))
    y = rng.uniform(-8.0, H + 8.0, (n, m))
    x[::5] = np.round(x[::5]) + 0.5
    y[::5] = np.round(y[::5]) + 0.5
    x[1::7] = np.round(x[1::7])
    x[3, 0], y[4, 1], x[6, 2], y[6, 3] = np.nan, np.inf, -np.inf, np.nan
    return x, y


def _radii(rng, n: int):
    """Radii from 0.3 to 40 px: tiny circles inside one pixel, integer and half-integer
    radii, large circles crossing the frame edges."""
    r = np.exp(rng.uniform(np.log(0.3), np.log(40.0), n))
    r[::4] = np.round(r[::4]) + 1.0
    r[2::6] = np.round(r[2::6]) + 0.5
    r[5::9] = rng.uniform(0.3, 0.5, len(r[5::9]))
    return r


@pytest.mark.parametrize("signed", [False, True])
def test_kernel_sums_equal_photutils_exact_weights(signed):
    rng = np.random.default_rng(11 if signed else 3)
    m, n = 6, 60
    frames = _frames(rng, m, signed)
    x, y = _positions(rng, n, m)
    radius = _radii(rng, n)
    got = _kernel(frames, x, y, radius)
    want = [np.array(v) for v in zip(*(_photutils_sums(frames, x[i], y[i], radius[i])
                                       for i in range(n)))]
    _assert_same(got, want)
    assert got[2].any() and not got[2].all()  # edges and NaN pixels were met


def test_exact_weights_equal_photutils():
    """The weights on cutouts (CircleAperture.weights) are photutils' to 4 ulp of pi r^2 per
    pixel (measured <= 1.9 ulp: pixel areas are differences of corner areas ~ pi r^2)."""
    rng = np.random.default_rng(4)
    for r in (0.3, 2.5, 7.7, 14.0, 40.0):
        x, y = rng.uniform(20, 180, 30), rng.uniform(20, 180, 30)
        w, ix0, iy0 = CircleAperture(r).weights(x, y)
        size = w.shape[1]
        for k in range(len(x)):
            ref = circular_overlap_grid(ix0[k] - 0.5 - x[k], ix0[k] + size - 0.5 - x[k],
                                        iy0[k] - 0.5 - y[k], iy0[k] + size - 0.5 - y[k],
                                        size, size, r, use_exact=1, subpixels=1)
            ref[ref < circlesum.ZERO_WEIGHT] = 0.0
            np.testing.assert_allclose(w[k], ref, rtol=0, atol=4 * np.spacing(np.pi * r * r))


def test_nan_pixels_at_the_rim_and_inside_flag_the_circle():
    """A NaN pixel of positive weight (inside, or a sliver at the rim) flags the frame; one
    just beyond the rim does not; NaN pixels are left out of flux and area."""
    frames = np.full((4, H, W), 100.0)
    x = np.full(4, 30.3)
    y = np.full(4, 25.6)
    r = 5.0
    frames[1, 26, 31] = np.nan  # inside
    frames[2, 26, 35] = np.nan  # the rim column: pixel x in [34.5, 35.5] meets the circle
    frames[3, 26, 36] = np.nan  # beyond: x >= 35.5 > 30.3 + 5
    flux, area, oob = (v[0] for v in _kernel(frames, x, y, r))
    assert oob.tolist() == [False, True, True, False]
    assert area[0] == pytest.approx(np.pi * r * r, abs=1e-12)
    assert area[1] == pytest.approx(area[0] - 1.0, abs=1e-12)  # a full pixel lost
    assert 0 < area[0] - area[2] < 1
    assert area[3] == pytest.approx(area[0], abs=1e-12)
    np.testing.assert_allclose(flux, 100.0 * area, rtol=1e-14)
    _assert_same((flux, area, oob), _photutils_sums(frames, x, y, r))


def test_slivers_below_the_weight_threshold_do_not_touch():
    """A circle that enters a NaN pixel by a sliver of area < 1e-12 does not touch it (the
    exact weights zero such rounding-level slivers); a larger sliver does."""
    frames = np.full((3, H, W), 5.0)
    frames[:, :, 36] = np.nan  # pixels x in [35.5, 36.5]
    r = 5.0
    x = 30.5 + np.array([1e-9, 1e-7, -1e-9])  # rightmost point 35.5 + 1e-9, + 1e-7, - 1e-9
    y = np.full(3, 20.3)
    got = _kernel(frames, x, y, r)
    _assert_same(got, _photutils_sums(frames, x, y, r))
    assert got[2][0].tolist() == [False, True, False]


def test_circles_beyond_the_edges():
    """Circles partly or wholly beyond the image: out of bounds, the in-image part summed;
    a circle wholly outside sums nothing."""
    frames = np.ones((4, H, W))
    x = np.array([-3.2, 205.0, 100.0, -50.0])
    y = np.array([100.0, 199.7, -0.5, -50.0])
    flux, area, oob = (v[0] for v in _kernel(frames, x, y, 6.0))
    assert oob.all()
    assert 0 < area[0] < np.pi * 36 and area[3] == 0.0
    _assert_same((flux, area, oob), _photutils_sums(frames, x, y, 6.0))


def test_tiny_circles_and_circles_on_pixel_boundaries():
    """Circles inside one pixel, centred on a pixel corner, and integer radii on half-integer
    positions (every chord end on a pixel edge) weigh exactly pi r^2."""
    frames = np.ones((1, H, W))
    x = np.array([20.0, 20.5, 20.2, 20.5, 20.5, 20.0, 20.37])
    y = np.array([20.0, 20.5, 20.3, 20.0, 20.5, 20.5, 20.81])
    r = np.array([0.3, 0.3, 0.05, 1.0, 2.0, 3.0, 0.49])
    flux, area, oob = (v[:, 0] for v in _kernel(frames, x[:, None], y[:, None], r))
    np.testing.assert_allclose(area, np.pi * r * r, rtol=1e-13, atol=1e-15)
    np.testing.assert_allclose(flux, area, rtol=1e-14)
    assert not oob.any()


def test_photometry_measures_circles_with_the_kernel():
    """aperture_photometry on exact circles (any grid, cosmics patched first) equals
    photutils' weights, chunk by chunk."""
    rng = np.random.default_rng(8)
    n_frames = 40
    cube = _frames(rng, n_frames)
    x = np.vstack([np.linspace(-4.0, 60.0, n_frames), np.full(n_frames, 135.2),
                   np.linspace(198.0, 40.0, n_frames)]) + rng.uniform(-0.4, 0.4, (3, n_frames))
    y = np.vstack([np.full(n_frames, 100.5), np.linspace(2.0, 158.0, n_frames),
                   np.linspace(140.0, 120.0, n_frames)])
    x[1, 7] = np.nan
    hits = CosmicHits(np.array([3, 20]), np.array([100, 101]),
                      np.array([int(round(x[0, 3])), 135]), np.array([100.0, 100.0]))
    cube[3, 100, int(round(x[0, 3]))] = cube[20, 101, 135] = 1e6
    patched = cube.copy()
    hits.patch(patched, 0)
    tracks = Tracks(x=x, y=y, measured=np.ones(x.shape, bool))
    apertures = [CircleAperture(6.3), CircleAperture(21.0, grid=3), None]
    sums = aperture_photometry(cube, tracks, apertures, chunk_frames=16, cosmics=hits)
    for j, aperture in enumerate(apertures):
        if aperture is None:
            assert np.isnan(sums.flux[j]).all()
            continue
        want = _photutils_sums(patched, x[j], y[j], aperture.real_radius)
        _assert_same((sums.flux[j], sums.area[j], sums.out_of_bounds[j]), want)
    assert sums.out_of_bounds[1, 7] and sums.flux[1, 7] == 0.0


def test_exact_weights_are_zero_beyond_large_circles():
    """Pixels that do not meet a large circle get weight 0, not rounding noise above the
    1e-12 threshold (which would flag NaN pixels beyond the rim)."""
    rng = np.random.default_rng(1)
    for r in (36.0, 45.0, 60.0):
        x, y = rng.uniform(90, 110, 50), rng.uniform(90, 110, 50)
        w, ix0, iy0 = CircleAperture(r).weights(x, y)
        cx = (ix0 - x)[:, None] + np.arange(w.shape[2])  # pixel centres from the centre
        cy = (iy0 - y)[:, None] + np.arange(w.shape[1])
        gx = np.maximum(np.abs(cx) - 0.5, 0.0)[:, None, :]
        gy = np.maximum(np.abs(cy) - 0.5, 0.0)[:, :, None]
        assert (w[gx ** 2 + gy ** 2 >= r * r] == 0).all()
        np.testing.assert_allclose(w.sum(axis=(1, 2)), np.pi * r * r, rtol=1e-12)


def _binary_reference(frames, x, y, radius, frame):
    """archi's binary mask, one item at a time: CircleAperture(mode="binary").weights
    gathered and weighed; a non-finite position measures nothing and is out of bounds."""
    n = len(x)
    flux, area, oob = np.zeros(n), np.zeros(n), np.zeros(n, dtype=bool)
    for i in range(n):
        w, ix0, iy0 = CircleAperture(radius[i], mode="binary").weights(x[i:i + 1], y[i:i + 1])
        f, a, o = gather(frames[frame[i]:frame[i] + 1], w, ix0, iy0)
        flux[i], area[i], oob[i] = f[0], a[0], o[0]
    oob |= ~(np.isfinite(x) & np.isfinite(y))
    return flux, area, oob


def test_binary_circle_runs_equal_binary_weights():
    """The same pixels as archi's mask (pixel centres exactly on the circle included: integer
    positions and radii), the same counts and out-of-bounds flags, sums to rounding."""
    rng = np.random.default_rng(5)
    m, n = 4, 80
    frames = _frames(rng, m, signed=True)
    x, y = _positions(rng, n, m)
    radius = _radii(rng, n)
    x[10:40], y[10:40], radius[10:40] = 100.0, 95.0, np.arange(1, 31)  # centres on the rim
    y[40:60] = np.round(y[40:60])
    flux, area, oob = _kernel(frames, x, y, radius, binary=True)
    for i in range(n):
        want = _binary_reference(frames, x[i], y[i], np.full(m, radius[i]), np.arange(m))
        assert np.array_equal(area[i], want[1])  # pixel counts: exactly the same pixels
        assert np.array_equal(oob[i], want[2]), (i, oob[i], want[2])
        np.testing.assert_allclose(flux[i], want[0], rtol=1e-12, atol=1e-9)
    assert area[10:40].min() > 0 and oob.any() and not oob.all()


def test_photometry_takes_binary_circles_of_grid_1_to_the_kernel(monkeypatch):
    """aperture_photometry measures binary circles of grid 1 (re-drawn or archi's, moved by
    whole pixels) with the kernel, other binary grids by weights, all equal to weighing their masks
    (cosmics patched first)."""
    rng = np.random.default_rng(9)
    n_frames = 30
    cube = _frames(rng, n_frames)
    x = np.vstack([np.linspace(5.0, 65.0, n_frames), np.full(n_frames, 35.0),
                   np.linspace(20.3, 44.6, n_frames)])
    y = np.vstack([np.full(n_frames, 30.0), np.linspace(3.0, 57.0, n_frames),
                   np.linspace(40.2, 19.9, n_frames)])
    x[1, 4] = np.nan
    hits = CosmicHits(np.array([2]), np.array([30]), np.array([int(x[0, 2])]), np.array([50.0]))
    cube[2, 30, int(x[0, 2])] = 1e6
    patched = cube.copy()
    hits.patch(patched, 0)
    calls = []
    real = photometry.circles_in_chunk
    monkeypatch.setattr(photometry, "circles_in_chunk",
                        lambda *args: calls.append(len(args[3])) or real(*args))
    apertures = [CircleAperture(8.0, mode="binary"), CircleAperture(30.0, mode="binary", grid=3),
                 CircleAperture(11.5, mode="archi", reference=(x[2, 0], y[2, 0]))]
    tracks = Tracks(x=x, y=y, measured=np.ones(x.shape, bool))
    sums = aperture_photometry(cube, tracks, apertures, chunk_frames=16, cosmics=hits)
    assert calls == [2, 2]  # the grid-1 circles only, in both chunks
    for j, aperture in enumerate(apertures):
        w, ix0, iy0 = aperture.weights(x[j], y[j])
        flux, area, oob = gather(patched, w, ix0, iy0)
        oob |= ~np.isfinite(x[j])
        np.testing.assert_allclose(sums.flux[j], flux, rtol=1e-12)
        assert np.array_equal(sums.area[j], area) and np.array_equal(sums.out_of_bounds[j], oob)
    assert sums.out_of_bounds[1, 4] and sums.flux[1, 4] == 0.0
    # archi's circle keeps the pixel count of its first frame; it moves by whole pixels
    w, ix0, _ = apertures[2].weights(x[2], y[2])
    assert np.all(w.sum(axis=(1, 2)) == w[0].sum()) and len(np.unique(ix0)) > 10


@pytest.mark.parametrize("mode, grid", [("exact", 1), ("binary", 1), ("archi", 1),
                                        ("binary", 3)])
def test_surely_out_of_bounds_claims_only_runs_the_photometry_flags(mode, grid):
    """The pre-check flags a run only when the photometry finds it out of bounds in some
    frame (here: the field's NaN corners, a NaN column, the image edge, NaN positions), and
    it does catch the circles that reach well over those."""
    rng = np.random.default_rng(11)
    m = 40
    h, w = 60, 70  # a small frame: most circles meet its edges
    frames = _frames(rng, m, shape=(h, w), field_radius=40.0)
    n = 120
    # tracks wandering over the frame (and a little beyond), some with a NaN position
    x = rng.uniform(-3, w + 3, n)[:, None] + np.cumsum(rng.normal(0, 0.4, (n, m)), axis=1)
    y = rng.uniform(-3, h + 3, n)[:, None] + np.cumsum(rng.normal(0, 0.4, (n, m)), axis=1)
    x[:3, 7] = np.nan
    radius = rng.uniform(1.0, 14.0, n) * grid
    circles = [CircleAperture(r, mode=mode, grid=grid,
                              reference=(x[i, 0], y[i, 0]) if mode == "archi" else None)
               for i, r in enumerate(radius)]
    tracks = Tracks(x=x, y=y, measured=np.ones((n, m), bool))
    oob = aperture_photometry(frames, tracks, circles).out_of_bounds.any(axis=1)
    surely = photometry.surely_out_of_bounds(frames, x, y, circles, samples=10)
    assert not (surely & ~oob).any(), np.flatnonzero(surely & ~oob)
    assert surely[:3].all()  # NaN positions
    assert surely.sum() > 0.5 * oob.sum() and surely.sum() < n
    # not circles: no claim
    assert not photometry.surely_out_of_bounds(frames, x[:2], y[:2], [None, None]).any()
    # a sampled frame without any usable pixel: every circle is out of bounds there
    frames[13] = np.nan
    assert photometry.surely_out_of_bounds(frames, x, y, circles, samples=10).all()
    assert aperture_photometry(frames, tracks, circles).out_of_bounds[:, 13].all()


@pytest.mark.parametrize("binary", [False, True])
def test_box_sums_weigh_each_circles_box_with_the_same_weights(binary):
    """``circle_and_box_sums``: the data's sums are ``circle_sums``' exactly, and each
    circle's sum over its box (parts of the circle beyond the box, NaN box pixels: 0) equals
    the reference weights (photutils' exact ones, or archi's binary mask) applied to the box
    laid on an empty canvas."""
    rng = np.random.default_rng(21 if binary else 17)
    m, n, n_boxes, size = 4, 40, 3, 41
    frames = _frames(rng, m)
    x = rng.uniform(30.0, 170.0, (n, 1)) + rng.normal(0.0, 0.4, (n, m))
    y = rng.uniform(30.0, 170.0, (n, 1)) + rng.normal(0.0, 0.4, (n, m))
    radius = rng.uniform(0.4, 24.0, n)
    box_of = rng.integers(-1, n_boxes, n)
    boxes = rng.normal(100.0, 30.0, (n_boxes, m, size, size))
    boxes[rng.random(boxes.shape) < 0.02] = np.nan
    # each box near its circles, so that some circles reach beyond their box
    box_x0 = rng.integers(30, 140, (n_boxes, m))
    box_y0 = rng.integers(30, 140, (n_boxes, m))
    for i in range(n):
        if box_of[i] >= 0:
            x[i] = box_x0[box_of[i]] + rng.uniform(5.0, size - 5.0)
            y[i] = box_y0[box_of[i]] + rng.uniform(5.0, size - 5.0)
    flags = np.full(n, binary)
    flux, area, oob, boxed = circlesum.circle_and_box_sums(
        frames, x, y, radius, flags, boxes, box_x0, box_y0, box_of)
    alone = circlesum.circle_sums(frames, x, y, radius, flags)
    for got, want in zip((flux, area, oob), alone):
        assert np.array_equal(got, want)
    for i in range(n):
        b = box_of[i]
        if b < 0:
            assert (boxed[i] == 0.0).all()
            continue
        canvas = np.zeros((m, H, W))  # the boxes lie inside the frame
        for k in range(m):
            canvas[k, box_y0[b, k]:box_y0[b, k] + size,
                   box_x0[b, k]:box_x0[b, k] + size] = np.nan_to_num(boxes[b, k])
        if binary:
            want = _binary_reference(canvas, x[i], y[i], np.full(m, radius[i]),
                                     np.arange(m))[0]
            magnitude = np.abs(want)
        else:
            want, _, _, magnitude = _photutils_sums(canvas, x[i], y[i], radius[i])
        assert (np.abs(boxed[i] - want) <= RTOL * magnitude + 1e-300).all(), i
    assert (box_of >= 0).sum() > 20 and (box_of < 0).any()
