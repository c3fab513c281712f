"""Home of the simulated DRP products of a visit, as a DACE download holds them: the
subarray cube (with the target's aperture sums made while it streams), the light curves
of the fixed apertures (and OPTIMAL), and the star catalogue."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from astropy.io import fits
from astropy.time import Time

from archi.io import products as P
from archi.io.atomic import atomic_path
from archi.io.fitswrite import CubeWriter, append_hdus, table_hdu, write_tables
from archi.simulate.aperture_sums import circular_aperture_sums
from archi.simulate import products as SP
from archi.simulate.config import SimulationConfig
from archi.simulate.observation import Observation
from archi.simulate.psf_file import simulation_psf
from archi.simulate.render import ChunkImages, observe_chunk

OPTIMAL_CANDIDATES = (15.0, 17.5, 20.0, 22.5, 25.0, 27.5, 30.0, 32.5, 35.0, 40.0)
"""Radii [pixel] the DRP-like OPTIMAL aperture is chosen from."""

_CORRECTION = "main_correction.py 14.0.1"  # the DRP step stamped on the COR products


def aperture_radii(cfg: SimulationConfig) -> tuple[float, ...]:
    """Radii [pixel] summed around the target: the fixed apertures (and OPTIMAL's
    candidates when it is written)."""
    radii = set(P.APERTURE_RADII.values())
    if cfg.write_optimal:
        radii |= set(OPTIMAL_CANDIDATES)
    return tuple(sorted(radii))


def choose_optimal(fluxes: dict[float, np.ndarray]) -> float:
    """Radius with the smallest robust point-to-point scatter of the normalised flux."""
    def scatter(f: np.ndarray) -> float:
        d = np.diff(f / np.nanmedian(f))
        return float(np.nanmedian(np.abs(d - np.nanmedian(d))))
    return min(OPTIMAL_CANDIDATES, key=lambda r: scatter(fluxes[r]))


@dataclass
class ApertureSums:
    """Sums over circles of each radius around the target, per frame [electrons]: of the
    corrected image (``total``, with the ``area`` [pixel]), of all stars, of the target
    alone and of the dark current; plus the DRP's background estimate [e/pixel] and the
    cosmic-ray hits (frame, x, y, electrons)."""

    radii: tuple[float, ...]
    n_frames: int
    total: dict[float, np.ndarray] = field(init=False)
    area: dict[float, np.ndarray] = field(init=False)
    stars: dict[float, np.ndarray] = field(init=False)
    target: dict[float, np.ndarray] = field(init=False)
    dark: dict[float, np.ndarray] = field(init=False)
    background_estimate: np.ndarray = field(init=False)
    cosmics: list[tuple[int, float, float, float]] = field(default_factory=list)

    def __post_init__(self) -> None:
        for name in ("total", "area", "stars", "target", "dark"):
            setattr(self, name, {r: np.zeros(self.n_frames) for r in self.radii})
        self.background_estimate = np.zeros(self.n_frames)

    def add_chunk(self, obs: Observation, frames: slice, images: ChunkImages) -> None:
        """Fill ``frames`` from the images of one chunk."""
        self.background_estimate[frames] = images.background_estimate
        self.cosmics += [(frames.start + f, x, y, e) for f, x, y, e in images.cosmics]
        dark_stack = np.broadcast_to(obs.detector.dark_map * obs.texp, images.cor.shape)
        tx, ty = obs.target_x[frames], obs.target_y[frames]
        for r in self.radii:
            self.total[r][frames], self.area[r][frames], _ = circular_aperture_sums(
                images.cor, tx, ty, r)
            self.stars[r][frames] = circular_aperture_sums(images.stars, tx, ty, r)[0]
            self.target[r][frames] = circular_aperture_sums(images.target, tx, ty, r)[0]
            self.dark[r][frames] = circular_aperture_sums(dark_stack, tx, ty, r)[0]


def write_subarray(obs: Observation, folder: Path) -> tuple[Path, ApertureSums]:
    """Draw the images chunk by chunk into the SubArray product (cube, metadata, centroids,
    smearing rows) in ``folder``; returns its path and the target's aperture sums."""
    cfg, n = obs.cfg, obs.n_frames
    psf = simulation_psf(cfg)
    sums = ApertureSums(aperture_radii(cfg), n)
    path = folder / P.product_file_name(obs.visit, obs.tu, P.SUBARRAY)
    with atomic_path(path) as tmp:
        cube_cards = (SP.common_cards(P.SUBARRAY, "L1", _CORRECTION)
                      + obs.base_cards + SP.image_cards(obs.x_winoff, obs.y_winoff))
        writer = CubeWriter(tmp, P.SUBARRAY, (n, 200, 200), cube_cards)
        for start in range(0, n, cfg.chunk_frames):
            sl = slice(start, min(start + cfg.chunk_frames, n))
            images = observe_chunk(cfg, psf, obs.scene, obs.detector, obs.field_turn[sl],
                                   obs.target_x[sl], obs.target_y[sl], obs.flux[:, sl],
                                   obs.background[sl], obs.texp, obs.timeline.nexp, obs.rng)
            writer.write(images.cor)
            sums.add_chunk(obs, sl, images)
        writer.close()
        append_hdus(tmp, _subarray_extensions(obs))
    return path, sums


