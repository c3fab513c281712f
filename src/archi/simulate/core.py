"""Simulate a whole CHEOPS visit: DRP products in DRP and/or CHEOPSim layout, plus the truth.

Output folder (written under a temporary name and renamed when complete)::

    <out>/
      simulation.yaml                      the options used (reproducible with the seed)
      truth.fits                           true positions, fluxes, noise levels (see truth.py)
      PRppnnnn_TGttttvv_V0300/             DRP layout (a DACE download, drp_layout.py)
        CH_..._SCI_COR_SubArray_V0300.fits
        CH_..._SCI_COR_Lightcurve-{DEFAULT,RINF,RSUP[,OPTIMAL]}_V0300.fits
        CH_..._EXT_PRE_StarCatalogue-OBSID##########_V0300.fits
      CHEOPSim_job<N>/                     CHEOPSim layout (same products, cheopsim.py)
"""

from __future__ import annotations

import dataclasses
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import yaml

from archi.errors import ConfigError
from archi.geometry import star_positions
from archi.simulate.cheopsim import cheopsim_folder, write_cheopsim_layout
from archi.simulate.config import SimulationConfig
from archi.simulate.drp_layout import (
    ApertureSums,
    Catalogue,
    make_catalogue,
    write_catalogue,
    write_lightcurves,
    write_subarray,
)
from archi.simulate.observation import Observation, observe, visit_id
from archi.simulate.truth import Truth, write_truth


@dataclass(frozen=True)
class SimulatedVisit:
    """Where a simulated visit was written."""

    root: Path
    drp_folder: Path | None
    cheopsim_folder: Path | None
    truth_path: Path


def simulate_visit(cfg: SimulationConfig, out_dir: str | Path,
                   overwrite: bool = True) -> SimulatedVisit:
    """Simulate a visit into ``out_dir``. Returns where it went. An existing ``out_dir`` is
    replaced; with ``overwrite`` False a non-empty one is refused (ConfigError) before
    anything is simulated."""
    out_dir = Path(out_dir)
    if not overwrite and out_dir.exists() and (not out_dir.is_dir() or any(out_dir.iterdir())):
        raise ConfigError(f"{out_dir}: exists and is not an empty folder; it would be "
                          f"replaced (use --force to replace it)")
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    staging = out_dir.parent / f".{out_dir.name}.partial-{os.getpid()}"
    if staging.exists():
        shutil.rmtree(staging)
    staging.mkdir()
    try:
        _simulate_into(cfg, staging)
        if out_dir.exists():
            shutil.rmtree(out_dir)
        os.replace(staging, out_dir)
    finally:
        if staging.exists():
            shutil.rmtree(staging)
    return SimulatedVisit(
        root=out_dir,
        drp_folder=out_dir / visit_id(cfg).dace_folder if "drp" in cfg.layouts else None,
        cheopsim_folder=cheopsim_folder(out_dir, cfg) if "cheopsim" in cfg.layouts else None,
        truth_path=out_dir / "truth.fits")


def _simulate_into(cfg: SimulationConfig, root: Path) -> None:
    """Write every product, the truth and the options into ``root``."""
    obs = observe(cfg)
    drp = root / obs.visit.dace_folder
    drp.mkdir()
    subarray, sums = write_subarray(obs, drp)
    lightcurves = write_lightcurves(obs, sums, drp)
    catalogue = make_catalogue(obs)
    write_catalogue(obs, catalogue, drp, cfg.catalogue_magnitude_column)
    if "cheopsim" in cfg.layouts:
        write_cheopsim_layout(
            root, cfg, obs.visit, subarray, lightcurves,
            lambda folder, mag_column: write_catalogue(obs, catalogue, folder, mag_column))
    if "drp" not in cfg.layouts:
        shutil.rmtree(drp)
    write_truth(root / "truth.fits", _truth(obs, sums, catalogue))
    (root / "simulation.yaml").write_text(yaml.safe_dump(_config_dict(cfg), sort_keys=False))


def _truth(obs: Observation, sums: ApertureSums, catalogue: Catalogue) -> Truth:
    """What really happened: true star positions and fluxes, sky, dark, noise, cosmics."""
    timeline, scene, detector = obs.timeline, obs.scene, obs.detector
    true_x, true_y = star_positions(scene.dx, scene.dy, obs.field_turn, obs.target_x,
                                    obs.target_y)
    n = obs.n_frames
    return Truth(
        scene=scene, catalogue_row=catalogue.row, ids=np.array(catalogue.ids),
        x=true_x, y=true_y, flux=obs.flux, mjd_tt=timeline.mjd_tt, bjd_tdb=obs.times.bjd_tdb,
        roll=timeline.roll, target_x=obs.target_x, target_y=obs.target_y,
        background=obs.background, background_estimate=sums.background_estimate,
        dark=np.full(n, float(np.mean(detector.dark_map[detector.fov])) * obs.texp),
        read_noise=np.full(n, detector.read_noise), nexp=timeline.nexp,
        exptime=timeline.exptime, dark_map=detector.dark_map, cosmics=sums.cosmics,
        plate_scale=obs.cfg.plate_scale, field_rotation=obs.cfg.field_rotation)


def _config_dict(cfg: SimulationConfig) -> dict:
    out = dataclasses.asdict(cfg)
    out["field"] = [dataclasses.asdict(s) for s in cfg.field]
    for key in ("layouts", "location", "centroid_offset", "hot_pixel_rate"):
        out[key] = list(out[key])
    return out
