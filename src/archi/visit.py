"""The data model of one CHEOPS visit, as the photometry needs it.

A :class:`Visit` is built by :func:`archi.io.read_visit` from DRP products (or a simulated
visit written in the same format). Series are per frame (one row per stacked subarray
image, same order as the cube). Pixel conventions: see ``archi.__doc__``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from numpy.typing import NDArray

if TYPE_CHECKING:  # annotations only: the data model does not depend on the geometry
    from archi.geometry import SkyTransform


@dataclass(frozen=True)
class VisitId:
    """Identity of a visit: the parts of the CHEOPS file key ``CH_PRppnnnn_TGttttvv_Vrrpp``."""

    progtype: int
    prog_id: int
    req_id: int
    visitctr: int
    version: int = 300  # ARCH_REV * 100 + PROC_NUM
    obsid: int = 0

    @property
    def visit_key(self) -> str:
        """``PRppnnnn_TGttttvv`` (the visit part of the file key)."""
        return (f"PR{self.progtype:02d}{self.prog_id:04d}"
                f"_TG{self.req_id:04d}{self.visitctr:02d}")

    @property
    def file_key(self) -> str:
        """``CH_PRppnnnn_TGttttvv_Vrrpp``."""
        return f"CH_{self.visit_key}_V{self.version:04d}"

    @property
    def dace_folder(self) -> str:
        """Top folder of an unpacked DACE download: the file key without ``CH_``."""
        return f"{self.visit_key}_V{self.version:04d}"


GAIN_E_PER_ADU = 1.96
"""Conversion of the DRP RON column [ADU per readout] to electrons (archi's value; the
nominal CHEOPS gain is 1.957 e/ADU)."""


@dataclass(frozen=True)
class DrpLightCurve:
    """One DRP light curve (``SCI_COR_Lightcurve-<aperture>``), columns as numpy arrays."""

    aperture: str
    radius: float  # AP_RADI [pixel]
    path: Path
    flux: NDArray[np.float64]  # [electrons per stacked image]
    flux_err: NDArray[np.float64]  # [electrons]
    background: NDArray[np.float64]  # sky background summed in the aperture [electrons]
    dark: NDArray[np.float64]  # dark current summed in the aperture [electrons]
    conta_lc: NDArray[np.float64]  # contamination ratio
    status: NDArray[np.int32]
    event: NDArray[np.int32]

    @property
    def area(self) -> float:
        """Aperture area [pixel^2] the DRP uses to turn totals into per-pixel levels."""
        return float(np.pi * self.radius**2)


@dataclass(frozen=True)
class StarCatalogue:
    """The DRP star catalogue (``EXT_PRE_StarCatalogue``); row 0 is the target."""

    path: Path
    ids: NDArray[np.str_]
    ra: NDArray[np.float64]  # [deg] at OBSEPOCH
    dec: NDArray[np.float64]  # [deg]
    mag: NDArray[np.float64]  # Gaia G (MAG_GAIA, or MAG_CHEOPS in older products) [mag]
    t_eff: NDArray[np.float64]  # [K]
    is_target: NDArray[np.bool_]
    centre_ra: float  # CENT_RA [deg]
    centre_dec: float  # CENT_DEC [deg]
    magnitude_column: str

    def __len__(self) -> int:
        return len(self.ra)


@dataclass
class Visit:
    """Everything the photometry reads from one visit.

    ``cube`` is memory-mapped from the COR file where possible: slicing it reads only the
    frames asked for.
    """

    visit_id: VisitId
    folder: Path
    subarray_path: Path
    cube: NDArray[np.float64]  # (n_frames, 200, 200) [electrons], NaN outside the field
    mjd_time: NDArray[np.float64]  # mid-exposure, MJD on the TT scale [day]
    bjd_time: NDArray[np.float64]  # mid-exposure, BJD_TDB [day]
    utc_time: NDArray[np.str_]
    roll_angle: NDArray[np.float64]  # [deg], decreasing; NaN rows estimated (see below)
    roll_estimated: NDArray[np.bool_]  # True where ROLL_ANGLE was NaN and was estimated
    centroid_x: NDArray[np.float64]  # target centroid, full-CCD coordinates [pixel]
    centroid_y: NDArray[np.float64]
    location_x: float  # intended target position, full-CCD coordinates [pixel]
    location_y: float
    x_winoff: float  # subarray offset in the CCD [pixel]
    y_winoff: float
    exptime: float  # single exposure [s]
    nexp: int  # exposures co-added per image
    ron: NDArray[np.float64]  # read-out noise per readout, per frame [ADU]
    lightcurves: dict[str, DrpLightCurve]
    reference_aperture: str  # the DRP light curve roll angles and centroids came from
    status: NDArray[np.int32]
    event: NDArray[np.int32]
    catalogue: StarCatalogue | None = None
    target_name: str = ""
    ra_target: float = float("nan")
    dec_target: float = float("nan")
    mag_target: float = float("nan")
    smearing_row: NDArray[np.float64] | None = None  # (n_frames, 200) [electrons]
    header: dict = field(default_factory=dict)  # the DRP light curve's identity keywords
    # catalogue to pixels and the sense the field turns in (None: PIPE's, assumed); the
    # prepare step sets the one it measured (archi.astrometry)
    sky: SkyTransform | None = None
    # what reading repaired or replaced (archi.errors.InputWarning messages), for run_info
    input_warnings: tuple[str, ...] = ()
    # telescope tube temperature thermFront_2 per frame [deg C] (None: not in the products)
    therm_front_2: NDArray[np.float64] | None = None

    @property
    def n_frames(self) -> int:
        return int(self.cube.shape[0])

    @property
    def image_shape(self) -> tuple[int, int]:
        return (int(self.cube.shape[1]), int(self.cube.shape[2]))

    @property
    def texptime(self) -> float:
        """Total exposure of a stacked image [s]."""
        return self.exptime * self.nexp

    @property
    def target_x(self) -> NDArray[np.float64]:
        """Target centroid in subarray pixels (x = column) per frame."""
        return self.centroid_x - self.x_winoff

    @property
    def target_y(self) -> NDArray[np.float64]:
        return self.centroid_y - self.y_winoff

    @property
    def ron_electrons(self) -> NDArray[np.float64]:
        """Read-out noise per readout [electrons]."""
        return self.ron * GAIN_E_PER_ADU

    def background_per_pixel(self, aperture: str | None = None) -> NDArray[np.float64]:
        """Sky background per pixel and frame [electrons], from the DRP light curve."""
        lc = self.lightcurves[aperture or self.reference_aperture]
        return lc.background / lc.area

    def dark_per_pixel(self, aperture: str | None = None) -> NDArray[np.float64]:
        """Dark current per pixel and frame [electrons], from the DRP light curve."""
        lc = self.lightcurves[aperture or self.reference_aperture]
        return lc.dark / lc.area


@dataclass(frozen=True)
class VisitContext:
    """What the light-curve files carry of a visit besides times and fluxes: the DRP's
    identity keywords and the per-frame series to decorrelate against."""

    keywords: dict  # the DRP light curve's identity keywords (``Visit.header``)
    background: NDArray[np.float64]  # sky background per pixel the DRP subtracted [e]
    window_offset: tuple[float, float]  # (X_WINOFF, Y_WINOFF): subarray origin on the CCD
    location: tuple[float, float]  # (LOCATION_X, LOCATION_Y): intended target position
    therm_front_2: NDArray[np.float64] | None = None  # tube temperature [deg C]
    drp_aperture: str = ""  # the DRP light curve the background comes from

    @classmethod
    def of(cls, visit: Visit) -> VisitContext:
        """The context of ``visit`` (background from its reference DRP light curve)."""
        return cls(keywords=dict(visit.header),
                   background=np.asarray(visit.background_per_pixel(), float),
                   window_offset=(float(visit.x_winoff), float(visit.y_winoff)),
                   location=(float(visit.location_x), float(visit.location_y)),
                   therm_front_2=visit.therm_front_2, drp_aperture=visit.reference_aperture)


def visit_summary(visit: Visit) -> dict[str, object]:
    """One-row description of a visit (for tables and logs)."""
    minutes = (visit.mjd_time - visit.mjd_time[0]) * 1440.0
    steps = np.diff(minutes)
    return {
        "visit": visit.visit_id.file_key,
        "target": visit.target_name,
        "n_frames": visit.n_frames,
        "duration_h": round(float(minutes[-1] / 60.0), 3),
        "cadence_s": round(float(np.median(steps) * 60.0), 3) if len(steps) else float("nan"),
        "exptime_s": visit.exptime,
        "nexp": visit.nexp,
        "roll_start_deg": round(float(visit.roll_angle[0]), 3),
        "roll_estimated": int(visit.roll_estimated.sum()),
        "apertures": ",".join(sorted(visit.lightcurves)),
        "catalogue_stars": len(visit.catalogue) if visit.catalogue is not None else 0,
        "flagged_frames": int(np.count_nonzero(visit.status)),
    }
