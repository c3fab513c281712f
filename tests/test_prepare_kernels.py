"""The prepare step's compiled kernels and memory (issue 17): every star rendered in one
pass as rendered alone, the PSF's blurred stamp against its definition, a
memory-mapped cube read without being held (by prepare's MaskedCube and by the later
jobs' PagedArray), and the PSF's phase stamps stored in prepared.fits."""

from __future__ import annotations

import numpy as np
import pytest
from astropy.io import fits
from scipy import ndimage

from archi.fieldimage import FieldModel, sky_residual
from archi.framequality import (
    MaskedCube,
    PagedArray,
    assess_frames,
    file_mapping,
    paged,
)
from archi.io.prepared import read_prepared, write_prepared
from archi.medians import nanmedian_first
from archi.options import Options
from archi.prepared import Prepared
from archi.psf import EmpiricalPsf
from archi.splineshift import spline_shift
from archi.stars import StarList, Tracks


def gaussian_psf(radius: int = 20, sigma: float = 2.5) -> EmpiricalPsf:
    yy, xx = np.indices((2 * radius + 1, 2 * radius + 1)) - radius
    stamp = np.exp(-0.5 * (xx ** 2 + yy ** 2) / sigma ** 2)
    return EmpiricalPsf(stamp / stamp.sum(), radius)


@pytest.fixture(scope="module")
def model() -> FieldModel:
    """Three stars turning about the first over 6 frames, one partly beyond the edge, a
    corner of the frame without data."""
    rng = np.random.default_rng(7)
    n = 6
    angle = np.radians(np.linspace(0.0, 25.0, n))
    dx, dy = np.array([0.0, 18.5, -30.2]), np.array([0.0, 7.3, 21.0])
    x = 40.3 + dx[:, None] * np.cos(angle) - dy[:, None] * np.sin(angle)
    y = 41.7 + dx[:, None] * np.sin(angle) + dy[:, None] * np.cos(angle)
    x, y = x + rng.uniform(-0.3, 0.3, x.shape), y + rng.uniform(-0.3, 0.3, y.shape)
    usable = np.ones((80, 80), bool)
    usable[:10, :10] = False
    return FieldModel(gaussian_psf(), x, y, x[0], y[0], np.array([1e6, 3e5, 5e4]), 3.0,
                      (80, 80), usable)


def test_every_star_on_its_own_image_as_rendered_alone(model):
    frames = slice(1, 5)
    together = model.render(frames, separate=True)
    assert together.shape == (4, 3, 80, 80)
    for j in range(3):
        alone = model.render(frames, [j])
        np.testing.assert_array_equal(together[:, j], alone)  # the same sums, bit for bit
    assert np.isnan(together[:, :, :10, :10]).all()
    # the stars' images add up to the whole model (measured: 2e-16 relative)
    np.testing.assert_allclose(together.sum(axis=1), model.render(frames), rtol=1e-12)


def test_blurred_stamp_is_the_mean_of_the_spline_shifted_psf():
    psf = gaussian_psf()
    blur = np.array([[-0.83, 0.41], [0.0, 0.0], [0.91, -0.47]])  # offsets [pixel]
    x, y = 30.27, 44.62
    stamp, gx, gy, ix0, iy0 = psf.render(x, y, blur)
    assert (ix0, iy0) == (30 - psf.radius, 45 - psf.radius)
    # independently: each offset's star is the PSF spline-shifted by its offset from the
    # stamp's pixel centre, to the 0.1 px of the phases
    expected = np.zeros_like(stamp)
    for ox, oy in blur:
        sx = round((x + ox - 30) * psf.oversample) / psf.oversample
        sy = round((y + oy - 45) * psf.oversample) / psf.oversample
        expected += ndimage.shift(psf.stamp, (sy, sx), order=3, mode="constant")
    expected /= len(blur)
    # measured: 4e-17 of the peak (the spline's coefficients computed once)
    np.testing.assert_allclose(stamp, expected, rtol=0, atol=1e-12 * expected.max())
    # measured: 1.4e-12 of the peak, at the stamp's edge (np.gradient is one-sided there,
    # before the whole-pixel shift)
    np.testing.assert_allclose(gx, np.gradient(expected, axis=1), rtol=0,
                               atol=3e-12 * expected.max())
    assert psf.render(x, y, blur, gradients=False)[1] is None


