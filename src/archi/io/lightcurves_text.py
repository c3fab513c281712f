"""Home of archi's ``;``-separated light-curve text files: ``lightcurves.txt`` (every star)
and the per-star ``star_<n>.txt`` files.

Numbers are written with full float64 precision (the shortest text that reads back as the
same float, ``nan`` for NaN). Every file is written to a temporary name beside its
destination and renamed when complete (:func:`archi.io.atomic.atomic_path`).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

import archi
from archi.errors import CorruptProductError, ProductNotFoundError
from archi.io.atomic import atomic_path
from archi.io.lightcurve_values import check_lightcurves, fraction, is_matched, option_text
from archi.stars import FLAG_NAMES, FLAG_NOT_MEASURED, FLAG_OUT_OF_BOUNDS, StarLightCurves

__all__ = ["TEXT_COLUMNS_PER_STAR", "STAR_TEXT_COLUMNS", "TextStarInfo", "TextLightCurves",
           "write_lightcurves_text", "read_lightcurves_text", "write_star_texts",
           "read_star_text"]

TEXT_COLUMNS_PER_STAR = ("FLUX", "FLUX_ERR", "FLAG")
"""Columns written per star ``k`` in the multi-star text file, as
``FLUX_k;FLUX_ERR_k;FLAG_k`` (older files without FLAG_k are read too)."""

STAR_TEXT_COLUMNS = ("MJD_TIME", "BJD_TIME", "ROLL_ANGLE", "FLUX", "FLUX_ERR", "XC", "YC",
                     "FLAG")
"""Columns of a per-star text file (same names and units as the FITS tables)."""


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
    flag: NDArray[np.int32] | None = None  # (n_stars, n_frames) FLAG bits (None: old file)


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
                rows: Iterable[list[str]]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        with open(tmp, "w", encoding="ascii", newline="\n") as fh:
            for line in comments:
                fh.write(f"# {line}\n")
            fh.write(";".join(header) + "\n")
            for row in rows:
                fh.write(";".join(row) + "\n")


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


# --------------------------------------------------------------------------------------------
# Every star in one file
# --------------------------------------------------------------------------------------------

def _all_star_columns(n_stars: int, per_star: tuple[str, ...] = TEXT_COLUMNS_PER_STAR
                      ) -> list[str]:
    """Header line of the multi-star file: ``MJD_TIME;ROLL_ANGLE;FLUX_0;FLUX_ERR_0;FLAG_0;
    ...``."""
    header = ["MJD_TIME", "ROLL_ANGLE"]
    for k in range(n_stars):
        header += [f"{name}_{k}" for name in per_star]
    return header


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
        MJD_TIME;ROLL_ANGLE;FLUX_0;FLUX_ERR_0;FLAG_0;FLUX_1;FLUX_ERR_1;FLAG_1;...
        <one row per frame>

    FLUX and FLUX_ERR are ``nan`` in frames that could not be measured (FLAG bit
    ``bad_frame``); FLAG_k holds the FLAG bits of :mod:`archi.stars`, as in the FITS file.

    Option lines are written only for options present in ``lc.options``. Numbers are written
    with full float64 precision (shortest exact text, ``nan`` for NaN); "Out of bounds" is
    the fraction of frames whose FLAG has the out-of-bounds bit. The star table comes from
    ``lc`` itself (archi re-read it from its factors file: F13). Returns the path written.
    """
    check_lightcurves(lc)
    path = Path(path)
    table = np.empty((lc.n_frames, 2 + 3 * lc.n_stars), dtype=np.float64)
    table[:, 0] = lc.mjd_time
    table[:, 1] = lc.roll_angle
    table[:, 2::3] = np.asarray(lc.flux, dtype=np.float64).T
    table[:, 3::3] = np.asarray(lc.flux_err, dtype=np.float64).T
    table[:, 4::3] = _written_flags(lc).T
    flag_column = np.zeros(table.shape[1], bool)
    flag_column[4::3] = True
    rows = ([str(int(v)) if is_flag else _fmt(v) for v, is_flag in zip(row, flag_column)]
            for row in table.tolist())
    _write_text(path, _all_star_comments(lc), _all_star_columns(lc.n_stars), rows)
    return path


def _all_star_comments(lc: StarLightCurves) -> list[str]:
    """The comment lines of the multi-star file (layout: :func:`write_lightcurves_text`)."""
    comments = [f"archi light curves, archi {archi.__version__}", f"Visit - {lc.visit_key}"]
    for label, option in _TEXT_OPTION_LABELS:
        if option in lc.options:
            comments.append(f"{label} - {option_text(lc.options[option])}")
    comments.append("Units - MJD_TIME [d, TT]; ROLL_ANGLE [deg]; "
                    "FLUX_k, FLUX_ERR_k [electrons]; FLAG_k bits (0 = nothing to report)")
    comments.append("FLAG bits - " + ", ".join(f"{bit} {name}"
                                               for bit, name in FLAG_NAMES.items()))
    comments.append("Stars information:")
    for k in range(lc.n_stars):
        oob = fraction((np.asarray(lc.flag[k]) & FLAG_OUT_OF_BOUNDS) != 0)
        comments.append(f"\tStar: {k}; Method: {option_text(lc.methods[k])}; "
                        f"Factor: {_fmt(lc.factors[k])}; CDPP: {_fmt(lc.cdpp[k])} ppm; "
                        f"Out of bounds: {_fmt(oob)}")
    return comments


