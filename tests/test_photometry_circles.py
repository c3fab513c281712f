"""Exact circles by their boundary (archi.circlesum) against the straightforward exact weights.

The reference is ``CircleAperture.weights`` (exact overlap of every cutout pixel) gathered and
weighed by ``photometry.gather``; the boundary method must give the same flux and area (to
1e-9 relative) and exactly the same out-of-bounds flags, on both kinds of prefix table
(one window per chunk, one table per cutout box).
"""

from __future__ import annotations

import numpy as np
import pytest

from archi import circlecost, circlesum, photometry
from archi.circlesum import ColumnPrefix, circle_boxes, exact_circle_sums
from archi.cosmics import CosmicHits
from archi.masks import CircleAperture
from archi.photometry import aperture_photometry, gather
from archi.stars import Tracks

H, W = 60, 70  # frames are not square, to catch swapped axes


def _frames(rng, m: int, signed: bool = False) -> np.ndarray:
    """(m, H, W) frames with a NaN field edge (a disk of NaN outside, as CHEOPS), a NaN
    column edge, a few NaN pixels in some frames only and bright pixels."""
    frames = rng.normal(0.0, 50.0, (m, H, W)) if signed else rng.uniform(10.0, 1000.0, (m, H, W))
    yy, xx = np.indices((H, W))
    frames[:, np.hypot(xx - 35.0, yy - 30.0) > 40.0] = np.nan  # corners outside the field
    frames[:, :, -2:] = np.nan
    for k in range(0, m, 3):  # per-frame NaN pixels: the NaN pattern varies in the chunk
        frames[k, rng.integers(0, H, 4), rng.integers(0, W, 4)] = np.nan
    frames[:, 30, 35] = 1e5
    return frames


def _reference(frames, x, y, radius, frame):
    """Straightforward exact photometry, one item at a time: weights on the whole cutout,
    gather, weigh; a non-finite position measures nothing and is out of bounds."""
    n = len(x)
    flux, area, oob = np.zeros(n), np.zeros(n), np.zeros(n, dtype=bool)
    for i in range(n):
        w, ix0, iy0 = CircleAperture(radius[i]).weights(x[i:i + 1], y[i:i + 1])
        f, a, o = gather(frames[frame[i]:frame[i] + 1], w, ix0, iy0)
        flux[i], area[i], oob[i] = f[0], a[0], o[0]
    oob |= ~(np.isfinite(x) & np.isfinite(y))
    return flux, area, oob


def _assert_same(got, want, frames):
    flux, area, oob = got
    scale = np.nansum(np.abs(frames))  # for signed data; flux is positive otherwise
    np.testing.assert_allclose(area, want[1], rtol=1e-9, atol=1e-9)
    np.testing.assert_allclose(flux, want[0], rtol=1e-9, atol=1e-12 * scale)
    assert (oob == want[2]).all(), np.flatnonzero(oob != want[2])


def _positions(rng, n: int):
    """Sub-pixel positions across the frame and beyond its edges, with half-integer ones
    (circle edges exactly on pixel boundaries for integer radii) and non-finite ones."""
    x = rng.uniform(-8.0, W + 8.0, n)
    y = rng.uniform(-8.0, H + 8.0, n)
    x[::5] = np.round(x[::5]) + 0.5
    y[::5] = np.round(y[::5]) + 0.5
    x[1::7] = np.round(x[1::7])
    x[3], y[4], x[6], y[6] = np.nan, np.inf, -np.inf, np.nan
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
@pytest.mark.parametrize("layout", ["window", "boxes"])
def test_boundary_sums_equal_exact_weights(layout, signed):
    rng = np.random.default_rng(11 if signed else 3)
    m, n = 8, 240
    frames = _frames(rng, m, signed)
    x, y = _positions(rng, n)
    radius = _radii(rng, n)
    frame = rng.integers(0, m, n)
    ix0, iy0 = circle_boxes(x, y, radius)
    size = np.array([CircleAperture(r).size for r in radius]) * np.isfinite(x + y)
    build = ColumnPrefix._on_window if layout == "window" else ColumnPrefix._on_boxes
    if layout == "window":
        extra = circlecost.boxes_window((H, W), ix0, iy0, size)
    else:
        extra = (int(size.max()),)
    prefix = build(frames, frame, ix0, iy0, size, *extra)
    got = exact_circle_sums(frames, prefix, np.arange(n), x, y, radius)
    _assert_same(got, _reference(frames, x, y, radius, frame), frames)


