"""Home of the CHEOPSim layout of a simulated visit: the DRP products again (hard-linked
where the file system allows), in the folders CHEOPSim writes them to::

    CHEOPSim_job<N>/
      CH_PRppnnnn_TGttttvv/data/    star catalogue (MAG_CHEOPS, pre-13 data model)
      DataReduction/COR/            subarray
      DataReduction/PHE/            light curves
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable, Sequence
from pathlib import Path

from archi.simulate.config import SimulationConfig
from archi.visit import VisitId


def cheopsim_folder(root: Path, cfg: SimulationConfig) -> Path:
    """Where the CHEOPSim layout of a visit simulated into ``root`` goes."""
    return root / f"CHEOPSim_job{cfg.cheopsim_job}"


def write_cheopsim_layout(root: Path, cfg: SimulationConfig, visit: VisitId,
                          subarray: Path, lightcurves: Sequence[Path],
                          write_catalogue: Callable[[Path, str], Path]) -> Path:
    """Lay out the products in CHEOPSim's folders under ``root``; ``write_catalogue(folder,
    magnitude column)`` writes the star catalogue (CHEOPSim's has MAG_CHEOPS). Returns the
    job folder."""
    job = cheopsim_folder(root, cfg)
    data = job / f"CH_{visit.visit_key}" / "data"
    cor, phe = job / "DataReduction" / "COR", job / "DataReduction" / "PHE"
    for folder in (data, cor, phe):
        folder.mkdir(parents=True)
    write_catalogue(data, "MAG_CHEOPS")
    _link(subarray, cor / subarray.name)
    for path in lightcurves:
        _link(path, phe / path.name)
    return job


def _link(src: Path, dst: Path) -> None:
    try:
        os.link(src, dst)
    except OSError:  # another file system, or no hard links: a copy holds the same bytes
        shutil.copy2(src, dst)