def read_lightcurves_text(path: str | Path) -> TextLightCurves:
    """Read a file written by :func:`write_lightcurves_text`.

    Raises :class:`~archi.errors.CorruptProductError` (naming the file) when the file is not
    in that layout.
    """
    path = Path(path)
    comments, header, table = _read_semicolon_table(path)
    per_star = TEXT_COLUMNS_PER_STAR if "FLAG_0" in header else TEXT_COLUMNS_PER_STAR[:2]
    width = len(per_star)
    if header[:2] != ["MJD_TIME", "ROLL_ANGLE"] or (len(header) - 2) % width:
        raise CorruptProductError(path, "header line must be MJD_TIME;ROLL_ANGLE;FLUX_0;"
                                  f"FLUX_ERR_0;FLAG_0;..., not {';'.join(header)[:80]}")
    n_stars = (len(header) - 2) // width
    if header != _all_star_columns(n_stars, per_star):
        raise CorruptProductError(path, f"star columns must be {'_k;'.join(per_star)}_k for "
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
        flux=table[:, 2::width].T.copy(), flux_err=table[:, 3::width].T.copy(),
        comments=comments, flag=table[:, 4::width].T.astype(np.int32) if width == 3 else None)


# --------------------------------------------------------------------------------------------
# One file per star
# --------------------------------------------------------------------------------------------

def write_star_texts(lc: StarLightCurves, folder: str | Path) -> list[Path]:
    """Write one ``;``-separated text file per star, ``<folder>/star_<n>.txt``.

    Each file has ``# key: value`` comment lines (visit, star, x0, y0 [pixel], distance
    [pixel], method, factor, npix [pixel], cdpp [ppm], catalogue id/ra/dec/mag when matched)
    then the header line ``MJD_TIME;BJD_TIME;ROLL_ANGLE;FLUX;FLUX_ERR;XC;YC;FLAG`` and one
    row per frame (units as in the FITS file). Returns the paths, in star order.
    """
    check_lightcurves(lc)
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for k in range(lc.n_stars):
        flag = _written_flags(lc)[k]
        cols = [lc.mjd_time, lc.bjd_time, lc.roll_angle, lc.flux[k], lc.flux_err[k],
                lc.tracks.x[k], lc.tracks.y[k]]
        float_rows = np.column_stack([np.asarray(c, dtype=np.float64) for c in cols]).tolist()
        rows = ([*(_fmt(v) for v in row), str(f)] for row, f in zip(float_rows, flag.tolist()))
        path = folder / f"star_{k}.txt"
        _write_text(path, _one_star_comments(lc, k), list(STAR_TEXT_COLUMNS), rows)
        paths.append(path)
    return paths


def _written_flags(lc: StarLightCurves) -> NDArray[np.int64]:
    """FLAG of every star (n_stars, n_frames), the not-measured bit set wherever the track
    was predicted (as the FITS file writes it)."""
    flag = np.asarray(lc.flag, dtype=np.int64).copy()
    flag[~np.asarray(lc.tracks.measured, dtype=bool)] |= FLAG_NOT_MEASURED
    return flag


def _one_star_comments(lc: StarLightCurves, k: int) -> list[str]:
    """The ``key: value`` comment lines of the file of star ``k``."""
    stars = lc.stars
    info: dict[str, Any] = {
        "visit": lc.visit_key, "star": k, "x0": _fmt(stars.x0[k]),
        "y0": _fmt(stars.y0[k]), "distance": _fmt(stars.distance[k]),
        "method": lc.methods[k], "factor": _fmt(lc.factors[k]),
        "npix": _fmt(lc.npix[k]), "cdpp": _fmt(lc.cdpp[k]),
    }
    if is_matched(stars, k):
        info.update(catalogue_id=str(stars.source_id[k]), ra=_fmt(stars.ra[k]),
                    dec=_fmt(stars.dec[k]), mag=_fmt(stars.mag[k]))
    comments = [f"archi light curve of one star, archi {archi.__version__}"]
    comments += [f"{key}: {option_text(value)}" for key, value in info.items()]
    comments.append("units: MJD_TIME, BJD_TIME [d]; ROLL_ANGLE [deg]; FLUX, FLUX_ERR "
                    "[electrons]; XC, YC [pixel]; FLAG bits (0 = good)")
    return comments


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
