"""Simulate a whole CHEOPS visit: DRP products in DRP and/or CHEOPSim layout, plus the truth.

Output folder (written under a temporary name and renamed when complete)::

    <out>/
      simulation.yaml                      the options used (reproducible with the seed)
      truth.fits                           true positions, fluxes, noise levels (see truth.py)
      PRppnnnn_TGttttvv_V0300/             DRP layout (a DACE download)
        CH_..._SCI_COR_SubArray_V0300.fits
        CH_..._SCI_COR_Lightcurve-{DEFAULT,RINF,RSUP[,OPTIMAL]}_V0300.fits
        CH_..._EXT_PRE_StarCatalogue-OBSID##########_V0300.fits
      CHEOPSim_job<N>/                     CHEOPSim layout (same products, hard-linked)
        CH_PRppnnnn_TGttttvv/data/         star catalogue (MAG_CHEOPS, pre-13 data model)
        DataReduction/COR/                 subarray
        DataReduction/PHE/                 light curves
"""

from __future__ import annotations

import dataclasses
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import yaml
from astropy.io import fits
from astropy.time import Time

from archi.geometry import PLATE_SCALE, star_positions
from archi.io import products as P
from archi.io.atomic import atomic_path
from archi.io.fitswrite import CubeWriter, append_hdus, table_hdu, write_tables
from archi.photometry import circular_aperture_sums
from archi.simulate import products as SP
from archi.simulate.config import SimulationConfig
from archi.simulate.psf import PixelPsf
from archi.simulate.render import make_detector, observe_chunk
from archi.simulate.scene import build_scene
from archi.simulate.timeline import Timeline, make_timeline
from archi.simulate.truth import Truth, write_truth

OPTIMAL_CANDIDATES = (15.0, 17.5, 20.0, 22.5, 25.0, 27.5, 30.0, 32.5, 35.0, 40.0)
"""Radii [pixel] the DRP-like OPTIMAL aperture is chosen from."""


@dataclass(frozen=True)
class SimulatedVisit:
    """Where a simulated visit was written."""

    root: Path
    drp_folder: Path | None
    cheopsim_folder: Path | None
    truth_path: Path


def _apertures(cfg: SimulationConfig) -> tuple[float, ...]:
    radii = set(P.APERTURE_RADII.values())
    if cfg.write_optimal:
        radii |= set(OPTIMAL_CANDIDATES)
    return tuple(sorted(radii))


def _choose_optimal(fluxes: dict[float, np.ndarray]) -> float:
    """Radius with the smallest robust point-to-point scatter of the normalised flux."""
    def scatter(f: np.ndarray) -> float:
        d = np.diff(f / np.nanmedian(f))
        return float(np.nanmedian(np.abs(d - np.nanmedian(d))))
    return min(OPTIMAL_CANDIDATES, key=lambda r: scatter(fluxes[r]))


def simulate_visit(cfg: SimulationConfig, out_dir: str | Path) -> SimulatedVisit:
    """Simulate a visit into ``out_dir`` (replaced if it exists). Returns where it went."""
    out_dir = Path(out_dir)
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
    visit = P.VisitId(cfg.progtype, cfg.prog_id, cfg.req_id, cfg.visitctr, 300, cfg.obsid)
    return SimulatedVisit(
        root=out_dir,
        drp_folder=out_dir / visit.dace_folder if "drp" in cfg.layouts else None,
        cheopsim_folder=(out_dir / f"CHEOPSim_job{cfg.cheopsim_job}"
                         if "cheopsim" in cfg.layouts else None),
        truth_path=out_dir / "truth.fits")


