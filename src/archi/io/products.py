"""CHEOPS product names and table layouts, shared by the readers and the simulator's writers.

Names follow the CHEOPS data model (common_sw ``buildFileName``)::

    CH_PRppnnnn_TGttttvv_TUyyyy-mm-ddThh-mm-ss_<PRODUCT>[-<DATANAME>]_Vrrpp.fits

Column lists reproduce the real products byte for byte (TFORMs and row widths:
light curve 138 B, COR metadata 241 B, centroid 61 B, star catalogue 89 B).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from archi.visit import VisitId

# --------------------------------------------------------------------------------------
# Visit identity and file names
# --------------------------------------------------------------------------------------

FILE_NAME_RE = re.compile(
    r"^CH_PR(?P<progtype>\d{2})(?P<prog_id>\d{4})_TG(?P<req_id>\d{4})(?P<visitctr>\d{2})"
    r"_TU(?P<tu>\d{4}-\d{2}-\d{2}T\d{2}-\d{2}-\d{2})"
    r"_(?P<product>[A-Z]{2,4}_[A-Z]{3}_[A-Za-z0-9]+)(?:-(?P<dataname>[A-Za-z0-9_]+))?"
    r"_V(?P<version>\d{4})\.fits$"
)

SUBARRAY = "SCI_COR_SubArray"
LIGHTCURVE = "SCI_COR_Lightcurve"
STAR_CATALOGUE = "EXT_PRE_StarCatalogue"
COR_METADATA = "SCI_COR_ImageMetadata"
CENTROID = "PIP_COR_Centroid"
SMEARING_ROW = "SCI_COR_SmearingRow"
SMEARING_ROW_ERROR = "SCI_COR_SmearingRowError"

IDENTITY_KEYWORDS: dict[str, str] = {
    "TELESCOP": "telescope", "INSTRUME": "instrument", "PI_NAME": "PI of the programme",
    "OBS_CAT": "observation category", "PROGTYPE": "programme type",
    "PROG_ID": "programme id", "REQ_ID": "observation request id",
    "VISITCTR": "visit counter", "OBSID": "unique visit identifier",
    "TARGNAME": "target name", "SPECTYPE": "target spectral type",
    "T_EFF": "[K] target effective temperature", "MAG_G": "[mag] target Gaia G",
    "MAG_GERR": "[mag] error of MAG_G", "RA_TARG": "[deg] target RA (J2000)",
    "DEC_TARG": "[deg] target DEC (J2000)", "EQUINOX": "equinox of RA_TARG/DEC_TARG",
    "RADESYS": "frame of RA_TARG/DEC_TARG", "EXPTIME": "[s] single exposure time",
    "NEXP": "exposures co-added per image", "TEXPTIME": "[s] total exposure per image",
    "ARCH_REV": "DRP archive revision", "PROC_NUM": "DRP processing number",
    "PIPE_VER": "DRP pipeline version", "V_STRT_U": "[UTC] start of the visit's data",
    "V_STOP_U": "[UTC] end of the visit's data"}
"""The DRP light curve's identity keywords (what pycheops reads), copied into archi's
light-curve files, with their comments."""

APERTURE_RADII = {"RINF": 22.5, "DEFAULT": 25.0, "RSUP": 30.0}
"""Radii [pixel] of the DRP's fixed-name moving apertures (OPTIMAL is chosen per visit)."""


def product_file_name(visit: VisitId, tu: str, product: str, dataname: str | None = None) -> str:
    """File name of a product. ``tu`` is the UTC stamp ``yyyy-mm-ddThh-mm-ss``."""
    suffix = f"-{dataname}" if dataname else ""
    return f"CH_{visit.visit_key}_TU{tu}_{product}{suffix}_V{visit.version:04d}.fits"


def tu_stamp(utc_iso: str) -> str:
    """File-name UTC stamp from an ISO UTC string: truncated to seconds, ':' -> '-'."""
    return utc_iso[:19].replace(":", "-")


@dataclass(frozen=True)
class ProductName:
    """A parsed product file name."""

    path: Path
    visit: VisitId
    tu: str
    product: str
    dataname: str | None

    @property
    def version(self) -> int:
        return self.visit.version


def parse_product_name(path: str | Path) -> ProductName | None:
    """Parse a CHEOPS product file name; None when the name is not one."""
    path = Path(path)
    m = FILE_NAME_RE.match(path.name)
    if m is None:
        return None
    visit = VisitId(int(m["progtype"]), int(m["prog_id"]), int(m["req_id"]),
                    int(m["visitctr"]), int(m["version"]))
    return ProductName(path, visit, m["tu"], m["product"], m["dataname"])


# --------------------------------------------------------------------------------------
# Table layouts: (name, TFORM, TUNIT or None)
# --------------------------------------------------------------------------------------

Column = tuple[str, str, str | None]

