"""When frames are taken, at which roll angle, and where the target sits: synthetic or real.

A real DRP light curve (e.g. the five in ``tests/data``) gives the MJD_TIME, ROLL_ANGLE,
CENTROID_X/Y, LOCATION_X/Y, EXPTIME and NEXP of a real visit; a synthetic timeline follows
CHEOPS's orbit: 98.77 min per orbit and per roll turn, ~40 min lost per orbit.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from astropy.time import Time
from numpy.typing import NDArray

from archi.simulate.config import SimulationConfig

FULL_WELL = 114_000.0  # [e] (pycheops ETC)
PEAK_PIXEL_FRACTION = 0.0046  # fraction of a star's flux in its brightest pixel (ETC)
ZERO_POINT_RATE = 1.85184e9  # [e/s] count rate of a G = 0 star in the CHEOPS band

# Subarray stacking order by single-exposure time (CHEOPS Observers Manual, Table 2).
_STACKING = ((1.05, 22), (1.10, 44), (1.20, 40), (1.25, 39), (1.30, 36), (1.50, 33),
             (1.60, 30), (1.65, 28), (1.75, 26), (1.95, 24), (2.15, 22), (2.40, 20),
             (2.70, 18), (2.80, 16), (2.90, 15), (3.05, 14), (3.20, 13), (3.40, 12),
             (3.65, 11), (3.90, 10), (4.25, 9), (4.70, 8), (5.25, 7), (6.05, 6), (7.25, 5),
             (9.20, 4), (12.50, 3), (22.65, 2), (np.inf, 1))


def count_rate(g_mag: float | NDArray) -> float | NDArray:
    """CHEOPS count rate [e/s] of a star of Gaia magnitude ``g_mag`` (colour term ignored)."""
    return ZERO_POINT_RATE * 10.0 ** (-0.4 * np.asarray(g_mag, dtype=float))


def auto_exptime(g_mag: float) -> float:
    """Exposure [s] filling 85 % of the full well in the peak pixel, within 0.1-60 s."""
    t = 0.85 * FULL_WELL / (count_rate(g_mag) * PEAK_PIXEL_FRACTION)
    return float(np.clip(np.floor(t * 100) / 100, 0.1, 60.0))


def stacking_order(exptime: float) -> int:
    """Number of exposures co-added per subarray image for a single exposure ``exptime``."""
    return next(n for limit, n in _STACKING if exptime < limit)


def cadence(exptime: float, nexp: int) -> float:
    """Time between stacked images [s]: the exposures plus ~25 ms of read-out each."""
    return nexp * (exptime + 0.025) + 0.003


@dataclass(frozen=True)
class Timeline:
    """Per-frame timing and pointing of a visit."""

    mjd_tt: NDArray[np.float64]  # mid-exposure [MJD, TT]
    roll: NDArray[np.float64]  # [deg], 0-360, decreasing
    centroid_x: NDArray[np.float64]  # target, full-CCD [pixel]
    centroid_y: NDArray[np.float64]
    location: tuple[float, float]  # intended target position, full-CCD [pixel]
    exptime: float  # [s]
    nexp: int
    minutes_to_gap: NDArray[np.float64]  # time to the nearest data gap edge [min]

    @property
    def n_frames(self) -> int:
        return len(self.mjd_tt)

    @property
    def texptime(self) -> float:
        return self.exptime * self.nexp


def _minutes_to_gap(mjd: NDArray, step_s: float) -> NDArray:
    """Minutes from each frame to the nearest edge of a gap longer than 3 cadences."""
    t = mjd * 1440.0
    jumps = np.flatnonzero(np.diff(t) > 3 * step_s / 60.0)
    edges = np.concatenate([t[jumps], t[jumps + 1]])
    if edges.size == 0:
        return np.full(len(t), np.inf)
    return np.min(np.abs(t[:, None] - edges[None, :]), axis=1)


def synthetic_timeline(cfg: SimulationConfig, rng: np.random.Generator) -> Timeline:
    exptime = auto_exptime(cfg.target_mag) if cfg.exptime == "auto" else float(cfg.exptime)
    nexp = stacking_order(exptime) if cfg.nexp == "auto" else int(cfg.nexp)
    step = cadence(exptime, nexp)
    visible = cfg.orbit_minutes - cfg.gap_minutes
    t0 = Time(cfg.start_utc, scale="utc").tt.mjd
    # candidate frame times over enough orbits, keep the ones outside the gaps
    n_orbits = int(np.ceil(cfg.n_frames * step / 60.0 / max(visible, 1e-3))) + 1
    t_min = np.arange(0.0, n_orbits * cfg.orbit_minutes, step / 60.0)
    t_min = t_min[np.mod(t_min, cfg.orbit_minutes) < visible][: cfg.n_frames]
    mjd = t0 + t_min / 1440.0
    roll = np.mod(cfg.roll_start - 360.0 * t_min / cfg.orbit_minutes, 360.0)
    jitter = 0.0 if cfg.noise_free else cfg.jitter_rms
    cx = cfg.location[0] + cfg.centroid_offset[0] + jitter * rng.standard_normal(len(mjd))
    cy = cfg.location[1] + cfg.centroid_offset[1] + jitter * rng.standard_normal(len(mjd))
    return Timeline(mjd, roll, cx, cy, (float(cfg.location[0]), float(cfg.location[1])),
                    exptime, nexp, _minutes_to_gap(mjd, step))


def timeline_from_lightcurve(cfg: SimulationConfig, path: str | Path) -> Timeline:
    """Take a real visit's timing, roll angles and target centroids (first ``n_frames``)."""
    from archi.io.drp import read_lightcurve  # io depends on nothing in simulate

    _, cols, header = read_lightcurve(path)
    n = min(cfg.n_frames, len(cols["MJD_TIME"]))
    mjd = cols["MJD_TIME"][:n].astype(float)
    exptime, nexp = float(header["EXPTIME"]), int(header["NEXP"])
    roll = cols["ROLL_ANGLE"][:n].astype(float)
    if not np.all(np.isfinite(roll)):
        from archi.geometry import fill_roll_angles
        roll, _ = fill_roll_angles(mjd, roll)
    return Timeline(mjd, roll, cols["CENTROID_X"][:n].astype(float),
                    cols["CENTROID_Y"][:n].astype(float),
                    (float(cols["LOCATION_X"][0]), float(cols["LOCATION_Y"][0])),
                    exptime, nexp, _minutes_to_gap(mjd, cadence(exptime, nexp)))


def make_timeline(cfg: SimulationConfig, rng: np.random.Generator) -> Timeline:
    if cfg.timeline == "synthetic":
        return synthetic_timeline(cfg, rng)
    return timeline_from_lightcurve(cfg, cfg.timeline)