def _subarray_extensions(obs: Observation) -> list[fits.hdu.base.ExtensionHDU]:
    """The SubArray product's tables (image metadata, centroids) and its (empty) smearing
    rows."""
    timeline = obs.timeline
    zeros_row = np.zeros((obs.n_frames, 1, 200))
    smear = fits.ImageHDU(zeros_row.astype(">f8"))
    smear.header["EXTNAME"] = P.SMEARING_ROW
    smear.header["BUNIT"] = "ADU"
    smear_err = fits.ImageHDU(zeros_row.astype(">f8"))
    smear_err.header["EXTNAME"] = P.SMEARING_ROW_ERROR
    return [
        table_hdu(P.COR_METADATA, P.COR_METADATA_COLUMNS,
                  SP.cor_metadata(obs.times, obs.target_x, obs.target_y, timeline.roll,
                                  obs.cfg, obs.detector.read_noise),
                  SP.common_cards(P.COR_METADATA, "L1", _CORRECTION)),
        table_hdu(P.CENTROID, P.CENTROID_COLUMNS,
                  SP.centroid_table(obs.times, timeline.location, timeline.centroid_x,
                                    timeline.centroid_y),
                  SP.common_cards(P.CENTROID, "L1", _CORRECTION)),
        smear, smear_err]


COSMIC_CORE_RADIUS = 2.0
"""[pixel] The simulated DRP counts a cosmic-ray hit in EVENT only within this distance of
the target's centroid (where it cannot be told from the star and corrected). Calibrated
on the five real DRP light curves of ``tests/data``: 2 of 1293 frames (0.15 %) carry a
cosmic-ray count; with 10.8 hits per minute on the subarray this radius flags ~0.3 %
(counting every hit in the 25 px DEFAULT aperture flagged ~40 % of the demo's frames)."""

EARTH_LEVELS = ((9, 4.5), (1, 3.5))
"""(EVENT Earth level, stray light above the background floor by this factor): the
simulated DRP's Earth-limb levels (the real files hold levels 1 and 9 only). The real
files flag 20 of 1293 frames (1.5 %, 0-4 % per visit); with the default stray light
(20 e/px/s decaying in 3 min from a gap edge, floor 3.5 e/px/s) these thresholds flag the
frames within ~1.5 min of a gap edge (~4 % of a synthetic visit's frames)."""

SAA_MINUTES = 1.0
"""[min] Frames this close before the start of every second data gap are in the South
Atlantic Anomaly (EVENT units digit 1): the real files flag 7 of 1293 frames (0.5 %)."""


def events(obs: Observation, cosmics: list[tuple[int, float, float, float]]) -> np.ndarray:
    """DRP-like EVENT codes (decimal digits, pycheops' decoding): the cosmic-ray count on
    the target's core (x100000, :data:`COSMIC_CORE_RADIUS`), the Earth stray-light level
    (x100, :data:`EARTH_LEVELS`) and the SAA (x1, :data:`SAA_MINUTES`), at the rates of
    real DRP visits (1-5 % of frames flagged; STATUS is 1 exactly where EVENT != 0)."""
    cfg, timeline = obs.cfg, obs.timeline
    hits = np.zeros(timeline.n_frames, dtype=np.int32)
    for frame, x, y, _ in cosmics:
        if np.hypot(x - obs.target_x[frame], y - obs.target_y[frame]) <= COSMIC_CORE_RADIUS:
            hits[frame] += 1
    event = 100000 * np.minimum(hits, 9)
    stray = cfg.stray_light_rate * np.exp(-timeline.minutes_to_gap / cfg.stray_light_minutes)
    floor = max(cfg.background_rate, 1e-9)
    earth = np.zeros(timeline.n_frames, dtype=np.int32)
    for level, factor in reversed(EARTH_LEVELS):  # the highest level wins
        earth[stray > factor * floor] = level
    event += 100 * earth
    event += saa_frames(timeline.mjd_tt, timeline.exptime * timeline.nexp).astype(np.int32)
    return event.astype(np.int32)


