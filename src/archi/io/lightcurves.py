"""Home of ``lightcurves.fits``, the light curves of every star of a visit in one FITS file.

The file is written to a temporary name beside its destination and renamed when complete
(:func:`archi.io.atomic.atomic_path`), so a killed job never leaves a file that looks
finished.

Layout (:func:`write_lightcurves_fits`, read back by :func:`read_lightcurves_fits`)
-------------------------------------------------------------------------------------
* HDU 0, primary, no data. Keywords: ``FORMAT`` (= ``archi-lightcurves``), ``FORMATV``
  (layout version), ``PROGRAM`` (= ``archi``), ``VERSION`` (software version), ``DATE``
  (UTC time of writing), ``VISIT`` (visit file key), ``NSTARS``, and the run options
  ``METHOD`` (``method``), ``INITIAL`` (``initial_detect``), ``DETECT`` (``detect_mode``),
  ``GRID`` (``grid_bg``), ``CDPPTYPE`` (``CDPP_type``), ``DECONTAM`` (``decontaminate``)
  when present in ``lc.options``; ``FLAGB<i>`` (i = 0, 1, ...): the name of FLAG bit
  2**i, its meaning in the comment.
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
  FLUX        D      electron  the star's own light in its mask (decontaminate:
                               the mask's sum minus the neighbours' modelled light;
                               without, the mask's sum)
  FLUX_ERR    D      electron  its uncertainty (photon noise of all the mask's light)
  FLUX_RAW    D      electron  the mask's sum
  CONTA       D      electron  the neighbours' modelled light in the mask (NaN
                               without a field model)
  XC, YC      D      pixel     aperture centre (subarray pixels, ``archi.__doc__``)
  FLAG        J                FLAG_* bits of :mod:`archi.stars` (README "FLAG
                               bits"; primary keywords FLAGB<i> name bit 2**i),
                               0 = nothing to report
  EVENT       J                the DRP's EVENT code of the frame (pycheops' cuts)
  STATUS      J                the DRP's STATUS of the frame (0 = good)
  =========== ====== ========= ===========================================

  Header keywords: ``STAR`` (number), ``X0``, ``Y0`` [pixel] (first-frame position),
  ``DIST`` [pixel] (distance from the target), ``MASKTYPE`` (``circle``/``shape``/``psf``),
  ``MASKSIZE`` (the mask factor: radius [pixel] or layers; none for ``psf``), ``NPIX``
  [pixel] (mean mask area; none for ``psf``), ``CDPP`` [ppm] (noise metric of FLUX), ``CONTAM`` (median CONTA / median FLUX
  on good frames, with a field model), ``CATROW`` (row in the DRP star catalogue, -1 if
  unmatched), ``BRIGHT`` [electron] (relative brightness estimate), and for a catalogue
  match ``CATID`` (catalogue/Gaia ID), ``RA``, ``DEC`` [deg], ``MAG`` [Gaia G]. A value that
  is NaN (no catalogue match, undefined metric) is left out: FITS headers cannot hold NaN.

A ``psf`` star (``method: psf``, :mod:`archi.psfphot`) has no mask: FLUX is its flux fitted
with the field model's PSF in each frame (all stars at once), FLUX_ERR the fit's error,
CONTA the neighbours' fitted light under its PSF (what a fit of the star alone would add),
FLUX_RAW = FLUX + CONTA; frames where its PSF falls mostly off the field are NaN and
flagged out of bounds.

Times and fluxes are float64 (archi stored float32 times, ~6 min resolution: bug B17).
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from astropy.io import fits
from numpy.typing import NDArray

import archi
from archi.errors import CorruptProductError, ProductNotFoundError, one_line
from archi.io.atomic import atomic_path
from archi.io.fitswrite import set_card
from archi.io.lightcurve_values import check_lightcurves, is_matched, option_text, utc_now
from archi.stars import FLAG_NAMES, FLAG_NOT_MEASURED, StarLightCurves, StarList, Tracks

__all__ = ["FITS_FORMAT", "FITS_FORMAT_VERSION", "FITS_COLUMNS", "OPTION_KEYWORDS",
           "write_lightcurves_fits", "read_lightcurves_fits"]

FITS_FORMAT = "archi-lightcurves"
"""Value of the primary ``FORMAT`` keyword of a light-curve FITS file."""

FITS_FORMAT_VERSION = 3
"""Value of the primary ``FORMATV`` keyword (layout version)."""

FITS_COLUMNS: tuple[tuple[str, str, str | None], ...] = (
    ("MJD_TIME", "D", "d"), ("BJD_TIME", "D", "d"), ("ROLL_ANGLE", "D", "deg"),
    ("FLUX", "D", "electron"), ("FLUX_ERR", "D", "electron"), ("FLUX_RAW", "D", "electron"),
    ("CONTA", "D", "electron"), ("XC", "D", "pixel"), ("YC", "D", "pixel"), ("FLAG", "J", None),
    ("EVENT", "J", None), ("STATUS", "J", None))
"""Columns of every ``STAR_<n>`` table: (name, TFORM, TUNIT)."""

OPTION_KEYWORDS: tuple[tuple[str, str, str], ...] = (
    ("METHOD", "method", "mask method"),
    ("INITIAL", "initial_detect", "initial detection mode"),
    ("DETECT", "detect_mode", "star tracking mode"),
    ("GRID", "grid_bg", "background grid size (0 = none)"),
    ("CDPPTYPE", "CDPP_type", "noise metric"), ("DECONTAM", "decontaminate", "FLUX is own light"),
)
"""Primary-header keywords of the run options: (FITS keyword, ``lc.options`` key, comment)."""

_LATER_COLUMNS = ("FLUX_RAW", "CONTA")  # new in layout 2, optional when reading
_DRP_COLUMNS = ("EVENT", "STATUS")  # new in layout 3, optional when reading

FLAG_COMMENTS = {
    "out_of_bounds": "mask touches pixels outside the field",
    "bad_frame": "frame lost/empty/half-read: FLUX NaN",
    "not_measured": "position predicted, not measured",
    "flux_outlier": "frame's total flux an outlier",
    "cosmic": "cosmic ray patched in the mask",
    "saa": "DRP EVENT: South Atlantic Anomaly",
    "temperature": "DRP EVENT: temperature",
    "earth": "DRP EVENT: Earth occultation/stray light",
    "moon": "DRP EVENT: Moon", "sun": "DRP EVENT: Sun"}
"""The comment of each primary ``FLAGB<i>`` keyword (FLAG bit names: archi.stars)."""

_STAR_EXTNAME = re.compile(r"\ASTAR_(\d+)\Z")
_CARD_VALUE_CHARS = 68  # longest string value of a single fixed-format card (quotes excluded)


def _header_value(value: Any) -> str | int | float | bool:
    """A value that fits one FITS card: numbers as they are, anything else as short text."""
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    if isinstance(value, (int, np.integer)):
        return int(value)
    if isinstance(value, (float, np.floating)):
        return float(value)  # a non-finite one is left out by set_card
    text = option_text(value)
    # a quote is written doubled inside a FITS string: count it twice. A callable's name is
    # at its end (module:qualname), so it keeps its end; other texts keep their start.
    keep_end = callable(value)
    if len(text) + text.count("'") > _CARD_VALUE_CHARS:
        while len(text) + text.count("'") > _CARD_VALUE_CHARS - 3:
            text = text[1:] if keep_end else text[:-1]
        text = "..." + text if keep_end else text + "..."
    return text


def _card(header: fits.Header, key: str, value: Any, comment: str) -> None:
    """Set ``key`` to ``value`` made to fit one card; None and NaN are left out."""
    set_card(header, key, None if value is None else _header_value(value), comment)


# --------------------------------------------------------------------------------------------
# Writing
# --------------------------------------------------------------------------------------------

def write_lightcurves_fits(lc: StarLightCurves, path: str | Path, *,
                           software_version: str = archi.__version__) -> Path:
    """Write the light curves of every star to one FITS file (layout: module docstring).

    FLAG is written with the :data:`~archi.stars.FLAG_NOT_MEASURED` bit set wherever
    ``lc.tracks.measured`` is false, so that the file alone tells which positions were
    predicted. Parent folders are created. Returns the path written.

    Raises ``ValueError`` when the arrays of ``lc`` have inconsistent shapes.
    """
    check_lightcurves(lc)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    hdul = fits.HDUList([_primary_hdu(lc, software_version),
                         *(_star_hdu(lc, k) for k in range(lc.n_stars))])
    with atomic_path(path) as tmp:
        hdul.writeto(tmp, output_verify="exception")
    return path


def _primary_hdu(lc: StarLightCurves, software_version: str) -> fits.PrimaryHDU:
    primary = fits.PrimaryHDU()
    h = primary.header
    _card(h, "FORMAT", FITS_FORMAT, "file layout")
    _card(h, "FORMATV", FITS_FORMAT_VERSION, "file layout version")
    _card(h, "PROGRAM", "archi", "software that wrote this file")
    _card(h, "VERSION", str(software_version), "software version")
    _card(h, "DATE", utc_now(), "UTC time the file was written")
    _card(h, "VISIT", lc.visit_key, "visit file key")
    _card(h, "NSTARS", lc.n_stars, "number of stars (one STAR_<n> table each)")
    for key, option, comment in OPTION_KEYWORDS:
        if option in lc.options:
            _card(h, key, lc.options[option], comment)
    for bit, name in FLAG_NAMES.items():
        _card(h, f"FLAGB{bit.bit_length() - 1}", name, FLAG_COMMENTS[name])
    return primary


def _star_hdu(lc: StarLightCurves, k: int) -> fits.BinTableHDU:
    """The ``STAR_<k>`` table: one row per frame, the star's description in the header."""
    stars, tracks = lc.stars, lc.tracks
    flag = np.asarray(lc.flag[k], dtype=np.int32).copy()
    flag[~np.asarray(tracks.measured[k], dtype=bool)] |= FLAG_NOT_MEASURED
    data = {
        "MJD_TIME": lc.mjd_time, "BJD_TIME": lc.bjd_time, "ROLL_ANGLE": lc.roll_angle,
        "FLUX": lc.flux[k], "FLUX_ERR": lc.flux_err[k],
        "FLUX_RAW": lc.flux[k] if lc.flux_raw is None else lc.flux_raw[k],
        "CONTA": np.full(lc.n_frames, np.nan) if lc.conta is None else lc.conta[k],
        "XC": tracks.x[k], "YC": tracks.y[k], "FLAG": flag,
        "EVENT": np.zeros(lc.n_frames) if lc.event is None else lc.event,
        "STATUS": np.zeros(lc.n_frames) if lc.status is None else lc.status,
    }
    cols = [fits.Column(name=name, format=tform, unit=unit,
                        array=np.asarray(data[name],
                                         dtype=np.int32 if tform == "J" else np.float64))
            for name, tform, unit in FITS_COLUMNS]
    hdu = fits.BinTableHDU.from_columns(cols, name=f"STAR_{k}")
    sh = hdu.header
    _card(sh, "STAR", k, "star number (0 = target)")
    _card(sh, "X0", float(stars.x0[k]), "[pixel] x in the first frame")
    _card(sh, "Y0", float(stars.y0[k]), "[pixel] y in the first frame")
    _card(sh, "DIST", float(stars.distance[k]), "[pixel] distance from the target")
    _card(sh, "MASKTYPE", str(lc.methods[k]), "mask method: circle, shape or psf (none)")
    _card(sh, "MASKSIZE", float(lc.factors[k]), "mask factor: radius [pixel] or layers")
    _card(sh, "NPIX", float(lc.npix[k]), "[pixel] mean mask area")
    _card(sh, "CDPP", float(lc.cdpp[k]), "[ppm] noise metric of the light curve")
    _card(sh, "CONTAM", float(lc.contamination[k]), "median CONTA / median FLUX")
    _card(sh, "CATROW", int(stars.catalogue_row[k]), "DRP catalogue row, -1 = none")
    _card(sh, "BRIGHT", float(stars.brightness[k]), "[electron] brightness estimate")
    if is_matched(stars, k):
        if str(stars.source_id[k]):
            _card(sh, "CATID", str(stars.source_id[k]), "catalogue (Gaia) ID")
        _card(sh, "RA", float(stars.ra[k]), "[deg] catalogue right ascension")
        _card(sh, "DEC", float(stars.dec[k]), "[deg] catalogue declination")
        _card(sh, "MAG", float(stars.mag[k]), "[mag] catalogue Gaia G magnitude")
    return hdu


