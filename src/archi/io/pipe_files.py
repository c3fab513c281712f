"""Home of the per-star files pycheops loads as PIPE's photometry
(``pycheops.Dataset.from_pipe_file``), so that any star of the field, not only the
target, can be fitted with pycheops (option ``outputs: pycheops_files``).

One file per star, ``star_<n>_sa.fits`` (PIPE names its output ``<target>_<visit>_sa.fits``),
in the layout of PIPE's photometry table (PIPE manual section 4.2, ``read.save_eigen_fits``):
an empty primary HDU, then one binary table (``EXTNAME = PIPE_PHOTOMETRY``) of one row
per frame:

============ ====== ========= ==========================================================
column       TFORM  TUNIT     content
============ ====== ========= ==========================================================
MJD_TIME     D      d         mid-exposure MJD (TT)
BJD_TIME     D      d         mid-exposure BJD_TDB (pycheops joins the DRP light curve on it)
FLUX         D      ct        the star's FLUX of ``lightcurves.fits`` [electrons per image]
FLUXERR      D      ct        its FLUX_ERR
BG           D      ct/pixel  sky background per pixel (the DRP's, as BACKGROUND)
ROLL         D      deg       roll angle
XC, YC       D      pixel     the star's position in the subarray
FLAG         I                0 = good; 2 = mask out of the field or frame lost, 4 = flux
                              outlier or a DRP EVENT (archi's rejecting FLAG bits)
thermFront_2 D      Celsius   tube temperature (when the products have it)
============ ====== ========= ==========================================================

The table header holds what pycheops reads (``TARGNAME``, ``OBSID``, ``DATE``, ``PI_NAME``,
``RA_TARG``, ``DEC_TARG``, ``SPECTYPE``, ``NEXP``, ``EXPTIME``, ``TEXPTIME``, ``PIPE_VER``;
``MAG_G``), the DRP's identity keywords, and the star's own: for a star other than the
target ``TARGNAME`` is ``<target> star <n>``, ``RA_TARG``/``DEC_TARG``/``MAG_G`` are its
catalogue values (the target's coordinates for a star found only in the image, whose
``MAG_G`` is left out).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from astropy.io import fits

import archi
from archi.io.atomic import atomic_path
from archi.io.lightcurve_headers import card
from archi.io.lightcurve_values import is_matched, utc_now
from archi.io.products import IDENTITY_KEYWORDS
from archi.stars import (
    FLAG_BAD_FRAME,
    FLAG_OUT_OF_BOUNDS,
    FLAG_REJECT,
    StarLightCurves,
)

__all__ = ["PIPE_COLUMNS", "PIPE_EXTNAME", "pipe_flag", "pipe_file_name", "write_pipe_files"]

PIPE_EXTNAME = "PIPE_PHOTOMETRY"
PIPE_COLUMNS: tuple[tuple[str, str, str | None], ...] = (
    ("MJD_TIME", "D", "d"), ("BJD_TIME", "D", "d"), ("FLUX", "D", "ct"),
    ("FLUXERR", "D", "ct"), ("BG", "D", "ct/pixel"), ("ROLL", "D", "deg"),
    ("XC", "D", "pixel"), ("YC", "D", "pixel"), ("FLAG", "I", None))
"""Columns of PIPE's photometry table that every file has: (name, TFORM, TUNIT)."""

PIPE_FLAG_BAD_PIXELS = 2  # PIPE: many bad pixels (here: mask out of the field, frame lost)
PIPE_FLAG_DEVIATING = 4  # PIPE: deviating flux (here: flux outlier or a DRP EVENT)


def pipe_flag(flag: np.ndarray) -> np.ndarray:
    """PIPE's FLAG (int16, 0 = good) of archi's FLAG bits: only rejecting bits count."""
    flag = np.asarray(flag, np.int64)
    bad_pixels = (flag & (FLAG_OUT_OF_BOUNDS | FLAG_BAD_FRAME)) != 0
    deviating = (flag & (FLAG_REJECT & ~(FLAG_OUT_OF_BOUNDS | FLAG_BAD_FRAME))) != 0
    return (np.where(bad_pixels, PIPE_FLAG_BAD_PIXELS, 0)
            | np.where(deviating, PIPE_FLAG_DEVIATING, 0)).astype(np.int16)


def pipe_file_name(star: int) -> str:
    """The file of star ``star`` (0 = target)."""
    return f"star_{star}_sa.fits"


def write_pipe_files(lc: StarLightCurves, folder: str | Path) -> list[Path]:
    """One PIPE-like file per star of ``lc`` in ``folder`` (created); returns their paths.

    Raises ``ValueError`` when ``lc`` has no visit context (its identity keywords are what
    pycheops reads first).
    """
    if lc.context is None:
        raise ValueError("light curves without their visit's keywords (written before "
                         "lightcurves.fits layout 4?): pycheops cannot load them")
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for k in range(lc.n_stars):
        hdul = fits.HDUList([fits.PrimaryHDU(), _table(lc, k)])
        path = folder / pipe_file_name(k)
        with atomic_path(path) as tmp:
            hdul.writeto(tmp, output_verify="exception", checksum=True)
        paths.append(path)
    return paths


def _table(lc: StarLightCurves, k: int) -> fits.BinTableHDU:
    context = lc.context
    data = {"MJD_TIME": lc.mjd_time, "BJD_TIME": lc.bjd_time, "FLUX": lc.flux[k],
            "FLUXERR": lc.flux_err[k], "BG": context.background, "ROLL": lc.roll_angle,
            "XC": lc.tracks.x[k], "YC": lc.tracks.y[k], "FLAG": pipe_flag(lc.flag[k])}
    layout = list(PIPE_COLUMNS)
    if context.therm_front_2 is not None:
        data["thermFront_2"] = context.therm_front_2
        layout.append(("thermFront_2", "D", "Celsius"))
    cols = [fits.Column(name=name, format=tform, unit=unit,
                        array=np.asarray(data[name], np.int16 if tform == "I" else float))
            for name, tform, unit in layout]
    hdu = fits.BinTableHDU.from_columns(cols, name=PIPE_EXTNAME)
    _cards(hdu.header, lc, k)
    return hdu


def _cards(h: fits.Header, lc: StarLightCurves, k: int) -> None:
    keywords = dict(lc.context.keywords)
    stars = lc.stars
    if k > 0:  # the star, not the visit's target
        keywords["TARGNAME"] = f"{keywords.get('TARGNAME', lc.visit_key)} star {k}"
        for key in ("MAG_G", "MAG_GERR", "T_EFF"):
            keywords.pop(key, None)
        if is_matched(stars, k):
            keywords.update(RA_TARG=float(stars.ra[k]), DEC_TARG=float(stars.dec[k]),
                            MAG_G=float(stars.mag[k]), MAG_GERR=0.0)
    for key, comment in IDENTITY_KEYWORDS.items():
        if key in keywords:
            card(h, key, keywords[key], comment)
    card(h, "DATE", utc_now(), "UTC time the file was written")
    card(h, "PROGRAM", "archi", "software that wrote this file (not PIPE)")
    card(h, "VERSION", archi.__version__, "software version")
    card(h, "VISIT", lc.visit_key, "visit file key")
    card(h, "STAR", k, "archi star number (0 = target)")
    card(h, "MASKTYPE", str(lc.methods[k]), "archi mask method")
    card(h, "MASKSIZE", float(lc.factors[k]), "archi mask factor")
    if is_matched(stars, k) and str(stars.source_id[k]):
        card(h, "CATID", str(stars.source_id[k]), "catalogue (Gaia) ID")