def test_nan_pixels_at_the_rim_and_inside_flag_the_circle():
    """A NaN pixel of positive weight (inside, or a sliver at the rim) flags the frame; one
    just beyond the rim does not; NaN pixels are left out of flux and area."""
    frames = np.full((4, H, W), 100.0)
    x = np.array([30.3, 30.3, 30.3, 30.3])
    y = np.array([25.6, 25.6, 25.6, 25.6])
    r = 5.0
    frames[1, 26, 31] = np.nan  # inside
    frames[2, 26, 35] = np.nan  # the rim column: pixel x in [34.5, 35.5] meets the circle
    frames[3, 26, 36] = np.nan  # beyond: x >= 35.5 > 30.3 + 5
    ix0, iy0 = circle_boxes(x, y, r)
    size = CircleAperture(r).size
    for prefix in (ColumnPrefix._on_window(frames, np.arange(4), ix0, iy0,
                                           np.full(4, size), 0, H, 0, W),
                   ColumnPrefix._on_boxes(frames, np.arange(4), ix0, iy0, np.full(4, size),
                                          size)):
        flux, area, oob = exact_circle_sums(frames, prefix, np.arange(4), x, y, r)
        assert oob.tolist() == [False, True, True, False]
        assert area[0] == pytest.approx(np.pi * r * r, abs=1e-9)
        assert area[1] == pytest.approx(area[0] - 1.0, abs=1e-9)  # a full pixel lost
        assert 0 < area[0] - area[2] < 1
        assert area[3] == pytest.approx(area[0], abs=1e-9)
        np.testing.assert_allclose(flux, 100.0 * area, rtol=1e-12)
        _assert_same((flux, area, oob), _reference(frames, x, y, np.full(4, r), np.arange(4)),
                     frames)


def test_slivers_below_the_weight_threshold_do_not_touch():
    """A circle that enters a NaN pixel by a sliver of area < 1e-12 does not touch it (the
    exact weights zero such rounding-level slivers); a larger sliver does."""
    frames = np.full((1, H, W), 5.0)
    frames[0, :, 36] = np.nan  # pixels x in [35.5, 36.5]
    r = 5.0
    x = 30.5 + np.array([1e-9, 1e-7, -1e-9])  # rightmost point 35.5 + 1e-9, + 1e-7, - 1e-9
    y = np.full(3, 20.3)
    ix0, iy0 = circle_boxes(x, y, r)
    prefix = ColumnPrefix.build(frames, np.zeros(3, int), ix0, iy0, CircleAperture(r).size)
    got = exact_circle_sums(frames, prefix, np.arange(3), x, y, r)
    want = _reference(frames, x, y, np.full(3, r), np.zeros(3, int))
    _assert_same(got, want, frames)
    assert got[2].tolist() == [False, True, False]


