"""Cosmic-ray hits found against the simulator's truth; their replacement in photometry."""

from __future__ import annotations

import numpy as np
import pytest

from archi import api
from archi.cosmics import find_cosmics
from archi.io import read_visit
from archi.options import Options
from archi.photometry import noise_per_pixel
from archi.prepared import read_prepared, write_prepared
from archi.simulate import SimulationConfig, read_truth, simulate_visit


def test_hits_are_found_and_quiet_frames_stay_clean(small_visit, tmp_path):
    visit = read_visit(small_visit.drp_folder)
    truth = read_truth(small_visit.truth_path)
    hits = find_cosmics(visit.cube, noise_per_pixel(visit))
    in_field = found = 0
    for frame, x, y in zip(truth.cosmics["FRAME"], truth.cosmics["X"], truth.cosmics["Y"]):
        if not np.isfinite(visit.cube[frame, int(np.clip(y, 0, 199)), int(np.clip(x, 0, 199))]):
            continue
        in_field += 1
        mine = hits.frame == frame
        found += bool(mine.any() and np.hypot(hits.x[mine] - x, hits.y[mine] - y).min() < 3)
    assert in_field > 100 and found / in_field > 0.85

    quiet = simulate_visit(SimulationConfig(n_frames=30, seed=7, cosmic_rate=0.0,
                                            layouts=("drp",)), tmp_path / "quiet")
    visit = read_visit(quiet.drp_folder)
    false_hits = find_cosmics(visit.cube, noise_per_pixel(visit))
    assert len(false_hits) / visit.n_frames < 3  # pixels per frame, of 31,415


def test_cleaning_removes_outliers_from_light_curves(small_visit, tmp_path):
    options = Options()
    visit = api.load_visit(small_visit.drp_folder, options)
    prepared = api.prepare(visit, options)
    assert len(prepared.cosmics) > 0
    write_prepared(tmp_path / "prepared.fits", prepared)
    again = read_prepared(tmp_path / "prepared.fits")
    assert np.array_equal(again.cosmics.value, prepared.cosmics.value)
    raw = api.prepare(visit, options.replace(clean_cosmics=False))
    clean_flux, _ = api.measure(visit, prepared, {0: 25.0})
    raw_flux, _ = api.measure(visit, raw, {0: 25.0})
    truth = read_truth(small_visit.truth_path)
    deviation = lambda f: np.abs(f / truth.flux[0] - np.median(f / truth.flux[0]))
    assert deviation(clean_flux.flux[0]).max() < deviation(raw_flux.flux[0]).max()
    assert np.median(clean_flux.flux[0]) == pytest.approx(np.median(raw_flux.flux[0]), rel=1e-3)
