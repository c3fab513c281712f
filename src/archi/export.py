"""Export the light curves of a visit: FITS, ``;``-separated text, and a run-info YAML file.

Every file is written to a temporary name beside its destination and renamed when complete
(:func:`archi.io.fitswrite.atomic_path`), so a killed job never leaves a file that looks
finished.

FITS layout (:func:`write_lightcurves_fits`, read back by :func:`read_lightcurves_fits`)
-----------------------------------------------------------------------------------------
* HDU 0, primary, no data. Keywords: ``FORMAT`` (= ``archi-lightcurves``), ``FORMATV``
  (layout version), ``PROGRAM`` (= ``archi``), ``VERSION`` (software version), ``DATE``
  (UTC time of writing), ``VISIT`` (visit file key), ``NSTARS``, and the run options
  ``METHOD`` (``method``), ``INITIAL`` (``initial_detect``), ``DETECT`` (``detect_mode``),
  ``GRID`` (``grid_bg``), ``CDPPTYPE`` (``CDPP_type``) when present in ``lc.options``.
  Strings are single-line printable ASCII cut to one card (a callable metric is written as
  ``module:qualname``).
* HDU 1 .. NSTARS, one binary table per star, ``EXTNAME = STAR_<n>`` (n = 0 is the target),
  one row per frame:

  =========== ====== ========= ===========================================
  column      TFORM  TUNIT     content
  =========== ====== ========= ===========================================
  MJD_TIME    D      d         mid-exposure MJD (TT)
  BJD_TIME    D      d         mid-exposure BJD_TDB
  ROLL_ANGLE  D      deg       roll angle
  FLUX        D      electron  aperture flux in the stacked image
  FLUX_ERR    D      electron  its uncertainty
  XC, YC      D      pixel     aperture centre (subarray pixels, ``archi.__doc__``)
  FLAG        J                FLAG_* bits of :mod:`archi.stars`, 0 = good
  =========== ====== ========= ===========================================

  Header keywords: ``STAR`` (number), ``X0``, ``Y0`` [pixel] (first-frame position),
  ``DIST`` [pixel] (distance from the target), ``MASKTYPE`` (``circle``/``shape``),
  ``MASKSIZE`` (the mask factor: radius [pixel] or layers), ``NPIX`` [pixel] (mean mask
  area), ``CDPP`` [ppm] (noise metric), ``CATROW`` (row in the DRP star catalogue, -1 if
  unmatched), ``BRIGHT`` [electron] (relative brightness estimate), and for a catalogue
  match ``CATID`` (catalogue/Gaia ID), ``RA``, ``DEC`` [deg], ``MAG`` [Gaia G]. A value that
  is NaN (no catalogue match, undefined metric) is left out: FITS headers cannot hold NaN.

Times and fluxes are float64 (archi stored float32 times, ~6 min resolution: bug B17).
"""

from __future__ import annotations

import datetime as _dt
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import yaml
from astropy.io import fits
from numpy.typing import NDArray

import archi
from archi.errors import CorruptProductError, ProductNotFoundError, one_line
from archi.io.atomic import atomic_path
from archi.stars import FLAG_NOT_MEASURED, FLAG_OUT_OF_BOUNDS, StarLightCurves, StarList, Tracks

__all__ = [
    "FITS_FORMAT",
    "FITS_FORMAT_VERSION",
    "FITS_COLUMNS",
    "OPTION_KEYWORDS",
    "RUN_INFO_FORMAT",
    "TEXT_COLUMNS_PER_STAR",
    "TextStarInfo",
    "TextLightCurves",
    "write_lightcurves_fits",
    "read_lightcurves_fits",
    "write_lightcurves_text",
    "read_lightcurves_text",
    "write_star_texts",
    "read_star_text",
    "STAR_TEXT_COLUMNS",
    "write_run_info",
    "option_text",
]

FITS_FORMAT = "archi-lightcurves"
"""Value of the primary ``FORMAT`` keyword of a light-curve FITS file."""

FITS_FORMAT_VERSION = 1
"""Value of the primary ``FORMATV`` keyword (layout version)."""

FITS_COLUMNS: tuple[tuple[str, str, str | None], ...] = (
    ("MJD_TIME", "D", "d"),
    ("BJD_TIME", "D", "d"),
    ("ROLL_ANGLE", "D", "deg"),
    ("FLUX", "D", "electron"),
    ("FLUX_ERR", "D", "electron"),
    ("XC", "D", "pixel"),
    ("YC", "D", "pixel"),
    ("FLAG", "J", None),
)
"""Columns of every ``STAR_<n>`` table: (name, TFORM, TUNIT)."""

