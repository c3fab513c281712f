"""Every bad input gets one clear error naming the file and the problem."""

from __future__ import annotations

import shutil
import warnings

import numpy as np
import pytest
from astropy.io import fits

from archi.errors import ConfigError, CorruptProductError, InputWarning, ProductNotFoundError
from archi.io import find_visit_products, read_visit
from archi.io.drp import check_visit_products
from archi.simulate import SimulationConfig


def _one(folder, pattern):
    (path,) = folder.glob(pattern)
    return path


def _single_line(exc: Exception) -> str:
    text = str(exc)
    assert "\n" not in text
    return text


def test_missing_folder(tmp_path):
    with pytest.raises(ProductNotFoundError, match="does not exist") as err:
        read_visit(tmp_path / "nowhere")
    assert str(tmp_path / "nowhere") in _single_line(err.value)


def test_missing_subarray_names_what_was_found(visit_copy):
    cube = _one(visit_copy, "*SCI_COR_SubArray*")
    cube.rename(cube.with_name(cube.name.replace("SCI_COR_SubArray", "SCI_RAW_SubArray")))
    with pytest.raises(ProductNotFoundError, match="no SCI_COR_SubArray.*SCI_RAW_SubArray"):
        read_visit(visit_copy)


def test_raw_cal_and_hkce_products_are_never_taken_for_the_cor_cube(visit_copy):
    cube = _one(visit_copy, "*SCI_COR_SubArray*")
    for other in ("SCI_RAW_SubArray", "SCI_CAL_SubArray", "SCI_RAW_HkCe-SubArray"):
        shutil.copy(cube, cube.with_name(cube.name.replace("SCI_COR_SubArray", other)))
    assert find_visit_products(visit_copy).subarray == cube


def test_highest_version_wins_and_equal_versions_are_ambiguous(visit_copy):
    cube = _one(visit_copy, "*SCI_COR_SubArray*")
    newer = cube.with_name(cube.name.replace("_V0300", "_V0301"))
    shutil.copy(cube, newer)
    assert find_visit_products(visit_copy).subarray == newer
    (visit_copy / "sub").mkdir()
    shutil.copy(newer, visit_copy / "sub" / newer.name)
    with pytest.raises(ProductNotFoundError, match="ambiguous"):
        find_visit_products(visit_copy)


def test_missing_light_curves(visit_copy):
    for path in visit_copy.glob("*Lightcurve*"):
        path.unlink()
    with pytest.raises(ProductNotFoundError, match="no SCI_COR_Lightcurve"):
        read_visit(visit_copy)