def test_tiny_circles_and_circles_on_pixel_boundaries():
    """Circles inside one pixel, centred on a pixel corner, and integer radii on half-integer
    positions (every chord end on a pixel edge) weigh exactly pi r^2."""
    frames = np.ones((1, H, W))
    x = np.array([20.0, 20.5, 20.2, 20.5, 20.5, 20.0, 20.37])
    y = np.array([20.0, 20.5, 20.3, 20.0, 20.5, 20.5, 20.81])
    r = np.array([0.3, 0.3, 0.05, 1.0, 2.0, 3.0, 0.49])
    ix0, iy0 = circle_boxes(x, y, r)
    size = np.array([CircleAperture(v).size for v in r])
    prefix = ColumnPrefix.build(frames, np.zeros(len(x), int), ix0, iy0, size)
    flux, area, oob = exact_circle_sums(frames, prefix, np.arange(len(x)), x, y, r)
    np.testing.assert_allclose(area, np.pi * r * r, rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(flux, area, rtol=1e-12)
    assert not oob.any()


def test_nested_circles_on_a_shared_box():
    """Circles of several radii weighed on the cutouts of the largest (as weights_in)."""
    rng = np.random.default_rng(5)
    m = 12
    frames = _frames(rng, m)
    x = np.linspace(3.0, 64.0, m) + rng.uniform(-0.5, 0.5, m)
    y = np.linspace(50.0, 6.0, m) + rng.uniform(-0.5, 0.5, m)
    x[4] = np.nan
    radii = [0.4, 3.0, 7.5, 12.25, 19.9]
    big = CircleAperture(max(radii))
    ix0, iy0 = circle_boxes(x, y, big.real_radius)
    size = big.size * np.isfinite(x + y)
    prefix = ColumnPrefix.build(frames, np.arange(m), ix0, iy0, size)
    box = np.tile(np.arange(m), len(radii))
    radius = np.repeat(radii, m)
    flux, area, oob = exact_circle_sums(frames, prefix, box, np.tile(x, len(radii)),
                                        np.tile(y, len(radii)), radius)
    for i, r in enumerate(radii):
        w, _, _ = CircleAperture(r).weights_in(x, y, ix0, iy0, big.size)
        want = list(gather(frames, w, ix0, iy0))
        want[2] = want[2] | ~np.isfinite(x + y)
        sl = slice(i * m, (i + 1) * m)
        _assert_same((flux[sl], area[sl], oob[sl]), want, frames)


def test_column_prefix_runs_are_brute_force_sums():
    rng = np.random.default_rng(2)
    m = 5
    frames = _frames(rng, m)
    n = 300
    ix0 = rng.integers(-10, W, n)
    iy0 = rng.integers(-10, H, n)
    size = 12
    frame = rng.integers(0, m, n)
    for prefix in (ColumnPrefix._on_window(frames, frame, ix0, iy0, np.full(n, size),
                                           *circlecost.boxes_window((H, W), ix0, iy0,
                                                              np.full(n, size))),
                   ColumnPrefix._on_boxes(frames, frame, ix0, iy0, np.full(n, size), size)):
        col = ix0 + rng.integers(0, size, n)
        a = iy0 + rng.integers(0, size, n)
        b = np.minimum(a + rng.integers(-1, size, n), iy0 + size - 1)
        total, count, complete = prefix.runs(np.arange(n), col, a, b)
        for i in range(n):
            rows = np.arange(a[i], b[i] + 1)
            inside = (rows >= 0) & (rows < H) & (0 <= col[i] < W)
            values = frames[frame[i], rows[inside], col[i]] if inside.any() else np.zeros(0)
            finite = np.isfinite(values)
            assert total[i] == pytest.approx(values[finite].sum(), rel=1e-12, abs=1e-9)
            assert count[i] == finite.sum()
            assert complete[i] == (inside.all() and finite.all())


@pytest.mark.parametrize("boundary", [True, False])
def test_photometry_uses_either_method_with_the_same_numbers(monkeypatch, boundary):
    """aperture_photometry on exact circles (any grid, cosmics patched first), forced to
    either method, equals the straightforward computation."""
    monkeypatch.setattr(photometry, "boundary_method_pays", lambda *args: boundary)
    rng = np.random.default_rng(8)
    n_frames = 40
    cube = _frames(rng, n_frames)
    x = np.vstack([np.linspace(10.0, 60.0, n_frames), np.full(n_frames, 35.2),
                   np.linspace(68.0, 40.0, n_frames)]) + rng.uniform(-0.4, 0.4, (3, n_frames))
    y = np.vstack([np.full(n_frames, 30.5), np.linspace(2.0, 58.0, n_frames),
                   np.linspace(40.0, 20.0, n_frames)])
    x[1, 7] = np.nan
    hits = CosmicHits(np.array([3, 20]), np.array([30, 31]), np.array([int(x[0, 3]), 35]),
                      np.array([100.0, 100.0]))
    cube[3, 30, int(x[0, 3])] = cube[20, 31, 35] = 1e6
    patched = cube.copy()
    hits.patch(patched, 0)
    tracks = Tracks(x=x, y=y, measured=np.ones(x.shape, bool))
    apertures = [CircleAperture(6.3), CircleAperture(21.0, grid=3), None]
    sums = aperture_photometry(cube, tracks, apertures, chunk_frames=16, cosmics=hits)
    for j, aperture in enumerate(apertures):
        if aperture is None:
            assert np.isnan(sums.flux[j]).all()
            continue
        want = _reference(patched, x[j], y[j], np.full(n_frames, aperture.real_radius),
                          np.arange(n_frames))
        _assert_same((sums.flux[j], sums.area[j], sums.out_of_bounds[j]), want, patched)
    assert sums.out_of_bounds[1, 7] and sums.flux[1, 7] == 0.0


def test_boundary_method_is_chosen_for_large_circles_only():
    """The cheaper method by the cost model: cutouts for small circles, the boundary for
    large ones and for many nested radii."""
    x = np.tile([20.0, 50.0, 80.0, 120.0, 160.0], 64)
    y = np.repeat(np.linspace(20.0, 180.0, 64), 5)
    pays = {}
    for r in (4.0, 32.0):
        ix0, iy0 = circle_boxes(x, y, r)
        pays[r] = circlecost.boundary_method_pays(64, (200, 200), ix0, iy0,
                                                 np.full(len(x), CircleAperture(r).size),
                                                 len(x))
    assert pays == {4.0: False, 32.0: True}


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


@pytest.mark.parametrize("layout", ["window", "boxes"])
def test_binary_circle_runs_equal_binary_weights(layout):
    """The same pixels as archi's mask (pixel centres exactly on the circle included: integer
    positions and radii), the same counts and out-of-bounds flags, sums to rounding."""
    rng = np.random.default_rng(5)
    m, n = 8, 300
    frames = _frames(rng, m, signed=True)
    x, y = _positions(rng, n)
    radius = _radii(rng, n)
    x[10:40], y[10:40], radius[10:40] = 30.0, 25.0, np.arange(1, 31)  # centres on the rim
    y[40:60] = np.round(y[40:60])
    frame = rng.integers(0, m, n)
    ix0, iy0 = circle_boxes(x, y, radius)
    size = np.array([CircleAperture(r).size for r in radius]) * np.isfinite(x + y)
    build = ColumnPrefix._on_window if layout == "window" else ColumnPrefix._on_boxes
    extra = (circlecost.boxes_window((H, W), ix0, iy0, size) if layout == "window"
             else (int(size.max()),))
    prefix = build(frames, frame, ix0, iy0, size, *extra)
    flux, area, oob = circlesum.binary_circle_sums(prefix, np.arange(n), x, y, radius)
    want = _binary_reference(frames, x, y, radius, frame)
    assert np.array_equal(area, want[1])  # pixel counts: exactly the same pixels
    assert np.array_equal(oob, want[2]), np.flatnonzero(oob != want[2])
    np.testing.assert_allclose(flux, want[0], rtol=1e-12, atol=1e-9)
    assert area[10:40].min() > 0 and oob.any() and not oob.all()


def test_photometry_takes_the_binary_fast_path_with_the_same_numbers(monkeypatch):
    """aperture_photometry measures binary circles of grid 1 (re-drawn or archi's, moved by
    whole pixels) by runs, other binary grids by weights, all equal to weighing their masks
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
    real = photometry.binary_circles_in_chunk
    monkeypatch.setattr(photometry, "binary_circles_in_chunk",
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
    frames = _frames(rng, m)
    n = 120
    # tracks wandering over the frame (and a little beyond), some with a NaN position
    x = rng.uniform(-3, W + 3, n)[:, None] + np.cumsum(rng.normal(0, 0.4, (n, m)), axis=1)
    y = rng.uniform(-3, H + 3, n)[:, None] + np.cumsum(rng.normal(0, 0.4, (n, m)), axis=1)
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
