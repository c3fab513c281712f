"""Home of ``lightcurves.fits``, the light curves of every star of a visit in one FITS file.

The file is written to a temporary name beside its destination and renamed when complete
(:func:`archi.io.atomic.atomic_path`), so a killed job never leaves a file that looks
finished.

Layout (:func:`write_lightcurves_fits`, read back by :func:`read_lightcurves_fits`; as
astropy tables and lightkurve objects: :mod:`archi.io.lightcurve_tables`)
-------------------------------------------------------------------------------------
* HDU 0, primary, no data. Keywords: ``FORMAT`` (= ``archi-lightcurves``), ``FORMATV``
  (layout version), ``PROGRAM`` (= ``archi``), ``VERSION`` (software version), ``DATE``
  (UTC time of writing), ``VISIT`` (visit file key), ``NSTARS``, and the run options
  ``METHOD`` (``method``), ``INITIAL`` (``initial_detect``), ``DETECT`` (``detect_mode``),
  ``GRID`` (``grid_bg``), ``CDPPTYPE`` (``CDPP_type``), ``DECONTAM`` (``decontaminate``)
  when present in ``lc.options``; ``FLAGB<i>`` (i = 0, 1, ...): the name of FLAG bit
  2**i, its meaning in the comment. From the visit (layout 4): the DRP light curve's
  identity keywords as it has them (``TELESCOP``, ``INSTRUME``, ``PI_NAME``, ``OBSID``,
  ``TARGNAME``, ``RA_TARG``, ``DEC_TARG``, ``MAG_G``, ``EXPTIME``, ``NEXP``,
  ``TEXPTIME``, ``PIPE_VER``, ...: :data:`archi.io.products.IDENTITY_KEYWORDS`),
  ``X_WINOFF``, ``Y_WINOFF`` [pixel] (the subarray's origin on the CCD), ``X_LOCATN``,
  ``Y_LOCATN`` [pixel] (the DRP's LOCATION_X/Y), ``DRP_AP`` (the DRP light curve of
  BACKGROUND). Keywords of :mod:`archi.io.lightcurve_headers`.
  Strings are single-line printable ASCII cut to one card (a callable metric is written as
  ``module:qualname``).
* HDU 1 .. NSTARS, one binary table per star, ``EXTNAME = STAR_<n>`` (n = 0 is the target),
  one row per frame. Units are FITS units astropy reads without a warning (``ct``: counted
  electrons, per stacked image):

  ============ ====== ========= ===========================================
  column       TFORM  TUNIT     content
  ============ ====== ========= ===========================================
  TIME         D      d         BJD_TDB - 2457000 (layout 4)
  MJD_TIME     D      d         mid-exposure MJD (TT)
  BJD_TIME     D      d         mid-exposure BJD_TDB
  ROLL_ANGLE   D      deg       roll angle
  FLUX         D      ct        the star's own light in its mask (decontaminate:
                                the mask's sum minus the neighbours' modelled light;
                                without, the mask's sum)
  FLUX_ERR     D      ct        its uncertainty (photon noise of all the mask's light)
  FLUX_RAW     D      ct        the mask's sum
  CONTA        D      ct        the neighbours' modelled light in the mask (NaN
                                without a field model)
  XC, YC       D      pixel     aperture centre (subarray pixels, ``archi.__doc__``)
  CENTROID_X,  D      pixel     the same on the CCD (XC + X_WINOFF, YC + Y_WINOFF;
  CENTROID_Y                    layout 4; NaN without the visit)
  BACKGROUND   D      ct/pixel  sky background per pixel the DRP subtracted (its
                                DRP_AP light curve's BACKGROUND / aperture area;
                                layout 4; NaN without the visit)
  thermFront_2 D      Celsius   telescope tube temperature (the DRP's COR metadata;
                                layout 4, only when the products have it)
  FLAG         J                FLAG_* bits of :mod:`archi.stars` (README "FLAG
                                bits"; primary keywords FLAGB<i> name bit 2**i),
                                0 = nothing to report
  EVENT        J                the DRP's EVENT code of the frame (pycheops' cuts)
  STATUS       J                the DRP's STATUS of the frame (0 = good)
  ============ ====== ========= ===========================================

  Header keywords: ``STAR`` (number), ``X0``, ``Y0`` [pixel] (first-frame position),
  ``DIST`` [pixel] (distance from the target), ``MASKTYPE`` (``circle``/``shape``/``psf``),
  ``MASKSIZE`` (the mask factor: radius [pixel] or layers; none for ``psf``), ``NPIX``
  [pixel] (mean mask area; none for ``psf``), ``CDPP`` [ppm] (noise metric of FLUX), ``CONTAM`` (median CONTA / median FLUX
  on good frames, with a field model), ``CATROW`` (row in the DRP star catalogue, -1 if
  unmatched), ``BRIGHT`` [electron] (relative brightness estimate), and for a catalogue
  match ``CATID`` (catalogue/Gaia ID), ``RA``, ``DEC`` [deg], ``MAG`` [Gaia G]. A value that
  is NaN (no catalogue match, undefined metric) is left out: FITS headers cannot hold NaN.
  The time reference of TIME (layout 4): ``TIMESYS = 'TDB'``, ``TIMEREF =
  'SOLARSYSTEM'``, ``TREFPOS = 'BARYCENTER'``, ``TIMEUNIT = 'd'``, ``BJDREFI = 2457000``,
  ``BJDREFF = 0.0``, ``MJDREF = 56999.5``, so that ``lightkurve.read`` and astropy's
  ``Table.read(..., astropy_native=True)`` make TIME the right absolute time.
* Every HDU has ``CHECKSUM`` and ``DATASUM`` (layout 4).

Layouts 1 to 3 (before TIME, the visit's keywords and series, and the ``ct`` units) are
read too: what they lack comes back as NaN or None.

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

import numpy as np
from astropy.io import fits
from numpy.typing import NDArray

import archi
from archi.errors import CorruptProductError, ProductNotFoundError, one_line
from archi.io.atomic import atomic_path
from archi.io.lightcurve_headers import (
    OPTION_KEYWORDS,
    TIME_OFFSET,
    card,
    context_cards,
    flag_cards,
    option_cards,
    read_context,
    time_cards,
)
from archi.io.lightcurve_values import check_lightcurves, is_matched, utc_now
from archi.stars import FLAG_NOT_MEASURED, StarLightCurves, StarList, Tracks

__all__ = ["FITS_FORMAT", "FITS_FORMAT_VERSION", "FITS_COLUMNS", "OPTION_KEYWORDS",
           "THERM_COLUMN", "write_lightcurves_fits", "read_lightcurves_fits"]

FITS_FORMAT = "archi-lightcurves"
"""Value of the primary ``FORMAT`` keyword of a light-curve FITS file."""

FITS_FORMAT_VERSION = 4
"""Value of the primary ``FORMATV`` keyword (layout version)."""

FITS_COLUMNS: tuple[tuple[str, str, str | None], ...] = (
    ("TIME", "D", "d"), ("MJD_TIME", "D", "d"), ("BJD_TIME", "D", "d"),
    ("ROLL_ANGLE", "D", "deg"),
    ("FLUX", "D", "ct"), ("FLUX_ERR", "D", "ct"), ("FLUX_RAW", "D", "ct"),
    ("CONTA", "D", "ct"), ("XC", "D", "pixel"), ("YC", "D", "pixel"),
    ("CENTROID_X", "D", "pixel"), ("CENTROID_Y", "D", "pixel"),
    ("BACKGROUND", "D", "ct/pixel"), ("FLAG", "J", None),
    ("EVENT", "J", None), ("STATUS", "J", None))
"""Columns of every ``STAR_<n>`` table: (name, TFORM, TUNIT); the optional
:data:`THERM_COLUMN` follows BACKGROUND."""

THERM_COLUMN = ("thermFront_2", "D", "Celsius")
"""The tube temperature column, written when the visit's products have it."""