def _simulate_into(cfg: SimulationConfig, root: Path) -> None:
    rng = np.random.default_rng(cfg.seed)
    timeline = make_timeline(cfg, rng)
    scene = build_scene(cfg)
    detector = make_detector(cfg, rng)
    psf = PixelPsf()
    times = SP.Times.from_mjd_tt(timeline.mjd_tt, cfg.ra, cfg.dec)
    n = timeline.n_frames
    texp, nexp = timeline.texptime, timeline.nexp

    x_winoff = timeline.location[0] - 100.0
    y_winoff = timeline.location[1] - 100.0
    target_x = timeline.centroid_x - x_winoff
    target_y = timeline.centroid_y - y_winoff
    days = timeline.mjd_tt - timeline.mjd_tt[0]
    flux = scene.rate[:, None] * texp * scene.relative_flux(days)
    true_x, true_y = star_positions(scene.dx, scene.dy, timeline.roll, target_x, target_y)
    stray = cfg.stray_light_rate * np.exp(-timeline.minutes_to_gap / cfg.stray_light_minutes)
    background = (cfg.background_rate + stray) * texp

    visit = P.VisitId(cfg.progtype, cfg.prog_id, cfg.req_id, cfg.visitctr, 300, cfg.obsid)
    drp = root / visit.dace_folder
    drp.mkdir()
    tu = P.tu_stamp(str(times.utc[0]))
    base_cards = SP.visit_cards(cfg, times, timeline.exptime, nexp, scene.mag[0])

    radii = _apertures(cfg)
    sums = {r: np.zeros(n) for r in radii}
    areas = {r: np.zeros(n) for r in radii}
    star_sums = {r: np.zeros(n) for r in radii}
    target_sums = {r: np.zeros(n) for r in radii}
    dark_sums = {r: np.zeros(n) for r in radii}
    background_estimate = np.zeros(n)
    cosmics: list[tuple[int, float, float, float]] = []

    subarray_path = drp / P.product_file_name(visit, tu, P.SUBARRAY)
    with atomic_path(subarray_path) as tmp:
        cube_cards = (SP.common_cards(P.SUBARRAY, "L1", "main_correction.py 14.0.1")
                      + base_cards + SP.image_cards(x_winoff, y_winoff))
        writer = CubeWriter(tmp, P.SUBARRAY, (n, 200, 200), cube_cards)
        dark_image = detector.dark_map * texp
        for start in range(0, n, cfg.chunk_frames):
            sl = slice(start, min(start + cfg.chunk_frames, n))
            images = observe_chunk(cfg, psf, scene, detector, timeline.roll[sl],
                                   target_x[sl], target_y[sl], flux[:, sl], background[sl],
                                   texp, nexp, rng)
            writer.write(images.cor)
            background_estimate[sl] = images.background_estimate
            cosmics += [(start + f, x, y, e) for f, x, y, e in images.cosmics]
            dark_stack = np.broadcast_to(dark_image, images.cor.shape)
            for r in radii:
                tx, ty = target_x[sl], target_y[sl]
                sums[r][sl], areas[r][sl], _ = circular_aperture_sums(images.cor, tx, ty, r)
                star_sums[r][sl] = circular_aperture_sums(images.stars, tx, ty, r)[0]
                target_sums[r][sl] = circular_aperture_sums(images.target, tx, ty, r)[0]
                dark_sums[r][sl] = circular_aperture_sums(dark_stack, tx, ty, r)[0]
        writer.close()
        zeros_row = np.zeros((n, 1, 200))
        smear = fits.ImageHDU(zeros_row.astype(">f8"))
        smear.header["EXTNAME"] = P.SMEARING_ROW
        smear.header["BUNIT"] = "ADU"
        smear_err = fits.ImageHDU(zeros_row.astype(">f8"))
        smear_err.header["EXTNAME"] = P.SMEARING_ROW_ERROR
        append_hdus(tmp, [
            table_hdu(P.COR_METADATA, P.COR_METADATA_COLUMNS,
                      SP.cor_metadata(times, target_x, target_y, timeline.roll, cfg,
                                      detector.read_noise),
                      SP.common_cards(P.COR_METADATA, "L1", "main_correction.py 14.0.1")),
            table_hdu(P.CENTROID, P.CENTROID_COLUMNS,
                      SP.centroid_table(times, timeline.location, timeline.centroid_x,
                                        timeline.centroid_y),
                      SP.common_cards(P.CENTROID, "L1", "main_correction.py 14.0.1")),
            smear, smear_err])

    # DRP light curves of the target
    event = _events(cfg, timeline, cosmics, target_x, target_y)
    apertures = dict(P.APERTURE_RADII)
    if cfg.write_optimal:
        apertures["OPTIMAL"] = _choose_optimal(sums)
    lc_paths = []
    for name, r in apertures.items():
        bkg_total = background_estimate * areas[r]
        variance = (np.clip(sums[r], 0, None) + bkg_total + dark_sums[r]
                    + areas[r] * nexp * detector.read_noise ** 2)
        conta = (star_sums[r] - target_sums[r]) / np.where(target_sums[r] > 0,
                                                           target_sums[r], np.nan)
        table = SP.lightcurve_table(times, sums[r], np.sqrt(variance),
                                    (event != 0).astype(np.int32), event, dark_sums[r],
                                    bkg_total, np.nan_to_num(conta), timeline.roll,
                                    timeline.location, timeline.centroid_x,
                                    timeline.centroid_y)
        cards = (SP.common_cards(P.LIGHTCURVE, "L2", "main_photometry.py 14.1.3") + base_cards
                 + SP.lightcurve_cards(name, r, sums[r], texp))
        path = drp / P.product_file_name(visit, tu, P.LIGHTCURVE, name)
        write_tables(path, [table_hdu(P.LIGHTCURVE, P.LIGHTCURVE_COLUMNS, table, cards)])
        lc_paths.append(path)

    # star catalogue: catalogued stars sorted by distance, target first
    order = [i for i in np.argsort(np.hypot(scene.dx, scene.dy), kind="stable")
             if scene.in_catalogue[i]]
    catalogue_row = np.full(scene.n_stars, -1)
    catalogue_row[order] = np.arange(len(order))
    ids = [str(v) for v in rng.integers(10**18, 6 * 10**18, scene.n_stars, dtype=np.int64)]
    obs_epoch = float(Time(timeline.mjd_tt[0], format="mjd", scale="tt").jyear)
    cat_tu = P.tu_stamp(Time(timeline.mjd_tt[0] - 0.004, format="mjd", scale="tt").utc.isot)

    def write_catalogue(folder: Path, mag_column: str) -> Path:
        table = SP.catalogue_table([ids[i] for i in order], scene.ra[order], scene.dec[order],
                                   scene.mag[order], np.full(len(order), cfg.t_eff),
                                   np.hypot(scene.dx, scene.dy)[order] * PLATE_SCALE,
                                   mag_column)
        cards = (SP.common_cards(P.STAR_CATALOGUE, "EXT", "visit preparation")
                 + base_cards[:2] + base_cards[4:17] + SP.catalogue_cards(cfg, obs_epoch))
        path = folder / P.product_file_name(visit, cat_tu, P.STAR_CATALOGUE,
                                            f"OBSID{cfg.obsid:010d}")
        write_tables(path, [table_hdu(P.STAR_CATALOGUE, P.star_catalogue_columns(mag_column),
                                      table, cards)])
        return path

    write_catalogue(drp, cfg.catalogue_magnitude_column)

    if "cheopsim" in cfg.layouts:
        job = root / f"CHEOPSim_job{cfg.cheopsim_job}"
        data = job / f"CH_{visit.visit_key}" / "data"
        cor, phe = job / "DataReduction" / "COR", job / "DataReduction" / "PHE"
        for folder in (data, cor, phe):
            folder.mkdir(parents=True)
        write_catalogue(data, "MAG_CHEOPS")
        _link(subarray_path, cor / subarray_path.name)
        for path in lc_paths:
            _link(path, phe / path.name)
    if "drp" not in cfg.layouts:
        shutil.rmtree(drp)

    truth = Truth(
        scene=scene, catalogue_row=catalogue_row, ids=np.array(ids), x=true_x, y=true_y,
        flux=flux, mjd_tt=timeline.mjd_tt, bjd_tdb=times.bjd_tdb, roll=timeline.roll,
        target_x=target_x, target_y=target_y, background=background,
        background_estimate=background_estimate,
        dark=np.full(n, float(np.mean(detector.dark_map[detector.fov])) * texp),
        read_noise=np.full(n, detector.read_noise), nexp=nexp, exptime=timeline.exptime,
        dark_map=detector.dark_map, cosmics=cosmics)
    write_truth(root / "truth.fits", truth)
    (root / "simulation.yaml").write_text(yaml.safe_dump(_config_dict(cfg), sort_keys=False))