LIGHTCURVE_COLUMNS: tuple[Column, ...] = (
    ("UTC_TIME", "26A", "TIMESYS=UTC"),
    ("MJD_TIME", "1D", "day"),
    ("BJD_TIME", "1D", "day"),
    ("FLUX", "1D", "electrons"),
    ("FLUXERR", "1D", "electrons"),
    ("STATUS", "1J", None),
    ("EVENT", "1J", None),
    ("DARK", "1D", "electrons"),
    ("BACKGROUND", "1D", "electrons"),
    ("CONTA_LC", "1D", "Flux_cont/Flux_target"),
    ("CONTA_LC_ERR", "1D", "ratio"),
    ("SMEARING_LC", "1D", "electrons"),
    ("SMEARING_LC_ERR", "1D", "ratio"),
    ("ROLL_ANGLE", "1D", "deg"),
    ("LOCATION_X", "1E", "pixel"),
    ("LOCATION_Y", "1E", "pixel"),
    ("CENTROID_X", "1E", "pixel"),
    ("CENTROID_Y", "1E", "pixel"),
)

COR_METADATA_COLUMNS: tuple[Column, ...] = (
    ("UTC_TIME", "26A", "TIMESYS=UTC"),
    ("MJD_TIME", "1D", "day"),
    ("BJD_TIME", "1D", "day"),
    ("CTYPE1", "8A", None), ("CRPIX1", "1E", "pixel"), ("CRVAL1", "1E", "deg"),
    ("CUNIT1", "8A", None),
    ("CTYPE2", "8A", None), ("CRPIX2", "1E", "pixel"), ("CRVAL2", "1E", "deg"),
    ("CUNIT2", "8A", None),
    ("CD1_1", "1D", "deg/pixel"), ("CD1_2", "1D", "deg/pixel"),
    ("CD2_1", "1D", "deg/pixel"), ("CD2_2", "1D", "deg/pixel"),
    ("LOS_TO_SUN_ANGLE", "1D", "deg"), ("LOS_TO_MOON_ANGLE", "1D", "deg"),
    ("LOS_TO_EARTH_ANGLE", "1D", "deg"),
    ("LATITUDE", "1E", "deg"), ("LONGITUDE", "1E", "deg"),
    ("CE_COUNTER", "1I", None), ("CE_INTEGRITY", "1B", None),
    ("HK_VOLT_FEE_VOD", "1E", "V"), ("HK_VOLT_FEE_VRD", "1E", "V"),
    ("HK_VOLT_FEE_VOG", "1E", "V"), ("HK_VOLT_FEE_VSS", "1E", "V"),
    ("HK_TEMP_FEE_CCD", "1E", "degC"), ("HK_TEMP_FEE_ADC", "1E", "degC"),
    ("HK_TEMP_FEE_BIAS", "1E", "degC"),
    ("ADC_N5V", "1E", "V"), ("ADC_TEMP1", "1E", "degC"),
    ("thermAft_1", "1E", "degC"), ("thermAft_2", "1E", "degC"),
    ("thermAft_3", "1E", "degC"), ("thermAft_4", "1E", "degC"),
    ("thermFront_1", "1E", "degC"), ("thermFront_2", "1E", "degC"),
    ("thermFront_3", "1E", "degC"), ("thermFront_4", "1E", "degC"),
    ("BIAS", "1D", None), ("RON", "1D", None),
)

CENTROID_COLUMNS: tuple[Column, ...] = (
    ("UTC_TIME", "26A", "TIMESYS=UTC"),
    ("MJD_TIME", "1D", "day"),
    ("BJD_TIME", "1D", "day"),
    ("IMAGE_INDEX", "1I", None),
    ("LOCATION_X", "1E", "pixel"), ("LOCATION_Y", "1E", "pixel"),
    ("CENTROID_X", "1E", "pixel"), ("CENTROID_Y", "1E", "pixel"),
    ("VALIDITY", "1B", None),
)


def star_catalogue_columns(magnitude_column: str = "MAG_GAIA") -> tuple[Column, ...]:
    """Star-catalogue columns. ``magnitude_column`` is MAG_GAIA (data model >= 13) or
    MAG_CHEOPS (older products and CHEOPSim 10)."""
    if magnitude_column not in ("MAG_GAIA", "MAG_CHEOPS"):
        raise ValueError(f"unknown catalogue magnitude column {magnitude_column!r}")
    return (
        ("ID", "20A", None),
        ("TARGET", "1L", None),
        ("RA", "1D", "deg"), ("RA_ERR", "1D", "deg"),
        ("DEC", "1D", "deg"), ("DEC_ERR", "1D", "deg"),
        ("DISTANCE", "1E", "arcsec"),
        (magnitude_column, "1D", "mag"), (f"{magnitude_column}_ERR", "1D", "mag"),
        ("T_EFF", "1D", "Kelvin"), ("T_EFF_ERR", "1D", "Kelvin"),
    )


def lightcurve_aperture_names(paths: list[Path]) -> dict[str, Path]:
    """Map aperture name (DATANAME) -> path for light-curve files."""
    out: dict[str, Path] = {}
    for p in paths:
        parsed = parse_product_name(p)
        if parsed and parsed.product == LIGHTCURVE and parsed.dataname:
            out[parsed.dataname] = parsed.path
    return out