_LATER_COLUMNS = ("FLUX_RAW", "CONTA")  # new in layout 2, optional when reading
_DRP_COLUMNS = ("EVENT", "STATUS")  # new in layout 3, optional when reading
_CONTEXT_COLUMNS = ("TIME", "CENTROID_X", "CENTROID_Y", "BACKGROUND")  # new in layout 4
_UNIT_COMMENTS = {"ct": "electrons (counted) per stacked image",
                  "ct/pixel": "electrons per pixel per stacked image"}

_STAR_EXTNAME = re.compile(r"\ASTAR_(\d+)\Z")


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
        hdul.writeto(tmp, output_verify="exception", checksum=True)
    return path


def _primary_hdu(lc: StarLightCurves, software_version: str) -> fits.PrimaryHDU:
    primary = fits.PrimaryHDU()
    h = primary.header
    card(h, "FORMAT", FITS_FORMAT, "file layout")
    card(h, "FORMATV", FITS_FORMAT_VERSION, "file layout version")
    card(h, "PROGRAM", "archi", "software that wrote this file")
    card(h, "VERSION", str(software_version), "software version")
    card(h, "DATE", utc_now(), "UTC time the file was written")
    card(h, "VISIT", lc.visit_key, "visit file key")
    card(h, "NSTARS", lc.n_stars, "number of stars (one STAR_<n> table each)")
    option_cards(h, lc.options)
    flag_cards(h)
    context_cards(h, lc.context)
    return primary


