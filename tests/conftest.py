"""Shared fixtures: small simulated visits (made once per session) and the real DRP files."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from archi.simulate import SimulationConfig, simulate_visit

DATA = Path(__file__).parent / "data"
REAL_LIGHTCURVES = sorted(DATA.glob("CH_*_SCI_COR_Lightcurve-DEFAULT_V0300.fits"))
PYCHEOPS = "pycheops==1.1.27"
"""The pycheops the tests load our files with (its own pins: numpy 1.24, numba 0.57)."""


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


@pytest.fixture(scope="session")
def pycheops_python(tmp_path_factory) -> Path:
    """A Python with pycheops, in a virtual environment of its own: pycheops pins numpy 1.24
    and numba 0.57, which cannot live beside archi's. ``ARCHI_PYCHEOPS_PYTHON`` names one
    already made; otherwise one is made once per session from PyPI (about 70 s). Skips,
    saying why, when pip cannot install it (no network)."""
    if os.environ.get("ARCHI_PYCHEOPS_PYTHON"):
        return Path(os.environ["ARCHI_PYCHEOPS_PYTHON"])
    venv = tmp_path_factory.mktemp("pycheops-venv")
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    python = venv / "bin" / "python"
    install = subprocess.run([str(python), "-m", "pip", "install", "-q",
                              "--disable-pip-version-check", PYCHEOPS],
                             capture_output=True, text=True, timeout=1200)
    if install.returncode:
        last = (install.stderr.strip().splitlines() or ["no message"])[-1]
        pytest.skip(f"pip could not install {PYCHEOPS} in its own environment: {last}")
    return python


@pytest.fixture(scope="session")
def real_psf_file(pycheops_python) -> Path:
    """The real CHEOPS PSF (pycheops' white PSF file; GPL-3, so not shipped here), or the
    file named by ``ARCHI_CHEOPS_PSF``. pycheops is located, not imported: its import
    writes a configuration file."""
    if os.environ.get("ARCHI_CHEOPS_PSF"):
        return Path(os.environ["ARCHI_CHEOPS_PSF"])
    origin = subprocess.run(
        [str(pycheops_python), "-c",
         "import importlib.util; print(importlib.util.find_spec('pycheops').origin)"],
        capture_output=True, text=True, check=True).stdout.strip()
    return (Path(origin).parent / "data" / "instrument"
            / "CHEOPS_IT_PSFwhite_CH_TU2018-01-01.txt")
