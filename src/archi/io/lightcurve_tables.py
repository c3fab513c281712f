"""Home of ``lightcurves.fits`` as users analyse it: one astropy table per star
(:func:`read_lightcurves`) and a lightkurve ``LightCurve`` of one star
(:func:`to_lightkurve`; lightkurve is an optional extra: ``pip install archi-cheops[lightkurve]``).

The file itself needs neither: ``Table.read(path, hdu="STAR_3", astropy_native=True)``,
``TimeSeries.read(path, hdu="STAR_3", time_column="TIME", astropy_native=True)`` and
``lightkurve.read(path, ext="STAR_3")`` read a star as they are (layout:
:mod:`archi.io.lightcurves`).
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import numpy as np
from astropy import units as u
from astropy.io import fits
from astropy.table import Table
from astropy.time import Time

from archi.errors import CorruptProductError, ProductNotFoundError, one_line
from archi.io.lightcurves import FITS_FORMAT

__all__ = ["read_lightcurves", "to_lightkurve"]

_OLD_UNITS = {"electron": "ct"}  # layouts 1-3 wrote units astropy's FITS reader warns about


def read_lightcurves(path: str | Path) -> list[Table]:
    """Every star of a ``lightcurves.fits`` file as an astropy table, the target first.

    Each table has the file's columns, ``TIME`` an astropy ``Time`` (BJD, TDB scale; the
    file's TIME + 2457000, also for files written before TIME existed, from BJD_TIME), and
    ``meta`` = the primary header's keywords (visit, DRP identity, options, FLAG bits)
    updated with the star's own (STAR, X0, Y0, MAG, CATID, ...).

    Raises :class:`~archi.errors.ProductNotFoundError` when the file does not exist and
    :class:`~archi.errors.CorruptProductError` when it is not an archi light-curve file.
    """
    path = Path(path)
    if not path.is_file():
        raise ProductNotFoundError(f"{path}: light-curve file does not exist")
    try:
        with fits.open(path, memmap=False) as hdul:
            primary = hdul[0].header
            if primary.get("FORMAT") != FITS_FORMAT:
                raise CorruptProductError(path, f"not an archi light-curve file (FORMAT "
                                          f"{primary.get('FORMAT')!r})")
            names = [f"STAR_{k}" for k in range(int(primary["NSTARS"]))]
            return [_star_table(hdul[name], primary) for name in names]
    except (OSError, KeyError, ValueError, TypeError) as exc:
        raise CorruptProductError(path, f"not a readable light-curve file "
                                  f"({one_line(exc)})") from None


def _star_table(hdu: fits.BinTableHDU, primary: fits.Header) -> Table:
    old = "TIME" not in hdu.columns.names
    with warnings.catch_warnings():
        if old:  # layouts before 4: 'electron' units, no time keywords
            warnings.simplefilter("ignore", u.UnitsWarning)
        table = Table.read(hdu, astropy_native=True)
    if old:
        table.add_column(Time(np.asarray(table["BJD_TIME"], float), format="jd",
                              scale="tdb"), name="TIME", index=0)
        for column in table.itercols():
            if str(getattr(column, "unit", "")) in _OLD_UNITS:
                column.unit = _OLD_UNITS[str(column.unit)]
    table["TIME"].format = "jd"
    meta: dict[str, Any] = {k: v for k, v in primary.items() if k not in ("COMMENT", "")}
    meta.update((k, v) for k, v in hdu.header.items()
                if not k.startswith(("TTYPE", "TFORM", "TUNIT", "NAXIS")))
    table.meta = meta
    return table


def to_lightkurve(path: str | Path, star: int = 0):
    """Star ``star`` (0 = target) of a ``lightcurves.fits`` file as a
    ``lightkurve.LightCurve``: time (BJD_TDB, lightkurve's ``btjd`` format), flux and
    flux_err [electron per stacked image], quality = archi's FLAG, every other column
    (lower-case: roll_angle, centroid_x, background, ...), and meta with the star's and
    the visit's keywords (``LABEL``: the Gaia id, else "<visit> star <n>").

    Needs lightkurve (``pip install archi-cheops[lightkurve]``): ImportError naming it
    otherwise. IndexError when the file has no such star.
    """
    try:
        import lightkurve
    except ImportError:
        raise ImportError("archi.to_lightkurve needs lightkurve: pip install "
                          "'archi-cheops[lightkurve]' (or pip install lightkurve)") from None
    tables = read_lightcurves(path)
    if not 0 <= star < len(tables):
        raise IndexError(f"{path}: no star {star} (the file has stars 0 to "
                         f"{len(tables) - 1})")
    table = tables[star]
    time = Time(table["TIME"], format="btjd")
    columns = {"flux": np.asarray(table["FLUX"], float) * u.electron,
               "flux_err": np.asarray(table["FLUX_ERR"], float) * u.electron,
               "quality": np.asarray(table["FLAG"], np.int32)}
    for name in table.colnames:
        if name not in ("TIME", "FLUX", "FLUX_ERR", "FLAG"):
            columns[name.lower()] = table[name]
    meta = dict(table.meta)
    meta["LABEL"] = str(meta.get("CATID") or f"{meta.get('VISIT', '')} star {star}")
    meta.setdefault("MISSION", meta.get("TELESCOP", "CHEOPS"))
    meta["FLUX_ORIGIN"] = "FLUX"
    return lightkurve.LightCurve(time=time, data=columns, meta=meta)