def _rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * 4096 / 1e6


@pytest.mark.parametrize("order", [1, 3])
def test_spline_shift_is_ndimage_shift_bit_for_bit(order):
    # the PSF's phases and centred cut-outs: ndimage.shift's numbers, edges (mirrored
    # coefficients, zeros beyond) included, at the phase bank's shifts and arbitrary ones
    rng = np.random.default_rng(11)
    coeffs = rng.normal(size=(31, 37))
    shifts = [(sy / 10, sx / 10) for sy in range(-5, 6) for sx in range(-5, 6)]
    shifts += [tuple(s) for s in rng.uniform(-0.5, 0.5, (20, 2))] + [(1.7, -2.3)]
    for sy, sx in shifts:
        expected = ndimage.shift(coeffs, (sy, sx), order=order, mode="constant",
                                 prefilter=False)
        np.testing.assert_array_equal(spline_shift(coeffs, sy, sx, order), expected)


def test_nanmedian_of_a_stack_is_numpys_bit_for_bit():
    # the PSF's median over its cut-outs: NaN ignored, ties, infinities, all-NaN pixels
    rng = np.random.default_rng(5)
    for shape in [(50, 21, 21), (25, 7, 9), (4, 30), (1, 5)]:
        stack = np.round(rng.normal(size=shape) * 100, int(rng.integers(0, 3)))
        stack[rng.random(shape) < 0.3] = np.nan
        stack[rng.random(shape) < 0.01] = np.inf
        stack[rng.random(shape) < 0.01] = -np.inf
        stack[:, 0] = np.nan
        with np.errstate(all="ignore"), pytest.warns(RuntimeWarning):  # all-NaN pixels
            expected = np.nanmedian(stack, axis=0)
        np.testing.assert_array_equal(nanmedian_first(stack), expected)
        if stack.ndim == 3:  # each frame's residual sky: the median over its pixels, 0 if none
            stack[1] = np.nan
            with np.errstate(all="ignore"), pytest.warns(RuntimeWarning):
                levels = np.nanmedian(stack.reshape(len(stack), -1), axis=1)
            np.testing.assert_array_equal(sky_residual(stack), np.nan_to_num(levels))
            assert levels[0] != 0 and sky_residual(stack)[1] == 0


def test_turned_cut_outs_are_map_coordinates_bit_for_bit():
    # the PSF's turning light: each cut-out read turned about its centre, bilinear, NaN
    # beyond it; NaN and infinite pixels, quarter turns (points on the last row and
    # column: a neighbour of weight 0 read), and points just inside and outside the edges
    from archi.geometry import rotate_offsets
    from archi.turning import _turn_coordinates, _turned

    rng = np.random.default_rng(3)
    radius = 20
    images = rng.normal(size=(6, 2 * radius + 1, 2 * radius + 1)) * 1e3
    images[rng.random(images.shape) < 0.05] = np.nan
    images[:, 0, 0], images[:, -1, 3] = np.inf, -np.inf
    turn = np.array([0.0, 90.0, 180.0, -270.0, 33.3, 1234.5])
    coordinates = _turn_coordinates(turn, radius)
    coordinates[0, :, 0, :6] = [[2 * radius, 2 * radius + 1e-12, -1e-12, 0.0, 0.5, 2 * radius],
                                [0.0, 3.0, 3.0, 2 * radius, 2 * radius - 1e-9, 2 * radius]]
    turned = _turned(images, coordinates)
    u = np.arange(-radius, radius + 1, dtype=float)
    for k, angle in enumerate(turn):
        x, y = rotate_offsets(*np.meshgrid(u, u), angle)
        np.testing.assert_array_equal(coordinates[k, :, 1:], np.array([y, x])[:, 1:] + radius)
        expected = ndimage.map_coordinates(images[k], coordinates[k], order=1,
                                           mode="constant", cval=np.nan)
        np.testing.assert_array_equal(turned[k], expected)
    assert np.isnan(turned[0, 0, 1]) and np.isnan(turned[0, 0, 2])  # beyond the edges