OPTION_KEYWORDS: tuple[tuple[str, str, str], ...] = (
    ("METHOD", "method", "mask method"),
    ("INITIAL", "initial_detect", "initial detection mode"),
    ("DETECT", "detect_mode", "star tracking mode"),
    ("GRID", "grid_bg", "background grid size (0 = none)"),
    ("CDPPTYPE", "CDPP_type", "noise metric"),
)
"""Primary-header keywords of the run options: (FITS keyword, ``lc.options`` key, comment)."""

RUN_INFO_FORMAT = "archi-run-info"
"""Value of the ``format`` key of a run-info file."""

TEXT_COLUMNS_PER_STAR = ("FLUX", "FLUX_ERR")
"""Columns written per star ``k`` in the multi-star text file, as ``FLUX_k;FLUX_ERR_k``."""

_STAR_EXTNAME = re.compile(r"\ASTAR_(\d+)\Z")
_CARD_VALUE_CHARS = 68  # longest string value of a single fixed-format card (quotes excluded)


# --------------------------------------------------------------------------------------------
# Small helpers
# --------------------------------------------------------------------------------------------

def option_text(value: Any, limit: int | None = None) -> str:
    """A run option as one line of printable ASCII.

    A callable becomes ``module:qualname`` (never its ``repr`` with a memory address), a path
    its string. Control characters and non-ASCII characters are replaced. With ``limit``, a
    longer text is cut to ``limit`` characters ending in ``...``.
    """
    if callable(value) and not isinstance(value, type):
        module = getattr(value, "__module__", None) or "?"
        name = getattr(value, "__qualname__", None) or getattr(value, "__name__", None)
        text = f"{module}:{name}" if name else type(value).__qualname__
    else:
        text = str(value)
    text = " ".join(text.split())  # one line
    text = "".join(c if " " <= c <= "~" else "?" for c in text)
    if limit is not None and len(text) > limit:
        text = text[:max(limit - 3, 0)] + "..."
    return text


def _header_value(value: Any) -> str | int | float | bool:
    """A value that fits one FITS card: numbers as they are, anything else as short text."""
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    if isinstance(value, (int, np.integer)):
        return int(value)
    if isinstance(value, (float, np.floating)) and math.isfinite(float(value)):
        return float(value)
    text = option_text(value)
    # a quote is written doubled inside a FITS string: count it twice. A callable's name is
    # at its end (module:qualname), so it keeps its end; other texts keep their start.
    keep_end = callable(value)
    if len(text) + text.count("'") > _CARD_VALUE_CHARS:
        while len(text) + text.count("'") > _CARD_VALUE_CHARS - 3:
            text = text[1:] if keep_end else text[:-1]
        text = "..." + text if keep_end else text + "..."
    return text


def _set_card(header: fits.Header, key: str, value: Any, comment: str) -> None:
    """Set ``key`` unless ``value`` is None or a non-finite float; cut the comment to fit."""
    if value is None:
        return
    if isinstance(value, (float, np.floating)) and not math.isfinite(float(value)):
        return
    value = _header_value(value)
    image = fits.Card(key, value).image.rstrip()
    room = 80 - max(len(image), 30) - 3
    header[key] = (value, comment[:max(room, 0)])


def _finite_or_none(value: float) -> float | None:
    value = float(value)
    return value if math.isfinite(value) else None


def _utc_now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S")


def _check_lc(lc: StarLightCurves) -> None:
    """Raise ``ValueError`` when the arrays of ``lc`` do not share one (n_stars, n_frames)."""
    shape = np.shape(lc.flux)
    if len(shape) != 2:
        raise ValueError(f"StarLightCurves.flux must be 2-D (n_stars, n_frames), not {shape}")
    n_stars, n_frames = shape
    for name in ("flux_err", "flag"):
        if np.shape(getattr(lc, name)) != shape:
            raise ValueError(f"StarLightCurves.{name} has shape {np.shape(getattr(lc, name))},"
                             f" expected {shape}")
    for name in ("x", "y", "measured"):
        if np.shape(getattr(lc.tracks, name)) != shape:
            raise ValueError(f"StarLightCurves.tracks.{name} has shape "
                             f"{np.shape(getattr(lc.tracks, name))}, expected {shape}")
    for name in ("mjd_time", "bjd_time", "roll_angle"):
        if np.shape(getattr(lc, name)) != (n_frames,):
            raise ValueError(f"StarLightCurves.{name} has shape {np.shape(getattr(lc, name))},"
                             f" expected ({n_frames},)")
    for name in ("factors", "npix", "cdpp"):
        if np.shape(getattr(lc, name)) != (n_stars,):
            raise ValueError(f"StarLightCurves.{name} has shape {np.shape(getattr(lc, name))},"
                             f" expected ({n_stars},)")
    if len(lc.methods) != n_stars or lc.stars.n_stars != n_stars:
        raise ValueError(f"StarLightCurves has {n_stars} light curves but "
                         f"{len(lc.methods)} methods and {lc.stars.n_stars} stars")


