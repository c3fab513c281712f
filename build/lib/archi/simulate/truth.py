"""Home of ``truth.fits``, the truth of a simulated visit: what every star really did, and the
noise levels.

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
  Header: NEXP, EXPTIME [s], TEXPTIME [s], PLTSCALE (the true plate scale the catalogue
  was written with [arcsec/px]), FIELDROT (how the field turns: pipe = by -roll, reversed).
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

from archi.geometry import PLATE_SCALE
from archi.io.atomic import atomic_path
from archi.io.fitswrite import named_table
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
    plate_scale: float = PLATE_SCALE  # [arcsec/px]
    field_rotation: str = "pipe"


def write_truth(path: Path, truth: Truth) -> None:
    """Write ``truth.fits`` atomically (layout: module docstring)."""
    cosmic = np.array(truth.cosmics, dtype=float).reshape(-1, 4)
    cosmics = named_table("COSMICS", [
        ("FRAME", "J", None, cosmic[:, 0].astype(int)), ("X", "D", "pixel", cosmic[:, 1]),
        ("Y", "D", "pixel", cosmic[:, 2]), ("ELECTRONS", "D", "electron", cosmic[:, 3])])
    hdul = fits.HDUList([
        fits.PrimaryHDU(), _stars_table(truth),
        fits.ImageHDU(truth.x, name="X"), fits.ImageHDU(truth.y, name="Y"),
        fits.ImageHDU(truth.flux, name="FLUX"), _frames_table(truth),
        fits.ImageHDU(truth.dark_map, name="DARK_MAP"), cosmics,
    ])
    hdul[0].header["CONTENT"] = "archi simulated-visit truth"
    with atomic_path(path) as tmp:
        hdul.writeto(tmp)


def _stars_table(truth: Truth) -> fits.BinTableHDU:
    """The ``STARS`` table: one row per simulated star, the target first."""
    s = truth.scene

    def spec_values(attr: str, default):
        return [getattr(sp, attr) if sp is not None else default for sp in s.specs]

    return named_table("STARS", [
        ("CATALOGUE_ROW", "J", None, truth.catalogue_row), ("ID", "20A", None, truth.ids),
        ("RA", "D", "deg", s.ra), ("DEC", "D", "deg", s.dec), ("MAG", "D", "mag", s.mag),
        ("RATE", "D", "electron/s", s.rate),
        ("DX0", "D", "pixel", s.dx), ("DY0", "D", "pixel", s.dy),
        ("DISTANCE", "D", "pixel", np.hypot(s.dx, s.dy)),
        ("SIGNAL", "10A", None, spec_values("signal", "none")),
        ("DEPTH", "D", None, spec_values("depth", 0.0)),
        ("PERIOD", "D", "day", spec_values("period", 0.0)),
        ("T0", "D", "day", spec_values("t0", 0.0)),
        ("DURATION", "D", "day", spec_values("duration", 0.0)),
        ("NOTE", "60A", None, spec_values("note", "target"))])


def _frames_table(truth: Truth) -> fits.BinTableHDU:
    """The ``FRAMES`` table: one row per frame; NEXP, EXPTIME, TEXPTIME in its header."""
    per_pixel = "electron/pixel"
    frames = named_table("FRAMES", [
        ("MJD_TIME", "D", "day", truth.mjd_tt), ("BJD_TIME", "D", "day", truth.bjd_tdb),
        ("ROLL_ANGLE", "D", "deg", truth.roll),
        ("TARGET_X", "D", "pixel", truth.target_x), ("TARGET_Y", "D", "pixel", truth.target_y),
        ("BACKGROUND", "D", per_pixel, truth.background),
        ("BACKGROUND_ESTIMATE", "D", per_pixel, truth.background_estimate),
        ("DARK", "D", per_pixel, truth.dark), ("READ_NOISE", "D", "electron", truth.read_noise)])
    frames.header["NEXP"] = truth.nexp
    frames.header["EXPTIME"] = truth.exptime
    frames.header["TEXPTIME"] = truth.exptime * truth.nexp
    frames.header["PLTSCALE"] = (truth.plate_scale, "[arcsec/px] true plate scale")
    frames.header["FIELDROT"] = (truth.field_rotation, "field turns by -roll (pipe) or +roll")
    return frames


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
    plate_scale: float = PLATE_SCALE  # [arcsec/px]
    field_rotation: str = "pipe"

    @property
    def texptime(self) -> float:
        return self.exptime * self.nexp

    @property
    def field_turn(self) -> NDArray[np.float64]:
        """The angle [deg] the field is turned by in each frame
        (:func:`archi.geometry.rotate_offsets`): the roll, or minus it when reversed."""
        roll = np.asarray(self.frames["ROLL_ANGLE"], float)
        return -roll if self.field_rotation == "reversed" else roll


def read_truth(path: str | Path) -> TruthTables:
    with fits.open(path) as hdul:
        return TruthTables(
            stars=hdul["STARS"].data.copy(), x=hdul["X"].data.astype(float),
            y=hdul["Y"].data.astype(float), flux=hdul["FLUX"].data.astype(float),
            frames=hdul["FRAMES"].data.copy(), nexp=int(hdul["FRAMES"].header["NEXP"]),
            exptime=float(hdul["FRAMES"].header["EXPTIME"]),
            dark_map=hdul["DARK_MAP"].data.astype(float),
            cosmics=hdul["COSMICS"].data.copy(),
            plate_scale=float(hdul["FRAMES"].header.get("PLTSCALE", PLATE_SCALE)),
            field_rotation=str(hdul["FRAMES"].header.get("FIELDROT", "pipe")))