def test_memory_mapped_cube_is_read_without_being_held(tmp_path):
    cube = np.random.default_rng(1).normal(100.0, 5.0, (240, 200, 200))  # 77 MB
    cube[3] = np.nan
    path = tmp_path / "cube.fits"
    fits.HDUList([fits.PrimaryHDU(), fits.ImageHDU(cube)]).writeto(path)
    del cube
    with fits.open(path, memmap=True) as hdul:
        mapped = hdul[1].data
        assert file_mapping(mapped) is not None and file_mapping(np.zeros(3)) is None
        before = _rss_mb()
        quality = assess_frames(mapped, chunk_frames=16)
        masked = MaskedCube(mapped, quality.excluded)
        total = sum(float(np.nansum(masked[k:k + 16])) for k in range(0, 240, 16))
        grown = _rss_mb() - before
        assert quality.excluded.tolist() == [k == 3 for k in range(240)]
        assert np.isnan(masked[3]).all() and np.array_equal(masked[5], mapped[5])
        np.testing.assert_allclose(total, np.nansum(mapped), rtol=1e-12)
        del mapped, masked
    # measured: 0-3 MB (a chunk at a time); the whole cube held would be 77 MB
    assert grown < 20, grown


def test_paged_array_reads_like_the_array_without_holding_it(tmp_path):
    cube = np.random.default_rng(2).normal(100.0, 5.0, (240, 200, 200))  # 77 MB
    path = tmp_path / "cube.fits"
    fits.HDUList([fits.PrimaryHDU(), fits.ImageHDU(cube)]).writeto(path)
    with fits.open(path, memmap=True) as hdul:
        mapped = hdul[1].data
        pages = paged(mapped)
        assert isinstance(pages, PagedArray) and paged(cube) is cube
        before = _rss_mb()
        chunks = [np.asarray(pages[k:k + 16], dtype=float) for k in range(0, 240, 16)]
        grown = _rss_mb() - before - sum(c.nbytes for c in chunks) / 1e6
        assert np.array_equal(np.concatenate(chunks), cube)  # the same values, bit for bit
        assert pages[[4, 9]].dtype == mapped.dtype and np.array_equal(pages[[4, 9]], cube[[4, 9]])
        assert pages.shape == cube.shape and len(pages) == 240
        with pytest.raises(ValueError):  # read-only: a page written in place would be dropped
            pages[3][0, 0] = 1.0
        held = _rss_mb()
        plain_total = sum(float(mapped[k:k + 16].sum()) for k in range(0, 240, 16))
        plain_grown = _rss_mb() - held
        del mapped, pages
    assert np.isfinite(plain_total)
    # measured: 5.6 MB besides the copies made here (one chunk's pages at a time); the same
    # reads of the bare memory map hold the whole file (measured 77 MB)
    assert grown < 20, grown
    assert plain_grown > 60, plain_grown


def test_prepared_file_carries_the_phase_stamps_and_the_model_images(model, tmp_path):
    rendered = model.rendered()
    n = len(model.flux)
    stars = StarList(x0=model.x[:, 0], y0=model.y[:, 0], catalogue_row=np.arange(n),
                     source_id=np.array([str(k) for k in range(n)]), ra=np.zeros(n),
                     dec=np.zeros(n), mag=np.full(n, 9.0), brightness=model.flux)
    prepared = Prepared(tmp_path, "auto", "v", Options(), stars,
                        Tracks(model.x, model.y, np.ones(model.x.shape, bool)), model=rendered)
    write_prepared(tmp_path / "prepared.fits", prepared)
    read = read_prepared(tmp_path / "prepared.fits").model
    fresh = EmpiricalPsf(model.psf.stamp.copy(), model.psf.radius, model.psf.oversample)
    with fits.open(tmp_path / "prepared.fits") as hdul:  # stored: later jobs do no shifts
        assert np.array_equal(hdul["PSF_PHASES"].data, fresh.phase_stamps())
    assert np.array_equal(read.psf.phase_stamps(), fresh.phase_stamps())  # bit for bit
    assert np.array_equal(read.render(slice(None)), rendered.render(slice(None)),
                          equal_nan=True)
    with pytest.raises(ValueError, match="phase stamps of shape"):
        fresh.adopt_phase_stamps(fresh.phase_stamps()[1:])