def _is_matched(stars: StarList, k: int) -> bool:
    return int(stars.catalogue_row[k]) >= 0


def _fraction(mask: NDArray[np.bool_]) -> float:
    return float(np.mean(mask)) if mask.size else 0.0


# --------------------------------------------------------------------------------------------
# FITS
# --------------------------------------------------------------------------------------------

def write_lightcurves_fits(lc: StarLightCurves, path: str | Path, *,
                           software_version: str = archi.__version__) -> Path:
    """Write the light curves of every star to one FITS file (layout: module docstring).

    FLAG is written with the :data:`~archi.stars.FLAG_NOT_MEASURED` bit set wherever
    ``lc.tracks.measured`` is false, so that the file alone tells which positions were
    predicted. Parent folders are created. Returns the path written.

    Raises ``ValueError`` when the arrays of ``lc`` have inconsistent shapes.
    """
    _check_lc(lc)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)

    primary = fits.PrimaryHDU()
    h = primary.header
    _set_card(h, "FORMAT", FITS_FORMAT, "file layout")
    _set_card(h, "FORMATV", FITS_FORMAT_VERSION, "file layout version")
    _set_card(h, "PROGRAM", "archi", "software that wrote this file")
    _set_card(h, "VERSION", str(software_version), "software version")
    _set_card(h, "DATE", _utc_now(), "UTC time the file was written")
    _set_card(h, "VISIT", lc.visit_key, "visit file key")
    _set_card(h, "NSTARS", lc.n_stars, "number of stars (one STAR_<n> table each)")
    for key, option, comment in OPTION_KEYWORDS:
        if option in lc.options:
            _set_card(h, key, lc.options[option], comment)

    hdus: list[fits.hdu.base.ExtensionHDU] = []
    stars, tracks = lc.stars, lc.tracks
    distance = stars.distance
    for k in range(lc.n_stars):
        flag = np.asarray(lc.flag[k], dtype=np.int32).copy()
        flag[~np.asarray(tracks.measured[k], dtype=bool)] |= FLAG_NOT_MEASURED
        data = {
            "MJD_TIME": lc.mjd_time, "BJD_TIME": lc.bjd_time, "ROLL_ANGLE": lc.roll_angle,
            "FLUX": lc.flux[k], "FLUX_ERR": lc.flux_err[k],
            "XC": tracks.x[k], "YC": tracks.y[k], "FLAG": flag,
        }
        cols = [fits.Column(name=name, format=tform, unit=unit,
                            array=np.asarray(data[name],
                                             dtype=np.int32 if tform == "J" else np.float64))
                for name, tform, unit in FITS_COLUMNS]
        hdu = fits.BinTableHDU.from_columns(cols, name=f"STAR_{k}")
        sh = hdu.header
        _set_card(sh, "STAR", k, "star number (0 = target)")
        _set_card(sh, "X0", float(stars.x0[k]), "[pixel] x in the first frame")
        _set_card(sh, "Y0", float(stars.y0[k]), "[pixel] y in the first frame")
        _set_card(sh, "DIST", float(distance[k]), "[pixel] distance from the target")
        _set_card(sh, "MASKTYPE", str(lc.methods[k]), "mask method: circle or shape")
        _set_card(sh, "MASKSIZE", float(lc.factors[k]), "mask factor: radius [pixel] or layers")
        _set_card(sh, "NPIX", float(lc.npix[k]), "[pixel] mean mask area")
        _set_card(sh, "CDPP", float(lc.cdpp[k]), "[ppm] noise metric of the light curve")
        _set_card(sh, "CATROW", int(stars.catalogue_row[k]), "DRP catalogue row, -1 = none")
        _set_card(sh, "BRIGHT", float(stars.brightness[k]), "[electron] brightness estimate")
        if _is_matched(stars, k):
            if str(stars.source_id[k]):
                _set_card(sh, "CATID", str(stars.source_id[k]), "catalogue (Gaia) ID")
            _set_card(sh, "RA", float(stars.ra[k]), "[deg] catalogue right ascension")
            _set_card(sh, "DEC", float(stars.dec[k]), "[deg] catalogue declination")
            _set_card(sh, "MAG", float(stars.mag[k]), "[mag] catalogue Gaia G magnitude")
        hdus.append(hdu)

    hdul = fits.HDUList([primary, *hdus])
    with atomic_path(path) as tmp:
        hdul.writeto(tmp, output_verify="exception")
    return path


