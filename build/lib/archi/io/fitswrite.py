"""Home of FITS writing: files the way the CHEOPS DRP writes them (empty primary, named
extensions, exact columns), cards cut to fit, and plain named tables.

Used by the simulator (and by anything that must produce DRP look-alike products). Files are
written to a temporary name in the destination folder and renamed when complete, so a killed
writer never leaves a file that looks finished.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from astropy.io import fits

from archi.io.atomic import atomic_path
from archi.io.products import Column

Card = tuple[str, Any, str]
"""A header card: (keyword, value, comment)."""


def primary_header_bytes() -> bytes:
    """The DRP's empty primary header (``BITPIX = 16``, ``NAXIS = 0``) as one FITS block."""
    header = fits.Header([
        ("SIMPLE", True, "file does conform to FITS standard"),
        ("BITPIX", 16, "number of bits per data pixel"),
        ("NAXIS", 0, "number of data axes"),
        ("EXTEND", True, "FITS dataset may contain extensions"),
    ])
    return header.tostring().encode("ascii")


def set_card(header: fits.Header, key: str, value: Any, comment: str) -> None:
    """Set ``key`` unless ``value`` is None or a non-finite float (FITS headers cannot hold
    NaN); the comment is cut to fit the 80-character card, as in real DRP headers."""
    if value is None:
        return
    if isinstance(value, (float, np.floating)) and not np.isfinite(value):
        return
    room = 80 - max(len(fits.Card(key, value).image.rstrip()), 30) - 3
    header[key] = (value, comment[:max(room, 0)])


def _apply_cards(header: fits.Header, extname: str, cards: Iterable[Card]) -> None:
    header["EXTNAME"] = (extname, "extension name")
    for key, value, comment in cards:
        set_card(header, key, value, comment)


def table_hdu(extname: str, columns: Sequence[Column], data: Mapping[str, Any],
              cards: Iterable[Card] = ()) -> fits.BinTableHDU:
    """A binary table with the given column layout; ``data`` maps column name -> values."""
    missing = [name for name, _, _ in columns if name not in data]
    if missing:
        raise ValueError(f"{extname}: no data for columns {missing}")
    cols = []
    for name, tform, unit in columns:
        values = np.asarray(data[name])
        kwargs: dict[str, Any] = {}
        if tform == "1I":  # uint16 stored as int16 + TZERO, as the DRP does
            kwargs["bzero"] = 32768
            values = values.astype(np.uint16)
        cols.append(fits.Column(name=name, format=tform, unit=unit, array=values, **kwargs))
    hdu = fits.BinTableHDU.from_columns(cols)
    _apply_cards(hdu.header, extname, cards)
    return hdu


NamedColumn = tuple[str, str, "str | None", Any]
"""A column with its values: (name, TFORM, TUNIT or None, values)."""


def named_table(extname: str, columns: Sequence[NamedColumn]) -> fits.BinTableHDU:
    """A binary table named ``extname`` holding ``columns`` as given (no DRP conventions:
    the project's own files, e.g. ``prepared.fits`` and the simulator's ``truth.fits``)."""
    return fits.BinTableHDU.from_columns(
        [fits.Column(name, tform, unit=unit, array=values)
         for name, tform, unit, values in columns], name=extname)


def image_header(extname: str, shape: tuple[int, ...], dtype: str,
                 cards: Iterable[Card] = ()) -> fits.Header:
    """Header of an image extension of the given numpy shape and big-endian dtype."""
    header = fits.ImageHDU(data=np.zeros((1,) * len(shape), dtype=dtype)).header
    for axis, size in enumerate(reversed(shape), start=1):
        header[f"NAXIS{axis}"] = size
    _apply_cards(header, extname, cards)
    return header


class CubeWriter:
    """Stream an (N, ny, nx) float64 cube into an image extension, chunk by chunk.

    Usage::

        with atomic_path(dest) as tmp:
            writer = CubeWriter(tmp, "SCI_COR_SubArray", (n, 200, 200), cards)
            for chunk in chunks:
                writer.write(chunk)
            writer.close()
            append_hdus(tmp, [metadata_hdu, ...])
    """

    def __init__(self, path: Path, extname: str, shape: tuple[int, int, int],
                 cards: Iterable[Card] = ()):
        with open(path, "wb") as fh:
            fh.write(primary_header_bytes())
        header = image_header(extname, shape, ">f8", cards)
        self._stream = fits.StreamingHDU(str(path), header)
        self._expected = shape[0]
        self._written = 0

    def write(self, frames: np.ndarray) -> None:
        frames = np.asarray(frames, dtype=">f8")
        self._stream.write(frames)
        self._written += frames.shape[0]

    def close(self) -> None:
        if self._written != self._expected:
            raise ValueError(f"cube writer got {self._written} frames, expected {self._expected}")
        self._stream.close()


def append_hdus(path: Path, hdus: Iterable[fits.hdu.base.ExtensionHDU]) -> None:
    """Append extensions to an existing FITS file."""
    with fits.open(path, mode="append") as hdul:
        for hdu in hdus:
            hdul.append(hdu)
        hdul.flush(output_verify="exception")


def write_tables(path: str | Path, hdus: Sequence[fits.BinTableHDU]) -> None:
    """Write a product made of an empty primary and the given table extensions, atomically."""
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as fh:
            fh.write(primary_header_bytes())
        append_hdus(tmp, hdus)
