"""Shared fixtures: small simulated visits (made once per session) and the real DRP files."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from archi.simulate import SimulationConfig, simulate_visit

DATA = Path(__file__).parent / "data"
REAL_LIGHTCURVES = sorted(DATA.glob("CH_*_SCI_COR_Lightcurve-DEFAULT_V0300.fits"))


@pytest.fixture(scope="session")
def small_visit(tmp_path_factory):
    """A realistic 60-frame visit with the default crowded field, both layouts."""
    root = tmp_path_factory.mktemp("sim") / "visit"
    return simulate_visit(SimulationConfig(n_frames=60, seed=7), root)


@pytest.fixture
def visit_copy(small_visit, tmp_path):
    """A private copy of the small visit's DRP folder, safe to damage."""
    dest = tmp_path / small_visit.drp_folder.name
    shutil.copytree(small_visit.drp_folder, dest)
    return dest