def read_lightcurves_fits(path: str | Path) -> StarLightCurves:
    """Read a file written by :func:`write_lightcurves_fits` back into a StarLightCurves.

    ``options`` holds the run options found in the primary header under their
    ``lc.options`` names (``method``, ``initial_detect``, ``detect_mode``, ``grid_bg``,
    ``CDPP_type``), as written (a callable metric comes back as its ``module:qualname``
    text). ``tracks.measured`` is taken from the FLAG bit
    :data:`~archi.stars.FLAG_NOT_MEASURED`. Header values left out (NaN) come back as NaN.

    Raises :class:`~archi.errors.ProductNotFoundError` when the file does not exist and
    :class:`~archi.errors.CorruptProductError` (naming the file) when it is not a readable
    FITS file in this layout.
    """
    path = Path(path)
    if not path.is_file():
        raise ProductNotFoundError(f"{path}: light-curve file does not exist")
    try:
        hdul = fits.open(path, memmap=False, lazy_load_hdus=False)
    except (OSError, ValueError, TypeError, IndexError) as exc:
        raise CorruptProductError(path, f"not a readable FITS file ({one_line(exc)})") from None
    with hdul:
        return _read_lightcurves_hdul(hdul, path)


def _read_lightcurves_hdul(hdul: fits.HDUList, path: Path) -> StarLightCurves:
    def bad(problem: str) -> CorruptProductError:
        return CorruptProductError(path, f"not an archi light-curve file: {problem}")

    primary = hdul[0].header
    if "NSTARS" not in primary:
        raise bad("primary header has no NSTARS keyword")
    fmt = primary.get("FORMAT")
    if fmt is not None and fmt != FITS_FORMAT:
        raise bad(f"FORMAT is {fmt!r}, expected {FITS_FORMAT!r}")
    try:
        n_stars = int(primary["NSTARS"])
    except (TypeError, ValueError):
        raise bad(f"NSTARS is {primary['NSTARS']!r}, not an integer") from None
    if n_stars < 1:
        raise bad(f"NSTARS is {n_stars}")

    tables = {}
    for hdu in hdul[1:]:
        m = _STAR_EXTNAME.match(hdu.name or "")
        if m:
            if not isinstance(hdu, fits.BinTableHDU):
                raise bad(f"extension {hdu.name} is not a binary table")
            tables[int(m.group(1))] = hdu
    missing = [f"STAR_{k}" for k in range(n_stars) if k not in tables]
    if missing:
        shown = ", ".join(missing[:5]) + (", ..." if len(missing) > 5 else "")
        raise bad(f"NSTARS = {n_stars} but extension(s) {shown} are missing")
    extra = sorted(k for k in tables if k >= n_stars)
    if extra:
        raise bad(f"NSTARS = {n_stars} but there is an extension STAR_{extra[0]}")

    names = [name for name, _, _ in FITS_COLUMNS]
    columns: dict[str, list[NDArray]] = {name: [] for name in names}
    cards: list[fits.Header] = []
    n_frames = None
    for k in range(n_stars):
        hdu = tables[k]
        present = {c.upper() for c in hdu.columns.names}
        lacking = [n for n in names if n not in present]
        if lacking:
            raise bad(f"STAR_{k} lacks column(s) {', '.join(lacking)}")
        if n_frames is None:
            n_frames = len(hdu.data)
        elif len(hdu.data) != n_frames:
            raise bad(f"STAR_{k} has {len(hdu.data)} rows, STAR_0 has {n_frames}")
        for name in names:
            dtype = np.int32 if name == "FLAG" else np.float64
            columns[name].append(np.asarray(hdu.data[name], dtype=dtype))
        for key in ("X0", "Y0", "MASKTYPE", "MASKSIZE"):
            if key not in hdu.header:
                raise bad(f"STAR_{k} header has no {key} keyword")
        cards.append(hdu.header)
    for name in ("MJD_TIME", "BJD_TIME", "ROLL_ANGLE"):
        for k in range(1, n_stars):
            if not np.array_equal(columns[name][k], columns[name][0], equal_nan=True):
                raise bad(f"STAR_{k} {name} differs from STAR_0")

    def header_float(header: fits.Header, key: str) -> float:
        value = header.get(key)
        try:
            return float(value) if value is not None else math.nan
        except (TypeError, ValueError):
            raise bad(f"{header.get('EXTNAME', '?')} {key} = {value!r} is not a number") from None

    stars = StarList(
        x0=np.array([header_float(c, "X0") for c in cards]),
        y0=np.array([header_float(c, "Y0") for c in cards]),
        catalogue_row=np.array([int(c.get("CATROW", -1)) for c in cards], dtype=np.int64),
        source_id=np.array([str(c.get("CATID", "")) for c in cards], dtype=np.str_),
        ra=np.array([header_float(c, "RA") for c in cards]),
        dec=np.array([header_float(c, "DEC") for c in cards]),
        mag=np.array([header_float(c, "MAG") for c in cards]),
        brightness=np.array([header_float(c, "BRIGHT") for c in cards]),
    )
    flag = np.vstack(columns["FLAG"]).astype(np.int32)
    tracks = Tracks(x=np.vstack(columns["XC"]), y=np.vstack(columns["YC"]),
                    measured=(flag & FLAG_NOT_MEASURED) == 0)
    options = {option: primary[key] for key, option, _ in OPTION_KEYWORDS if key in primary}
    return StarLightCurves(
        visit_key=str(primary.get("VISIT", "")),
        mjd_time=columns["MJD_TIME"][0], bjd_time=columns["BJD_TIME"][0],
        roll_angle=columns["ROLL_ANGLE"][0], stars=stars, tracks=tracks,
        flux=np.vstack(columns["FLUX"]), flux_err=np.vstack(columns["FLUX_ERR"]), flag=flag,
        methods=tuple(str(c["MASKTYPE"]) for c in cards),
        factors=np.array([header_float(c, "MASKSIZE") for c in cards]),
        npix=np.array([header_float(c, "NPIX") for c in cards]),
        cdpp=np.array([header_float(c, "CDPP") for c in cards]),
        options=options,
    )