# --------------------------------------------------------------------------------------------
# Reading
# --------------------------------------------------------------------------------------------

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
        bad = _complaint(path)
        primary = hdul[0].header
        n_stars = _n_stars(primary, bad)
        tables = _star_tables(hdul, n_stars, bad)
        columns, headers = _star_columns(tables, bad)
        return _lightcurves(primary, columns, headers, bad)


Complaint = Callable[[str], CorruptProductError]


def _complaint(path: Path) -> Complaint:
    def bad(problem: str) -> CorruptProductError:
        return CorruptProductError(path, f"not an archi light-curve file: {problem}")
    return bad


def _n_stars(primary: fits.Header, bad: Complaint) -> int:
    """NSTARS of the primary header, after checking FORMAT."""
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
    return n_stars


def _star_tables(hdul: fits.HDUList, n_stars: int, bad: Complaint) -> list[fits.BinTableHDU]:
    """The ``STAR_0`` .. ``STAR_<n_stars - 1>`` tables, in star order."""
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
    return [tables[k] for k in range(n_stars)]


def _star_columns(tables: list[fits.BinTableHDU], bad: Complaint
                  ) -> tuple[dict[str, list[NDArray]], list[fits.Header]]:
    """(column name -> one array per star, the star headers), after checking them."""
    names = [name for name, _, _ in FITS_COLUMNS
             if name not in _LATER_COLUMNS + _DRP_COLUMNS]
    columns: dict[str, list[NDArray]] = {name: [] for name in names + list(_LATER_COLUMNS)
                                         + list(_DRP_COLUMNS)}
    n_frames = None
    for k, hdu in enumerate(tables):
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
        for name in _LATER_COLUMNS:  # layout 1 files have none: FLUX is the mask's sum
            columns[name].append(np.asarray(hdu.data[name], float) if name in present
                                 else np.full(len(hdu.data), np.nan))
        for name in _DRP_COLUMNS:  # layout 2 files have none: None
            columns[name].append(np.asarray(hdu.data[name], np.int32) if name in present
                                 else None)
        for key in ("X0", "Y0", "MASKTYPE", "MASKSIZE"):
            if key not in hdu.header and not (key == "MASKSIZE"
                                              and hdu.header.get("MASKTYPE") == "psf"):
                raise bad(f"STAR_{k} header has no {key} keyword")
    for name in ("MJD_TIME", "BJD_TIME", "ROLL_ANGLE"):
        for k in range(1, len(tables)):
            if not np.array_equal(columns[name][k], columns[name][0], equal_nan=True):
                raise bad(f"STAR_{k} {name} differs from STAR_0")
    return columns, [hdu.header for hdu in tables]


