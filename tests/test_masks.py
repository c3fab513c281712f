"""Aperture masks: exact and archi-like circles, star regions, growth, shape templates."""

from __future__ import annotations

import numpy as np
import pytest
from photutils.aperture import CircularAperture
from photutils.geometry import circular_overlap_grid
from scipy import ndimage as ndi

from archi.geometry import field_of_view_mask
from archi.options import APERTURE_MODES
from archi.io import read_visit
from archi.masks import (CIRCLE_MODES, Aperture, CircleAperture, ShapeAperture, cutouts,
                         outside_field, shape_apertures)
from archi.segmentation import grow, segment_stars, star_regions, threshold_regions
from archi.simulate import SimulationConfig, StarSpec, read_truth, simulate_visit



def _paste(weights, ix0, iy0, shape=(200, 200)):
    """Add (n, h, w) cutouts into full images (clipped), one per position."""
    out = np.zeros((len(weights),) + shape)
    h, w = weights.shape[1:]
    for k in range(len(weights)):
        full = np.zeros((shape[0] + 2 * 100, shape[1] + 2 * 100))
        full[iy0[k] + 100: iy0[k] + 100 + h, ix0[k] + 100: ix0[k] + 100 + w] = weights[k]
        out[k] = full[100:-100, 100:-100]
    return out


def _sums(images, aperture, x, y):
    w, ix0, iy0 = aperture.weights(x, y)
    return np.nansum(w * cutouts(images, ix0, iy0, w.shape[1:]), axis=(1, 2))


@pytest.fixture(scope="module")
def lone_star(tmp_path_factory):
    """Noise-free visit of an isolated target, no sky: (images + DRP background, truth)."""
    cfg = SimulationConfig(n_frames=2, noise_free=True, background_rate=0.0,
                           stray_light_rate=0.0, field=(), layouts=("drp",),
                           write_optimal=False)
    paths = simulate_visit(cfg, tmp_path_factory.mktemp("lone") / "v")
    visit, truth = read_visit(paths.drp_folder), read_truth(paths.truth_path)
    images = np.asarray(visit.cube) + truth.frames["BACKGROUND_ESTIMATE"][:, None, None]
    return images, truth


@pytest.fixture(scope="module")
def blended(tmp_path_factory):
    """Realistic (noisy) visit: target, the default field's blended pair (14.6 px apart),
    a faint star and a star outside the field."""
    field = (StarSpec(48.0, 30.0, 2.0), StarSpec(50.0, 47.0, 2.5),
             StarSpec(38.0, 300.0, 4.5), StarSpec(140.0, 235.0, 2.0))
    cfg = SimulationConfig(n_frames=3, seed=11, field=field, layouts=("drp",),
                           write_optimal=False)
    paths = simulate_visit(cfg, tmp_path_factory.mktemp("pair") / "v")
    return np.asarray(read_visit(paths.drp_folder).cube), read_truth(paths.truth_path)


# -- circles ---------------------------------------------------------------------------

@pytest.mark.parametrize("radius", [0.4, 1.0, 3.3, 12.5, 20.0, 31.7])
def test_exact_circle_has_area_pi_r2_and_matches_photutils(radius):
    rng = np.random.default_rng(1)
    x, y = rng.uniform(40, 160, 25), rng.uniform(40, 160, 25)
    x[:3], y[:3] = [100.0, 100.5, 100.5], [100.0, 100.0, 100.5]
    ap = CircleAperture(radius)
    w, ix0, iy0 = ap.weights(x, y)
    assert isinstance(ap, Aperture)
    assert w.shape == (25,) + ap.cutout_shape and ix0.dtype.kind == "i"
    assert w.min() >= 0 and w.max() <= 1
    assert np.allclose(w.sum(axis=(1, 2)), np.pi * radius ** 2, rtol=0, atol=1e-9)
    assert ap.area == pytest.approx(np.pi * radius ** 2)
    # same weights, in full-image coordinates, as photutils' exact masks
    ours = _paste(w, ix0, iy0)
    for k, mask in enumerate(CircularAperture(np.column_stack([x, y]), r=radius)
                             .to_mask(method="exact")):
        assert np.allclose(ours[k], mask.to_image((200, 200)), rtol=0, atol=1e-9)
        h = ap.size  # and the raw photutils overlap routine on our own cutout
        ref = circular_overlap_grid(ix0[k] - 0.5 - x[k], ix0[k] + h - 0.5 - x[k],
                                    iy0[k] - 0.5 - y[k], iy0[k] + h - 0.5 - y[k],
                                    h, h, radius, 1, 1)
        assert np.allclose(w[k], ref, rtol=0, atol=1e-9)