# --------------------------------------------------------------------------------------------
# Text
# --------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class TextStarInfo:
    """One star line of the header of a multi-star text file."""

    number: int
    method: str
    factor: float
    cdpp: float  # [ppm]
    out_of_bounds: float  # fraction of frames with the FLAG_OUT_OF_BOUNDS bit


@dataclass(frozen=True)
class TextLightCurves:
    """A multi-star text file read back by :func:`read_lightcurves_text`."""

    visit_key: str
    software_version: str
    options: dict[str, str]  # lc.options names -> text as written
    stars: list[TextStarInfo]
    columns: list[str]  # the header line, split
    mjd_time: NDArray[np.float64]  # [d]
    roll_angle: NDArray[np.float64]  # [deg]
    flux: NDArray[np.float64]  # (n_stars, n_frames) [electrons]
    flux_err: NDArray[np.float64]  # (n_stars, n_frames) [electrons]
    comments: list[str] = field(default_factory=list)  # header lines without "# "


_TEXT_OPTION_LABELS: tuple[tuple[str, str], ...] = (
    ("Method", "method"),
    ("Detect mode", "detect_mode"),
    ("Initial detection", "initial_detect"),
    ("Background grid", "grid_bg"),
    ("CDPP type", "CDPP_type"),
)
_STAR_LINE = re.compile(
    r"\A\s*Star: (?P<number>\d+); Method: (?P<method>[^;]*); Factor: (?P<factor>[^;]+); "
    r"CDPP: (?P<cdpp>\S+) ppm; Out of bounds: (?P<oob>\S+)\s*\Z")


def _fmt(value: float) -> str:
    """Shortest text that reads back as exactly the same float64."""
    return repr(float(value))