def _lightcurves(primary: fits.Header, columns: dict[str, list[NDArray]],
                 cards: list[fits.Header], bad: Complaint) -> StarLightCurves:
    def header_floats(key: str) -> NDArray[np.float64]:
        values = []
        for header in cards:
            value = header.get(key)
            try:
                values.append(float(value) if value is not None else math.nan)
            except (TypeError, ValueError):
                raise bad(f"{header.get('EXTNAME', '?')} {key} = {value!r} is not a "
                          "number") from None
        return np.array(values)

    x0, y0 = header_floats("X0"), header_floats("Y0")
    stars = StarList(
        x0=x0, y0=y0,
        catalogue_row=np.array([int(c.get("CATROW", -1)) for c in cards], dtype=np.int64),
        source_id=np.array([str(c.get("CATID", "")) for c in cards], dtype=np.str_),
        ra=header_floats("RA"), dec=header_floats("DEC"), mag=header_floats("MAG"),
        brightness=header_floats("BRIGHT"))
    flag = np.vstack(columns["FLAG"]).astype(np.int32)
    tracks = Tracks(x=np.vstack(columns["XC"]), y=np.vstack(columns["YC"]),
                    measured=(flag & FLAG_NOT_MEASURED) == 0)
    options = {option: primary[key] for key, option, _ in OPTION_KEYWORDS if key in primary}
    conta = np.vstack(columns["CONTA"])
    modelled = bool(np.isfinite(conta).any())
    return StarLightCurves(
        visit_key=str(primary.get("VISIT", "")),
        mjd_time=columns["MJD_TIME"][0], bjd_time=columns["BJD_TIME"][0],
        roll_angle=columns["ROLL_ANGLE"][0], stars=stars, tracks=tracks,
        flux=np.vstack(columns["FLUX"]), flux_err=np.vstack(columns["FLUX_ERR"]), flag=flag,
        methods=tuple(str(c["MASKTYPE"]) for c in cards),
        factors=header_floats("MASKSIZE"), npix=header_floats("NPIX"),
        cdpp=header_floats("CDPP"), options=options,
        flux_raw=np.vstack(columns["FLUX_RAW"]) if modelled else None,
        conta=conta if modelled else None,
        event=columns["EVENT"][0], status=columns["STATUS"][0])