@pytest.mark.parametrize("radius", [0.5, 2.0, 7.3, 20.0])
def test_binary_circle_is_archis_pixel_centre_mask(radius):
    rng = np.random.default_rng(2)
    x, y = rng.uniform(30, 170, 20), rng.uniform(30, 170, 20)
    x[:2], y[:2] = [100.0, 100.5], [100.0, 100.0]  # exact ties are inside (<=)
    w, ix0, iy0 = CircleAperture(radius, mode="binary").weights(x, y)
    assert set(np.unique(w)) <= {0.0, 1.0}
    yy, xx = np.mgrid[:200, :200]
    for k, full in enumerate(_paste(w, ix0, iy0)):
        assert np.array_equal(full, (xx - x[k]) ** 2 + (yy - y[k]) ** 2 <= radius ** 2)
    # grid = 1 is the binary mask; the binary mask's area scatters around pi r^2
    g1 = CircleAperture(radius, mode="binary", grid=1).weights(x, y)[0]
    assert np.array_equal(g1, w)


@pytest.mark.parametrize("s, radius", [(1, 7.3), (1, 20.0), (3, 20.0), (3, 7.5)])
def test_archi_circle_is_the_first_mask_rolled_by_whole_pixels(s, radius):
    """mode "archi": archi's mask of the reference position on its (fine) grid, moved by
    np.roll of the rounded offset; its shape and pixel count never change."""
    rng = np.random.default_rng(11)
    n = 80
    x0, y0 = rng.uniform(38, 42, 2)
    x = x0 + np.r_[0.0, 0.49 / s, 0.51 / s, -0.49 / s, -0.51 / s, rng.uniform(-12, 12, 20)]
    y = y0 + np.r_[0.0, -0.49 / s, 0.0, 0.3 / s, 0.0, rng.uniform(-12, 12, 20)]
    ap = CircleAperture(radius, mode="archi", grid=s, reference=(x0, y0))
    vv, uu = np.mgrid[:n * s, :n * s]
    first = (uu - (s * x0 + s // 2)) ** 2 + (vv - (s * y0 + s // 2)) ** 2 <= radius ** 2
    w, ix0, iy0 = ap.weights(x, y)
    ours = _paste(w, ix0, iy0, shape=(n, n))
    for k in range(len(x)):
        dx, dy = (int(np.floor(s * d + 0.5)) for d in (x[k] - x0, y[k] - y0))
        rolled = np.roll(np.roll(first, dy, axis=0), dx, axis=1)  # far from the edges
        want = rolled.reshape(n, s, n, s).sum(axis=(1, 3)) / s ** 2
        assert np.array_equal(ours[k], want), k
    np.testing.assert_allclose(w.sum(axis=(1, 2)), first.sum() / s ** 2, rtol=1e-13)
    # half a pixel of the grid moves it by one; less does not move it
    assert np.array_equal(ours[1], ours[0]) and np.array_equal(ours[3], ours[0])
    assert not np.array_equal(ours[2], ours[0]) and not np.array_equal(ours[4], ours[0])
    # without a position to start from, nothing is measured
    nowhere = CircleAperture(radius, mode="archi", grid=s, reference=(np.nan, np.nan))
    assert not nowhere.weights(x, y)[0].any()
    with pytest.raises(ValueError, match="reference"):
        CircleAperture(radius, mode="archi")
    with pytest.raises(ValueError, match="reference"):
        CircleAperture(radius, mode="binary", reference=(x0, y0))
    assert CIRCLE_MODES == APERTURE_MODES  # every mode the configuration accepts exists


@pytest.mark.parametrize("s, radius", [(3, 20.0), (3, 7.5), (5, 33.3), (1, 9.0)])
def test_grid_circle_equals_the_explicit_upsampled_computation(s, radius):
    rng = np.random.default_rng(3)
    image = rng.normal(100.0, 30.0, (40, 40))
    up = np.repeat(np.repeat(image, s, axis=0), s, axis=1) / s ** 2  # archi's change_grid
    vv, uu = np.mgrid[:40 * s, :40 * s]
    x, y = rng.uniform(8, 32, 15), rng.uniform(8, 32, 15)
    ap = CircleAperture(radius, mode="binary", grid=s)
    assert ap.real_radius == pytest.approx(radius / s)
    ours = _sums(image, ap, x, y)
    for k in range(len(x)):
        mask = (uu - (s * x[k] + s // 2)) ** 2 + (vv - (s * y[k] + s // 2)) ** 2 <= radius ** 2
        assert ours[k] == pytest.approx(np.sum(mask * up), rel=1e-12)
    # finer grids converge to the exact circle of radius / s
    w = ap.weights(x, y)[0].sum(axis=(1, 2))
    assert np.all(np.abs(w - np.pi * (radius / s) ** 2) < 2.5 * np.pi * radius / s ** 2)
    exact = CircleAperture(radius, mode="exact", grid=s).weights(x, y)[0]
    assert np.allclose(exact.sum(axis=(1, 2)), np.pi * (radius / s) ** 2)


def test_circle_flux_on_a_simulated_star_grows_to_the_true_flux(lone_star):
    images, truth = lone_star
    x, y, flux = truth.x[0], truth.y[0], truth.flux[0]
    radii = [5, 10, 15, 20, 25, 30, 40, 60]
    exact = np.array([_sums(images, CircleAperture(r), x, y) / flux for r in radii])
    binary = np.array([_sums(images, CircleAperture(r, "binary"), x, y) / flux
                       for r in radii])
    assert np.all(np.diff(exact, axis=0) > 0)
    assert np.all(np.diff(binary, axis=0) > 0)
    # the PSF's encircled energy (simulate.psf), with its far wings: 2.3 % beyond 60 px
    for r, frac in [(15, 0.761), (20, 0.894), (25, 0.927), (30, 0.941), (40, 0.958),
                    (60, 0.977)]:
        assert exact[radii.index(r)] == pytest.approx(frac, abs=0.005)
    assert exact[-1].max() < 1.0 + 1e-9
    assert np.allclose(binary[2:], exact[2:], rtol=0.01)


def test_bad_circle_options_are_rejected():
    for bad in [dict(radius=0.0), dict(radius=-1.0), dict(radius=np.nan),
                dict(radius=5.0, mode="fuzzy"), dict(radius=5.0, grid=2),
                dict(radius=5.0, grid=0)]:
        with pytest.raises(ValueError):
            CircleAperture(**bad)


# -- regions ---------------------------------------------------------------------------

def test_star_regions_split_a_blended_pair(blended):
    cube, truth = blended
    for k in range(cube.shape[0]):
        x, y = truth.x[:, k], truth.y[:, k]
        seg = segment_stars(cube[k], x, y)
        regions = seg.regions
        assert len(regions) == 5 and all(r.shape == (200, 200) for r in regions)
        assert not np.any(np.sum(regions, axis=0) > 1)  # disjoint
        assert not any(r[np.isnan(cube[k])].any() for r in regions)
        a, b = 1, 2
        assert np.hypot(x[a] - x[b], y[a] - y[b]) == pytest.approx(14.6, abs=0.2)
        pa = (int(round(y[a])), int(round(x[a])))
        pb = (int(round(y[b])), int(round(x[b])))
        assert regions[a][pa] and not regions[a][pb]
        assert regions[b][pb] and not regions[b][pa]
        for i in (0, a, b):  # bright stars: real regions of archi-like size
            assert not seg.fallback[i] and 500 < regions[i].sum() < 1500
            p = (int(round(y[i])), int(round(x[i])))
            assert regions[i][p]
        assert regions[3].any()  # the faint star keeps a region
        assert seg.fallback[4] and not regions[4].any()  # outside the field: empty


def test_star_regions_never_crash():
    image = np.full((200, 200), np.nan)
    regions = star_regions(image, [100.0, 50.0], [100.0, 50.0])
    assert [r.sum() for r in regions] == [0, 0]
    # nothing above the threshold (empty field): 3-px fallback disks on finite pixels
    image = np.where(field_of_view_mask(), 0.0, np.nan)
    seg = segment_stars(image, [100.0, np.nan, 150.0, 1e6, 2.0], [100.0, 3.0, 100.0, 2.0, 2.0])
    assert seg.fallback.all()
    assert [r.sum() for r in seg.regions] == [29, 0, 29, 0, 0]
    # pure noise: no crash, regions stay on finite pixels
    rng = np.random.default_rng(5)
    noisy = np.where(field_of_view_mask(), rng.normal(0, 5, (200, 200)), np.nan)
    for r in star_regions(noisy, [100.0, 150.0], [100.0, 100.0]):
        assert r.any() and not r[np.isnan(noisy)].any()
    with pytest.raises(ValueError):
        star_regions(image[0], [1.0], [1.0])


def test_a_faint_star_next_to_a_bright_one_keeps_its_own_region():
    yy, xx = np.mgrid[:120, :120].astype(float)
    x, y = np.array([50.0, 62.0]), np.array([60.0, 60.0])
    image = (1e4 * np.exp(-((xx - 50) ** 2 + (yy - 60) ** 2) / 50.0)
             + 1e2 * np.exp(-((xx - 62) ** 2 + (yy - 60) ** 2) / 50.0))
    seg = segment_stars(image, x, y)
    assert not seg.fallback.any()
    assert seg.regions[1][60, 62] and not seg.regions[1][60, 50]
    assert seg.regions[0].sum() > 3 * seg.regions[1].sum()
    # the split follows brightness: the boundary is nearer the faint star than midway
    assert seg.cells[60, 57] == 0 and seg.cells[60, 59] == 1


def test_threshold_regions_orders_by_peak():
    image = np.zeros((50, 60))
    image[5:10, 5:10] = 3.0
    image[30:40, 30:45] = 7.0
    image[45, 55] = 9.0  # a hot pixel, dropped by min_area
    image[0, 0] = np.nan
    labels, peaks = threshold_regions(image, 1.0, min_area=4)
    assert list(peaks) == [7.0, 3.0]
    assert labels[35, 35] == 1 and labels[7, 7] == 2 and labels[45, 55] == 0
    assert labels.max() == 2 and (labels == 1).sum() == 150


# -- growth and shape templates ---------------------------------------------------------

@pytest.mark.parametrize("layers", [1, 2, 5])
def test_grow_adds_exactly_layers_rings_even_at_the_edges(layers):
    region = np.zeros((30, 40), dtype=bool)
    region[0, 0] = region[29, 39] = region[15, 20] = True  # corners and centre
    region[10, 39] = True  # last column
    grown = grow(region, layers)
    L = layers
    assert grown[:L + 1, :L + 1].all() and grown[-L - 1:, -L - 1:].all()
    assert grown[15 - L:16 + L, 20 - L:21 + L].all()
    assert grown[10 - L:11 + L, 39 - L:].all()
    expected = ndi.binary_dilation(region, np.ones((3, 3), bool), iterations=L)
    assert np.array_equal(grown, expected)
    assert np.array_equal(grow(region, 0), region) and grow(region, 0) is not region
    # each layer is one ring of the Chebyshev distance
    centre = np.zeros((30, 40), dtype=bool)
    centre[15, 20] = True
    assert grow(centre, L).sum() == (2 * L + 1) ** 2
    assert grow(centre, L, metric="manhattan").sum() == 2 * L * (L + 1) + 1
    assert grow(centre, L, metric="euclidean").sum() <= (2 * L + 1) ** 2
    with pytest.raises(ValueError):
        grow(region, -1)
    with pytest.raises(ValueError):
        grow(region, 1.5)


def _blob():
    region = np.zeros((200, 200), dtype=bool)
    yy, xx = np.mgrid[:200, :200]
    region[(xx - 60) ** 2 / 49 + (yy - 80) ** 2 / 16 <= 1] = True
    region[78:83, 66:70] = True
    return region


def test_shape_aperture_integer_shift_matches_rounding():
    region = _blob()
    ap = ShapeAperture(region, 60.25, 80.75, 3, shift="integer")
    template, ox, oy = ap.template
    assert np.array_equal(template > 0, grow(region, 3)[oy:oy + template.shape[0],
                                                       ox:ox + template.shape[1]])
    assert ap.area == grow(region, 3).sum()
    dx = np.array([0.0, 2.4, -1.6, 0.5, -0.5, 10.49])
    dy = np.array([0.0, -1.6, 2.6, -0.5, 0.5, -7.51])
    w, ix0, iy0 = ap.weights(60.25 + dx, 80.75 + dy)
    assert np.array_equal(ix0 - ox, np.floor(dx + 0.5)) and \
        np.array_equal(iy0 - oy, np.floor(dy + 0.5))
    h, ww = template.shape
    assert np.array_equal(w[:, :h, :ww], np.broadcast_to(template, (6, h, ww)))
    assert np.all(w.sum(axis=(1, 2)) == ap.area)


def test_bilinear_shape_aperture_conserves_weight():
    region = _blob()
    ap = ShapeAperture(region, 60.0, 80.0, 2, shift="bilinear")
    integer = ShapeAperture(region, 60.0, 80.0, 2, shift="integer")
    w, ix0, iy0 = ap.weights([60.5, 60.0, 60.5, 63.25], [80.0, 80.5, 80.5, 78.9])
    assert np.allclose(w.sum(axis=(1, 2)), ap.area, rtol=1e-12)
    assert w.min() >= 0 and w.max() <= 1
    # half a pixel in x = mean of the template at shifts 0 and 1
    full = _paste(w, ix0, iy0)
    t0 = _paste(*integer.weights([60.0], [80.0]))[0]
    t1 = _paste(*integer.weights([61.0], [80.0]))[0]
    assert np.allclose(full[0], 0.5 * (t0 + t1))
    # continuous in position
    a = _paste(*ap.weights([61.999999], [80.0]))[0]
    b = _paste(*ap.weights([62.0], [80.0]))[0]
    assert np.abs(a - b).max() < 1e-5


def test_shape_aperture_on_the_background_grid():
    region = _blob()
    fine = ShapeAperture(region, 60.0, 80.0, 6, grid=3, shift="integer")
    real = ShapeAperture(region, 60.0, 80.0, 2, grid=1, shift="integer")
    # Chebyshev growth by 3 s fine pixels = growth by s real pixels
    assert fine.area == real.area
    assert np.array_equal(_paste(*fine.weights([60.0], [80.0])),
                          _paste(*real.weights([60.0], [80.0])))
    # a shift of one fine pixel moves a third of a pixel's sub-pixels
    w, ix0, iy0 = fine.weights([60.0 + 1 / 3], [80.0])
    assert np.allclose(w.sum(), fine.area)
    assert set(np.round(np.unique(w) * 9, 9)) <= set(range(10))
    bil = ShapeAperture(region, 60.0, 80.0, 4, grid=3)
    rng = np.random.default_rng(4)
    wb = bil.weights(rng.uniform(55, 65, 7), rng.uniform(75, 85, 7))[0]
    assert np.allclose(wb.sum(axis=(1, 2)), bil.area) and wb.max() <= 1


def test_shape_aperture_from_star_regions_measures_the_star(lone_star):
    images, truth = lone_star
    x, y = truth.x[0], truth.y[0]
    region = star_regions(images[0], x[:1], y[:1])[0]
    fractions = [np.sum(_sums(images, ShapeAperture(region, x[0], y[0], n), x, y)
                        / truth.flux[0]) / len(x) for n in (0, 3, 8)]
    assert 0.85 < fractions[0] < fractions[1] < fractions[2] < 1.0
    # an empty region (too faint) becomes the pixel at the reference position, grown
    empty = ShapeAperture(np.zeros((200, 200), bool), 10.4, 20.6, 1)
    w, ix0, iy0 = empty.weights([10.4], [20.6])
    assert empty.area == 9 and (ix0[0], iy0[0]) == (9, 20)


# -- out of field ----------------------------------------------------------------------

def test_outside_field_per_position_and_frame():
    field = field_of_view_mask()
    nan_mask = ~field
    ap = CircleAperture(10.0)
    x = np.array([100.0, 180.0, 100.0, 5.0, 195.0, np.nan, 191.0])
    y = np.array([100.0, 100.0, 185.0, 100.0, 195.0, 100.0, 100.0])
    w, ix0, iy0 = ap.weights(x, y)
    flag = outside_field(w, ix0, iy0, nan_mask)
    assert flag.tolist() == [False, False, False, True, True, True, True]
    assert not w[5].any()  # a non-finite position gets no weight
    # with a per-frame mask (e.g. a NaN hot pixel in one frame only)
    cube = np.repeat(nan_mask[None], len(x), axis=0)
    cube[0, 102, 98] = True
    cube[2, 50, 50] = True
    assert outside_field(w, ix0, iy0, cube).tolist() == \
        [True, False, False, True, True, True, True]
    # the image edge counts even without NaN pixels
    assert outside_field(*ap.weights([3.0, 100.0], [100.0, 100.0]),
                         np.zeros((200, 200), bool)).tolist() == [True, False]
    # shape templates too
    shape = ShapeAperture(_blob(), 60.0, 80.0, 2)
    w, ix0, iy0 = shape.weights([60.0, 5.0], [80.0, 80.0])
    assert outside_field(w, ix0, iy0, nan_mask).tolist() == [False, True]


def test_shape_apertures_of_a_frame(blended):
    cube, truth = blended
    x, y = truth.x[:, 0], truth.y[:, 0]
    aps = shape_apertures(cube[0], x, y, [2, 2, 2, 1, 0])
    regions = star_regions(cube[0], x, y)
    assert len(aps) == 5 and all(isinstance(a, Aperture) for a in aps)
    assert aps[0].area > regions[0].sum() and aps[3].area > regions[3].sum()
    assert aps[4].area == 1  # empty region: the reference pixel
    w, ix0, iy0 = aps[1].weights(truth.x[1], truth.y[1])
    assert w.shape[0] == cube.shape[0]
    assert not outside_field(w, ix0, iy0, np.isnan(cube)).any()