def _write_text(path: Path, comments: list[str], header: list[str],
                rows: NDArray[np.float64] | list[list[str]]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        with open(tmp, "w", encoding="ascii", newline="\n") as fh:
            for line in comments:
                fh.write(f"# {line}\n")
            fh.write(";".join(header) + "\n")
            for row in rows:
                fh.write(";".join(row) + "\n")


def write_lightcurves_text(lc: StarLightCurves, path: str | Path) -> Path:
    """Write all light curves to one ``;``-separated text file (archi's ``export_text``).

    Layout::

        # archi light curves, archi <version>
        # Visit - <visit key>
        # Method - <method>
        # Detect mode - <detect_mode>
        # Initial detection - <initial_detect>
        # Background grid - <grid_bg>
        # CDPP type - <CDPP_type>
        # Units - MJD_TIME [d, TT]; ROLL_ANGLE [deg]; FLUX_k, FLUX_ERR_k [electrons]
        # Stars information:
        #   Star: 0; Method: circle; Factor: 5.5; CDPP: 123.4 ppm; Out of bounds: 0.025
        #   ...
        MJD_TIME;ROLL_ANGLE;FLUX_0;FLUX_ERR_0;FLUX_1;FLUX_ERR_1;...
        <one row per frame>

    Option lines are written only for options present in ``lc.options``. Numbers are written
    with full float64 precision (shortest exact text, ``nan`` for NaN); "Out of bounds" is
    the fraction of frames whose FLAG has the out-of-bounds bit. The star table comes from
    ``lc`` itself (archi re-read it from its factors file: F13). Returns the path written.
    """
    _check_lc(lc)
    path = Path(path)
    comments = [f"archi light curves, archi {archi.__version__}", f"Visit - {lc.visit_key}"]
    for label, option in _TEXT_OPTION_LABELS:
        if option in lc.options:
            comments.append(f"{label} - {option_text(lc.options[option])}")
    comments.append("Units - MJD_TIME [d, TT]; ROLL_ANGLE [deg]; "
                    "FLUX_k, FLUX_ERR_k [electrons]")
    comments.append("Stars information:")
    for k in range(lc.n_stars):
        oob = _fraction((np.asarray(lc.flag[k]) & FLAG_OUT_OF_BOUNDS) != 0)
        comments.append(f"\tStar: {k}; Method: {option_text(lc.methods[k])}; "
                        f"Factor: {_fmt(lc.factors[k])}; CDPP: {_fmt(lc.cdpp[k])} ppm; "
                        f"Out of bounds: {_fmt(oob)}")
    header = ["MJD_TIME", "ROLL_ANGLE"]
    for k in range(lc.n_stars):
        header += [f"{name}_{k}" for name in TEXT_COLUMNS_PER_STAR]
    table = np.empty((lc.n_frames, 2 + 2 * lc.n_stars), dtype=np.float64)
    table[:, 0] = lc.mjd_time
    table[:, 1] = lc.roll_angle
    table[:, 2::2] = np.asarray(lc.flux, dtype=np.float64).T
    table[:, 3::2] = np.asarray(lc.flux_err, dtype=np.float64).T
    rows = ([_fmt(v) for v in row] for row in table.tolist())
    _write_text(path, comments, header, rows)
    return path


def _read_semicolon_table(path: Path) -> tuple[list[str], list[str], NDArray[np.float64]]:
    """(comment lines without ``# ``, header names, float table) of a ``;`` text file."""
    if not path.is_file():
        raise ProductNotFoundError(f"{path}: text file does not exist")
    comments: list[str] = []
    header: list[str] | None = None
    rows: list[list[float]] = []
    try:
        with open(path, encoding="ascii") as fh:
            for lineno, line in enumerate(fh, start=1):
                line = line.rstrip("\n")
                if header is None:
                    if line.startswith("#"):
                        comments.append(line[2:] if line.startswith("# ") else line[1:])
                        continue
                    header = line.split(";")
                    continue
                if not line.strip():
                    continue
                fields = line.split(";")
                if len(fields) != len(header):
                    raise CorruptProductError(path, f"line {lineno} has {len(fields)} fields, "
                                              f"the header has {len(header)}")
                try:
                    rows.append([float(f) for f in fields])
                except ValueError:
                    raise CorruptProductError(path, f"line {lineno} has a field that is not a "
                                              "number") from None
    except UnicodeDecodeError:
        raise CorruptProductError(path, "not an ASCII text file") from None
    if header is None:
        raise CorruptProductError(path, "no header line (column names) after the comments")
    table = np.array(rows, dtype=np.float64).reshape(len(rows), len(header))
    return comments, header, table


def read_lightcurves_text(path: str | Path) -> TextLightCurves:
    """Read a file written by :func:`write_lightcurves_text`.

    Raises :class:`~archi.errors.CorruptProductError` (naming the file) when the file is not
    in that layout.
    """
    path = Path(path)
    comments, header, table = _read_semicolon_table(path)
    if header[:2] != ["MJD_TIME", "ROLL_ANGLE"] or len(header) % 2:
        raise CorruptProductError(path, "header line must be MJD_TIME;ROLL_ANGLE;FLUX_0;"
                                  f"FLUX_ERR_0;..., not {';'.join(header)[:80]}")
    n_stars = (len(header) - 2) // 2
    expected = ["MJD_TIME", "ROLL_ANGLE"]
    for k in range(n_stars):
        expected += [f"{name}_{k}" for name in TEXT_COLUMNS_PER_STAR]
    if header != expected:
        raise CorruptProductError(path, "star columns must be FLUX_k;FLUX_ERR_k for "
                                  f"k = 0..{n_stars - 1} in order")
    visit_key = version = ""
    options: dict[str, str] = {}
    labels = dict(_TEXT_OPTION_LABELS)
    stars: list[TextStarInfo] = []
    for line in comments:
        m = _STAR_LINE.match(line)
        if m:
            stars.append(TextStarInfo(int(m["number"]), m["method"], float(m["factor"]),
                                      float(m["cdpp"]), float(m["oob"])))
            continue
        if line.startswith("archi light curves, archi "):
            version = line.rsplit(" ", 1)[-1]
            continue
        label, sep, value = line.partition(" - ")
        if sep and label == "Visit":
            visit_key = value
        elif sep and label in labels:
            options[labels[label]] = value
    if [s.number for s in stars] != list(range(n_stars)):
        raise CorruptProductError(path, f"header lists stars {[s.number for s in stars]}, "
                                  f"the columns hold {n_stars}")
    return TextLightCurves(
        visit_key=visit_key, software_version=version, options=options, stars=stars,
        columns=header, mjd_time=table[:, 0].copy(), roll_angle=table[:, 1].copy(),
        flux=table[:, 2::2].T.copy(), flux_err=table[:, 3::2].T.copy(), comments=comments)


STAR_TEXT_COLUMNS = ("MJD_TIME", "BJD_TIME", "ROLL_ANGLE", "FLUX", "FLUX_ERR", "XC", "YC",
                     "FLAG")
"""Columns of a per-star text file (same names and units as the FITS tables)."""


def write_star_texts(lc: StarLightCurves, folder: str | Path) -> list[Path]:
    """Write one ``;``-separated text file per star, ``<folder>/star_<n>.txt``.

    Each file has ``# key: value`` comment lines (visit, star, x0, y0 [pixel], distance
    [pixel], method, factor, npix [pixel], cdpp [ppm], catalogue id/ra/dec/mag when matched)
    then the header line ``MJD_TIME;BJD_TIME;ROLL_ANGLE;FLUX;FLUX_ERR;XC;YC;FLAG`` and one
    row per frame (units as in the FITS file). Returns the paths, in star order.
    """
    _check_lc(lc)
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    distance = lc.stars.distance
    for k in range(lc.n_stars):
        info: dict[str, Any] = {
            "visit": lc.visit_key, "star": k, "x0": _fmt(lc.stars.x0[k]),
            "y0": _fmt(lc.stars.y0[k]), "distance": _fmt(distance[k]),
            "method": lc.methods[k], "factor": _fmt(lc.factors[k]),
            "npix": _fmt(lc.npix[k]), "cdpp": _fmt(lc.cdpp[k]),
        }
        if _is_matched(lc.stars, k):
            info.update(catalogue_id=str(lc.stars.source_id[k]), ra=_fmt(lc.stars.ra[k]),
                        dec=_fmt(lc.stars.dec[k]), mag=_fmt(lc.stars.mag[k]))
        comments = [f"archi light curve of one star, archi {archi.__version__}"]
        comments += [f"{key}: {option_text(value)}" for key, value in info.items()]
        comments.append("units: MJD_TIME, BJD_TIME [d]; ROLL_ANGLE [deg]; FLUX, FLUX_ERR "
                        "[electrons]; XC, YC [pixel]; FLAG bits (0 = good)")
        flag = np.asarray(lc.flag[k], dtype=np.int64).copy()
        flag[~np.asarray(lc.tracks.measured[k], dtype=bool)] |= FLAG_NOT_MEASURED
        cols = [lc.mjd_time, lc.bjd_time, lc.roll_angle, lc.flux[k], lc.flux_err[k],
                lc.tracks.x[k], lc.tracks.y[k]]
        float_rows = np.column_stack([np.asarray(c, dtype=np.float64) for c in cols]).tolist()
        rows = ([*(_fmt(v) for v in row), str(f)] for row, f in zip(float_rows, flag.tolist()))
        path = folder / f"star_{k}.txt"
        _write_text(path, comments, list(STAR_TEXT_COLUMNS), rows)
        paths.append(path)
    return paths


def read_star_text(path: str | Path) -> tuple[dict[str, str], dict[str, NDArray]]:
    """Read a per-star file of :func:`write_star_texts`: (header key -> text, columns).

    FLAG comes back as int32, every other column as float64.
    """
    path = Path(path)
    comments, header, table = _read_semicolon_table(path)
    if header != list(STAR_TEXT_COLUMNS):
        raise CorruptProductError(path, f"header line must be {';'.join(STAR_TEXT_COLUMNS)}")
    info = {}
    for line in comments:
        key, sep, value = line.partition(": ")
        if sep and " " not in key:
            info[key] = value
    columns: dict[str, NDArray] = {name: table[:, i].copy() for i, name in enumerate(header)}
    columns["FLAG"] = columns["FLAG"].astype(np.int32)
    return info, columns


# --------------------------------------------------------------------------------------------
# Run info
# --------------------------------------------------------------------------------------------

def _plain(value: Any) -> Any:
    """``value`` as plain YAML types: numbers, strings, lists, dicts (callables as names)."""
    if value is None or isinstance(value, (bool, str)):
        return value
    if isinstance(value, (np.bool_,)):
        return bool(value)
    if isinstance(value, (int, np.integer)):
        return int(value)
    if isinstance(value, (float, np.floating)):
        return float(value)
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, np.ndarray):
        return [_plain(v) for v in value.tolist()]
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        items = sorted(value, key=str) if isinstance(value, (set, frozenset)) else value
        return [_plain(v) for v in items]
    if callable(value):
        return option_text(value)
    return str(value)