def _events(cfg: SimulationConfig, timeline: Timeline, cosmics, target_x, target_y):
    """DRP-like EVENT codes: cosmic-ray count in the DEFAULT aperture (x100000) and the
    Earth stray-light level (x100)."""
    event = np.zeros(timeline.n_frames, dtype=np.int32)
    hits = np.zeros(timeline.n_frames, dtype=np.int32)
    radius = P.APERTURE_RADII["DEFAULT"]
    for frame, x, y, _ in cosmics:
        if np.hypot(x - target_x[frame], y - target_y[frame]) <= radius:
            hits[frame] += 1
    event += 100000 * np.minimum(hits, 9)
    stray = cfg.stray_light_rate * np.exp(-timeline.minutes_to_gap / cfg.stray_light_minutes)
    event += 100 * (stray > 0.25 * max(cfg.background_rate, 1e-9)).astype(np.int32)
    return event


def _link(src: Path, dst: Path) -> None:
    try:
        os.link(src, dst)
    except OSError:
        shutil.copy2(src, dst)


def _config_dict(cfg: SimulationConfig) -> dict:
    out = dataclasses.asdict(cfg)
    out["field"] = [dataclasses.asdict(s) for s in cfg.field]
    for key in ("layouts", "location", "centroid_offset", "hot_pixel_rate"):
        out[key] = list(out[key])
    return out