def saa_frames(mjd: np.ndarray, texptime: float) -> np.ndarray:
    """Frames within :data:`SAA_MINUTES` before the start of every second gap (a jump of
    more than three exposures) of the times ``mjd`` [d]."""
    minutes = np.asarray(mjd, float) * 1440.0
    starts = np.flatnonzero(np.diff(minutes) > 3 * texptime / 60.0)[::2]
    out = np.zeros(len(minutes), bool)
    for k in starts:
        out |= (minutes <= minutes[k]) & (minutes > minutes[k] - SAA_MINUTES - 1e-9)
    return out


def write_lightcurves(obs: Observation, sums: ApertureSums, folder: Path) -> list[Path]:
    """The target's light curve of each DRP aperture (and OPTIMAL) in ``folder``."""
    timeline, nexp = obs.timeline, obs.timeline.nexp
    event = events(obs, sums.cosmics)
    apertures = dict(P.APERTURE_RADII)
    if obs.cfg.write_optimal:
        apertures["OPTIMAL"] = choose_optimal(sums.total)
    paths = []
    for name, r in apertures.items():
        total, area, target = sums.total[r], sums.area[r], sums.target[r]
        bkg_total = sums.background_estimate * area
        variance = (np.clip(total, 0, None) + bkg_total + sums.dark[r]
                    + area * nexp * obs.detector.read_noise ** 2)
        conta = (sums.stars[r] - target) / np.where(target > 0, target, np.nan)
        table = SP.lightcurve_table(obs.times, total, np.sqrt(variance),
                                    (event != 0).astype(np.int32), event, sums.dark[r],
                                    bkg_total, np.nan_to_num(conta), timeline.roll,
                                    timeline.location, timeline.centroid_x,
                                    timeline.centroid_y)
        cards = (SP.common_cards(P.LIGHTCURVE, "L2", "main_photometry.py 14.1.3")
                 + obs.base_cards + SP.lightcurve_cards(name, r, total, obs.texp))
        path = folder / P.product_file_name(obs.visit, obs.tu, P.LIGHTCURVE, name)
        write_tables(path, [table_hdu(P.LIGHTCURVE, P.LIGHTCURVE_COLUMNS, table, cards)])
        paths.append(path)
    return paths


@dataclass(frozen=True)
class Catalogue:
    """The DRP star catalogue of the visit: the catalogued stars sorted by distance, target
    first (``order``: scene rows), each scene star's ``row`` in it (-1 when not listed) and
    every scene star's catalogue ID."""

    order: list[int]
    row: np.ndarray
    ids: list[str]


def make_catalogue(obs: Observation) -> Catalogue:
    """Sort the catalogued stars and draw their IDs (after the images, from the seed)."""
    scene = obs.scene
    order = [i for i in np.argsort(np.hypot(scene.dx, scene.dy), kind="stable")
             if scene.in_catalogue[i]]
    row = np.full(scene.n_stars, -1)
    row[order] = np.arange(len(order))
    ids = [str(v) for v in obs.rng.integers(10**18, 6 * 10**18, scene.n_stars, dtype=np.int64)]
    return Catalogue(order, row, ids)


def write_catalogue(obs: Observation, catalogue: Catalogue, folder: Path,
                    mag_column: str) -> Path:
    """The StarCatalogue product in ``folder``, magnitudes in column ``mag_column``
    (MAG_GAIA, or MAG_CHEOPS as in CHEOPSim)."""
    cfg, scene, order = obs.cfg, obs.scene, catalogue.order
    mjd0 = obs.timeline.mjd_tt[0]
    obs_epoch = float(Time(mjd0, format="mjd", scale="tt").jyear)
    cat_tu = P.tu_stamp(Time(mjd0 - 0.004, format="mjd", scale="tt").utc.isot)
    table = SP.catalogue_table([catalogue.ids[i] for i in order], scene.ra[order],
                               scene.dec[order], scene.mag[order],
                               np.full(len(order), cfg.t_eff),
                               np.hypot(scene.dx, scene.dy)[order] * cfg.plate_scale, mag_column)
    cards = (SP.common_cards(P.STAR_CATALOGUE, "EXT", "visit preparation")
             + obs.base_cards[:2] + obs.base_cards[4:17] + SP.catalogue_cards(cfg, obs_epoch))
    path = folder / P.product_file_name(obs.visit, cat_tu, P.STAR_CATALOGUE,
                                        f"OBSID{cfg.obsid:010d}")
    write_tables(path, [table_hdu(P.STAR_CATALOGUE, P.star_catalogue_columns(mag_column),
                                  table, cards)])
    return path