def _products(visit_folder: Path) -> tuple[dict[str, Any], str | None]:
    """Products of the visit found in ``visit_folder`` (relative paths where possible)."""
    from archi.io.find import find_visit_products

    try:
        found = find_visit_products(visit_folder)
    except ProductNotFoundError as exc:
        return {}, one_line(exc)

    def rel(p: Path) -> str:
        try:
            return str(Path(p).relative_to(visit_folder))
        except ValueError:
            return str(p)

    return {
        "layout": found.layout,
        "subarray": rel(found.subarray),
        "lightcurves": {ap: rel(p) for ap, p in sorted(found.lightcurves.items())},
        "star_catalogue": rel(found.star_catalogue) if found.star_catalogue else None,
    }, None


def write_run_info(path: str | Path, *, visit_folder: str | Path, options: dict,
                   lc: StarLightCurves, extra: dict | None = None) -> Path:
    """Write a YAML description of one photometry run (archi's ``photo_info.txt``, extended).

    Layout (keys in this order)::

        format: archi-run-info
        format_version: 1
        software: {name: archi, version: 0.1.0}
        created: 2024-05-01T12:00:00Z         # UTC
        inputs:
          visit_folder: /abs/path/of/the/visit
          visit: CH_PR..._V0300                 # lc.visit_key
          n_frames: 1234
          products:                              # found in visit_folder, paths relative to it
            layout: drp
            subarray: ..._SCI_COR_SubArray_V0300.fits
            lightcurves: {DEFAULT: ..., OPTIMAL: ...}
            star_catalogue: ... or null
          products_error: <why no products were found>   # only when none were found
        options: {...}                           # every option; callables as module:qualname
        stars:
          - number: 0
            catalogue: {id: '...', row: 0, ra: .., dec: .., mag: ..}   # null when unmatched
            x0: ..  y0: ..  distance: ..          # [pixel]
            method: circle
            factor: 5.5                           # radius [pixel] or layers
            cdpp: 123.4                           # [ppm]; null when undefined
            npix: 95.0                            # [pixel] mean mask area
            flagged_fraction: 0.05                # frames with FLAG != 0 (or predicted position)
            out_of_bounds_fraction: 0.0           # frames with the out-of-bounds bit
        extra: {...}                             # only when given

    NaN numbers are written as null. Returns the path written.
    """
    _check_lc(lc)
    path = Path(path)
    folder = Path(visit_folder).absolute()
    products, products_error = _products(folder)
    inputs: dict[str, Any] = {"visit_folder": str(folder), "visit": lc.visit_key,
                              "n_frames": lc.n_frames, "products": products}
    if products_error:
        inputs["products_error"] = products_error

    stars = []
    distance = lc.stars.distance
    for k in range(lc.n_stars):
        catalogue = None
        if _is_matched(lc.stars, k):
            catalogue = {"id": str(lc.stars.source_id[k]) or None,
                         "row": int(lc.stars.catalogue_row[k]),
                         "ra": _finite_or_none(lc.stars.ra[k]),
                         "dec": _finite_or_none(lc.stars.dec[k]),
                         "mag": _finite_or_none(lc.stars.mag[k])}
        flag = np.asarray(lc.flag[k])
        flagged = (flag != 0) | ~np.asarray(lc.tracks.measured[k], dtype=bool)
        stars.append({
            "number": k,
            "catalogue": catalogue,
            "x0": _finite_or_none(lc.stars.x0[k]),
            "y0": _finite_or_none(lc.stars.y0[k]),
            "distance": _finite_or_none(distance[k]),
            "method": str(lc.methods[k]),
            "factor": _finite_or_none(lc.factors[k]),
            "cdpp": _finite_or_none(lc.cdpp[k]),
            "npix": _finite_or_none(lc.npix[k]),
            "flagged_fraction": _fraction(flagged),
            "out_of_bounds_fraction": _fraction((flag & FLAG_OUT_OF_BOUNDS) != 0),
        })

    doc: dict[str, Any] = {
        "format": RUN_INFO_FORMAT,
        "format_version": 1,
        "software": {"name": "archi", "version": archi.__version__},
        "created": _utc_now() + "Z",
        "inputs": inputs,
        "options": _plain(options),
        "stars": stars,
    }
    if extra:
        doc["extra"] = _plain(extra)
    text = yaml.safe_dump(doc, sort_keys=False, default_flow_style=False, allow_unicode=False,
                          width=100)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        with open(tmp, "w", encoding="utf-8", newline="\n") as fh:
            fh.write(text)
    return path