def _context_series(lc: StarLightCurves, k: int) -> dict[str, NDArray]:
    """The star's CCD position and the visit's series (NaN without a visit context)."""
    nan = np.full(lc.n_frames, np.nan)
    context = lc.context
    if context is None:
        return {"CENTROID_X": nan, "CENTROID_Y": nan, "BACKGROUND": nan}
    series = {"CENTROID_X": lc.tracks.x[k] + context.window_offset[0],
              "CENTROID_Y": lc.tracks.y[k] + context.window_offset[1],
              "BACKGROUND": context.background}
    if context.therm_front_2 is not None:
        series[THERM_COLUMN[0]] = context.therm_front_2
    return series


def _star_hdu(lc: StarLightCurves, k: int) -> fits.BinTableHDU:
    """The ``STAR_<k>`` table: one row per frame, the star's description in the header."""
    tracks = lc.tracks
    flag = np.asarray(lc.flag[k], dtype=np.int32).copy()
    flag[~np.asarray(tracks.measured[k], dtype=bool)] |= FLAG_NOT_MEASURED
    data = {
        "TIME": np.asarray(lc.bjd_time, float) - TIME_OFFSET,
        "MJD_TIME": lc.mjd_time, "BJD_TIME": lc.bjd_time, "ROLL_ANGLE": lc.roll_angle,
        "FLUX": lc.flux[k], "FLUX_ERR": lc.flux_err[k],
        "FLUX_RAW": lc.flux[k] if lc.flux_raw is None else lc.flux_raw[k],
        "CONTA": np.full(lc.n_frames, np.nan) if lc.conta is None else lc.conta[k],
        "XC": tracks.x[k], "YC": tracks.y[k], "FLAG": flag,
        "EVENT": np.zeros(lc.n_frames) if lc.event is None else lc.event,
        "STATUS": np.zeros(lc.n_frames) if lc.status is None else lc.status,
        **_context_series(lc, k),
    }
    layout = list(FITS_COLUMNS)
    if THERM_COLUMN[0] in data:
        layout.insert(layout.index(("BACKGROUND", "D", "ct/pixel")) + 1, THERM_COLUMN)
    cols = [fits.Column(name=name, format=tform, unit=unit,
                        array=np.asarray(data[name],
                                         dtype=np.int32 if tform == "J" else np.float64))
            for name, tform, unit in layout]
    hdu = fits.BinTableHDU.from_columns(cols, name=f"STAR_{k}")
    sh = hdu.header
    for i, (_, _, unit) in enumerate(layout, start=1):
        if unit in _UNIT_COMMENTS:
            sh.comments[f"TUNIT{i}"] = _UNIT_COMMENTS[unit]
    _star_cards(sh, lc, k)
    time_cards(sh)
    return hdu


def _star_cards(sh: fits.Header, lc: StarLightCurves, k: int) -> None:
    """The star's description (module docstring)."""
    stars = lc.stars
    card(sh, "STAR", k, "star number (0 = target)")
    card(sh, "X0", float(stars.x0[k]), "[pixel] x in the first frame")
    card(sh, "Y0", float(stars.y0[k]), "[pixel] y in the first frame")
    card(sh, "DIST", float(stars.distance[k]), "[pixel] distance from the target")
    card(sh, "MASKTYPE", str(lc.methods[k]), "mask method: circle, shape or psf (none)")
    card(sh, "MASKSIZE", float(lc.factors[k]), "mask factor: radius [pixel] or layers")
    card(sh, "NPIX", float(lc.npix[k]), "[pixel] mean mask area")
    card(sh, "CDPP", float(lc.cdpp[k]), "[ppm] noise metric of the light curve")
    card(sh, "CONTAM", float(lc.contamination[k]), "median CONTA / median FLUX")
    card(sh, "CATROW", int(stars.catalogue_row[k]), "DRP catalogue row, -1 = none")
    card(sh, "BRIGHT", float(stars.brightness[k]), "[electron] brightness estimate")
    if is_matched(stars, k):
        if str(stars.source_id[k]):
            card(sh, "CATID", str(stars.source_id[k]), "catalogue (Gaia) ID")
        card(sh, "RA", float(stars.ra[k]), "[deg] catalogue right ascension")
        card(sh, "DEC", float(stars.dec[k]), "[deg] catalogue declination")
        card(sh, "MAG", float(stars.mag[k]), "[mag] catalogue Gaia G magnitude")


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
    optional = _LATER_COLUMNS + _CONTEXT_COLUMNS + (THERM_COLUMN[0],)
    names = [name for name, _, _ in FITS_COLUMNS if name not in optional + _DRP_COLUMNS]
    columns: dict[str, list[NDArray]] = {name: [] for name in names + list(optional)
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
        for name in optional:  # layout 1 has no FLUX_RAW, CONTA; before 4 no context
            columns[name].append(np.asarray(hdu.data[name], float) if name.upper() in present
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
    therm = columns[THERM_COLUMN[0]][0]
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
        event=columns["EVENT"][0], status=columns["STATUS"][0],
        context=read_context(primary, columns["BACKGROUND"][0],
                             None if np.isnan(therm).all() else therm))
