"""The truth of a simulated visit: what every star really did, and the noise levels.

``truth.fits`` holds:

* ``STARS`` table, one row per simulated star (row 0 = target): CATALOGUE_ROW (-1 when the
  DRP catalogue does not list it), ID, RA, DEC [deg], MAG [Gaia G], RATE [e/s], DX0, DY0
  [pixel, offset from the target at roll 0], DISTANCE [pixel], SIGNAL, DEPTH, PERIOD [d],
  T0 [d from the first frame], DURATION [d], NOTE.
* ``X``, ``Y`` images (n_stars, n_frames): true mid-exposure positions [pixel] (subarray
  pixels, x = column; positions are rendered on a 0.1-px grid, so within 0.05 px).
* ``FLUX`` image (n_stars, n_frames): true electrons per stacked image, signals included.
* ``FRAMES`` table: MJD_TIME [TT], BJD_TIME, ROLL_ANGLE [deg], TARGET_X, TARGET_Y,
  BACKGROUND (true sky per pixel) and BACKGROUND_ESTIMATE (the level the DRP subtracted)
  [e/pixel], DARK (mean over the field) [e/pixel], READ_NOISE [e per readout].
  Header: NEXP, EXPTIME [s], TEXPTIME [s].
* ``DARK_MAP`` image (200, 200): dark current per pixel [e/s] (subtracted by the DRP; its
  shot noise stays in the images).
* ``COSMICS`` table: FRAME, X, Y (mean track position), ELECTRONS.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from astropy.io import fits
from numpy.typing import NDArray

from archi.io.atomic import atomic_path
from archi.simulate.scene import Scene


@dataclass
class Truth:
    scene: Scene
    catalogue_row: NDArray[np.int64]
    ids: NDArray[np.str_]
    x: NDArray[np.float64]
    y: NDArray[np.float64]
    flux: NDArray[np.float64]
    mjd_tt: NDArray[np.float64]
    bjd_tdb: NDArray[np.float64]
    roll: NDArray[np.float64]
    target_x: NDArray[np.float64]
    target_y: NDArray[np.float64]
    background: NDArray[np.float64]
    background_estimate: NDArray[np.float64]
    dark: NDArray[np.float64]
    read_noise: NDArray[np.float64]
    nexp: int
    exptime: float
    dark_map: NDArray[np.float64]
    cosmics: list[tuple[int, float, float, float]]


def write_truth(path: Path, truth: Truth) -> None:
    s = truth.scene
    specs = [sp for sp in s.specs]

    def spec_values(attr: str, default):
        return [getattr(sp, attr) if sp is not None else default for sp in specs]

    stars = fits.BinTableHDU.from_columns([
        fits.Column("CATALOGUE_ROW", "J", array=truth.catalogue_row),
        fits.Column("ID", "20A", array=truth.ids),
        fits.Column("RA", "D", unit="deg", array=s.ra),
        fits.Column("DEC", "D", unit="deg", array=s.dec),
        fits.Column("MAG", "D", unit="mag", array=s.mag),
        fits.Column("RATE", "D", unit="electron/s", array=s.rate),
        fits.Column("DX0", "D", unit="pixel", array=s.dx),
        fits.Column("DY0", "D", unit="pixel", array=s.dy),
        fits.Column("DISTANCE", "D", unit="pixel", array=np.hypot(s.dx, s.dy)),
        fits.Column("SIGNAL", "10A", array=spec_values("signal", "none")),
        fits.Column("DEPTH", "D", array=spec_values("depth", 0.0)),
        fits.Column("PERIOD", "D", unit="day", array=spec_values("period", 0.0)),
        fits.Column("T0", "D", unit="day", array=spec_values("t0", 0.0)),
        fits.Column("DURATION", "D", unit="day", array=spec_values("duration", 0.0)),
        fits.Column("NOTE", "60A", array=spec_values("note", "target")),
    ], name="STARS")
    frames = fits.BinTableHDU.from_columns([
        fits.Column("MJD_TIME", "D", unit="day", array=truth.mjd_tt),
        fits.Column("BJD_TIME", "D", unit="day", array=truth.bjd_tdb),
        fits.Column("ROLL_ANGLE", "D", unit="deg", array=truth.roll),
        fits.Column("TARGET_X", "D", unit="pixel", array=truth.target_x),
        fits.Column("TARGET_Y", "D", unit="pixel", array=truth.target_y),
        fits.Column("BACKGROUND", "D", unit="electron/pixel", array=truth.background),
        fits.Column("BACKGROUND_ESTIMATE", "D", unit="electron/pixel",
                    array=truth.background_estimate),
        fits.Column("DARK", "D", unit="electron/pixel", array=truth.dark),
        fits.Column("READ_NOISE", "D", unit="electron", array=truth.read_noise),
    ], name="FRAMES")
    frames.header["NEXP"] = truth.nexp
    frames.header["EXPTIME"] = truth.exptime
    frames.header["TEXPTIME"] = truth.exptime * truth.nexp
    cosmic = np.array(truth.cosmics, dtype=float).reshape(-1, 4)
    cosmics = fits.BinTableHDU.from_columns([
        fits.Column("FRAME", "J", array=cosmic[:, 0].astype(int)),
        fits.Column("X", "D", unit="pixel", array=cosmic[:, 1]),
        fits.Column("Y", "D", unit="pixel", array=cosmic[:, 2]),
        fits.Column("ELECTRONS", "D", unit="electron", array=cosmic[:, 3]),
    ], name="COSMICS")
    hdul = fits.HDUList([
        fits.PrimaryHDU(), stars,
        fits.ImageHDU(truth.x, name="X"), fits.ImageHDU(truth.y, name="Y"),
        fits.ImageHDU(truth.flux, name="FLUX"), frames,
        fits.ImageHDU(truth.dark_map, name="DARK_MAP"), cosmics,
    ])
    hdul[0].header["CONTENT"] = "archi simulated-visit truth"
    with atomic_path(path) as tmp:
        hdul.writeto(tmp)


@dataclass(frozen=True)
class TruthTables:
    """The truth file read back: plain arrays and tables, for tests and benchmarks."""

    stars: fits.FITS_rec
    x: NDArray[np.float64]
    y: NDArray[np.float64]
    flux: NDArray[np.float64]
    frames: fits.FITS_rec
    nexp: int
    exptime: float
    dark_map: NDArray[np.float64]
    cosmics: fits.FITS_rec

    @property
    def texptime(self) -> float:
        return self.exptime * self.nexp


def read_truth(path: str | Path) -> TruthTables:
    with fits.open(path) as hdul:
        return TruthTables(
            stars=hdul["STARS"].data.copy(), x=hdul["X"].data.astype(float),
            y=hdul["Y"].data.astype(float), flux=hdul["FLUX"].data.astype(float),
            frames=hdul["FRAMES"].data.copy(), nexp=int(hdul["FRAMES"].header["NEXP"]),
            exptime=float(hdul["FRAMES"].header["EXPTIME"]),
            dark_map=hdul["DARK_MAP"].data.astype(float),
            cosmics=hdul["COSMICS"].data.copy())