def test_truncated_cube(visit_copy):
    cube = _one(visit_copy, "*SCI_COR_SubArray*")
    with open(cube, "r+b") as fh:
        fh.truncate(cube.stat().st_size // 2)
    with pytest.raises(CorruptProductError, match="truncated|not a readable") as err:
        read_visit(visit_copy)
    assert cube.name in _single_line(err.value)


def test_garbage_file(visit_copy):
    lc = _one(visit_copy, "*Lightcurve-DEFAULT*")
    lc.write_bytes(b"this is not FITS at all" * 10)
    with pytest.raises(CorruptProductError, match="not a readable FITS") as err:
        read_visit(visit_copy)
    assert lc.name in _single_line(err.value)


def test_wrong_cube_shape(visit_copy):
    cube = _one(visit_copy, "*SCI_COR_SubArray*")
    with fits.open(cube) as hdul:
        hdus = [h.copy() for h in hdul]
    hdus[1] = fits.ImageHDU(np.zeros((60, 100, 100)), header=None)
    hdus[1].header["EXTNAME"] = "SCI_COR_SubArray"
    fits.HDUList(hdus).writeto(cube, overwrite=True)
    with pytest.raises(CorruptProductError, match="100x100 pixels, expected 200x200"):
        read_visit(visit_copy)


def test_lightcurve_of_another_length(visit_copy):
    lc = _one(visit_copy, "*Lightcurve-DEFAULT*")
    with fits.open(lc) as hdul:
        hdul[1] = fits.BinTableHDU(hdul[1].data[:50], header=hdul[1].header)
        hdul.writeto(lc, overwrite=True)
    with pytest.raises(CorruptProductError, match="50 rows but the subarray"):
        read_visit(visit_copy)


def _set_roll(lc, values):
    with fits.open(lc, mode="update") as hdul:
        hdul[1].data["ROLL_ANGLE"][:] = values(hdul[1].data["ROLL_ANGLE"])


def test_nan_roll_angles_are_estimated_with_a_warning(visit_copy, small_visit):
    truth_roll = read_visit(small_visit.drp_folder).roll_angle
    for lc in visit_copy.glob("*Lightcurve*"):
        def holes(roll):
            roll = roll.copy()
            roll[[3, 10, 11, 40]] = np.nan
            return roll
        _set_roll(lc, holes)
    with pytest.warns(UserWarning, match="4 NaN roll angle"):
        visit = read_visit(visit_copy)
    assert visit.roll_estimated.sum() == 4
    error = (visit.roll_angle - truth_roll + 180) % 360 - 180
    assert np.max(np.abs(error)) < 0.05


def test_all_nan_roll_angles(visit_copy):
    for lc in visit_copy.glob("*Lightcurve*"):
        _set_roll(lc, lambda roll: np.full_like(roll, np.nan))
    with pytest.raises(CorruptProductError, match="every roll angle is NaN"):
        read_visit(visit_copy)


def test_empty_star_catalogue_means_no_catalogue_star(visit_copy):
    cat = _one(visit_copy, "*StarCatalogue*")
    with fits.open(cat) as hdul:
        hdul[1] = fits.BinTableHDU(hdul[1].data[:0], header=hdul[1].header)
        hdul.writeto(cat, overwrite=True)
    with pytest.warns(InputWarning, match="star catalogue is empty"):
        assert read_visit(visit_copy).catalogue is None  # dynam detection can still run
    check_visit_products(visit_copy)  # fine without initial_detect fits
    with pytest.raises(CorruptProductError, match="star catalogue is empty") as err:
        check_visit_products(visit_copy, needs_catalogue=True)
    assert cat.name in _single_line(err.value)


def test_nan_roll_of_the_default_curve_only_comes_from_the_other_curves(visit_copy,
                                                                         small_visit):
    truth_roll = read_visit(small_visit.drp_folder).roll_angle
    holes = [0, 3, 10, 11, 40, 59]  # the ends too: no estimate from time could get them
    _set_roll(_one(visit_copy, "*Lightcurve-DEFAULT*"),
              lambda roll: np.where(np.isin(np.arange(len(roll)), holes), np.nan, roll))
    with pytest.warns(InputWarning, match="6 from OPTIMAL"):
        visit = read_visit(visit_copy)
    assert not visit.roll_estimated.any()
    assert np.array_equal(visit.roll_angle, truth_roll)  # the same frames, the same angles


def test_a_non_fits_product_gets_no_astropy_tip(visit_copy):
    cube = _one(visit_copy, "*SCI_COR_SubArray*")
    cube.write_bytes(b"<html>not found</html>" * 200)
    with pytest.raises(CorruptProductError, match="not a readable FITS") as err:
        check_visit_products(visit_copy)
    assert "ignore_missing_simple" not in _single_line(err.value)


def test_missing_optimal_falls_back_to_default_with_a_warning(visit_copy):
    _one(visit_copy, "*Lightcurve-OPTIMAL*").unlink()
    with pytest.warns(UserWarning, match="no OPTIMAL light curve"):
        visit = read_visit(visit_copy, aperture="OPTIMAL")
    assert visit.reference_aperture == "DEFAULT"


@pytest.mark.parametrize("shape", [(60, 200), (60, 1, 200)])
def test_smearing_row_2d_or_3d(visit_copy, shape):
    cube = _one(visit_copy, "*SCI_COR_SubArray*")
    with fits.open(cube, mode="update") as hdul:
        hdul["SCI_COR_SmearingRow"].data = np.ones(shape)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        visit = read_visit(visit_copy)
    assert visit.smearing_row.shape == (60, 200)


def test_bad_simulation_options_are_named():
    with pytest.raises(ConfigError, match="unknown simulation option.*n_frame"):
        SimulationConfig.from_mapping({"n_frame": 10})
    with pytest.raises(ConfigError, match="n_frames must be >= 1"):
        SimulationConfig(n_frames=0)
    with pytest.raises(ConfigError, match="field star 0: unknown key.*mag"):
        SimulationConfig.from_mapping({"field": [{"distance": 3, "position_angle": 0,
                                                   "mag": 1}]})
