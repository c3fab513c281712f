"""Home of the CDPP table: the runs of the factor search, one row per (star, factor).

A run is one star measured at one mask factor; its row holds the star index, the factor
(rounded, see :mod:`archi.factors`), the CDPP [ppm] of the light curve and whether the run
is valid. :class:`CdppTable` keeps the four columns as numpy arrays (no pandas: the
per-factor jobs are short, and importing pandas would cost each a sizeable part of its
time). Its file (TSV) is read and written by :mod:`archi.io.search_files`.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from archi.errors import one_line
from archi.factors import check_star_index, round_factor
from archi.noise import INVALID_CDPP

COLUMNS = ("star", "factor", "cdpp", "valid")
"""Columns of a CDPP table, in file order."""

Run = tuple[int, float, float, bool]
"""One photometry run of one star: (star, factor, cdpp, valid)."""

_DTYPES = {"star": np.int64, "factor": np.float64, "cdpp": np.float64, "valid": np.bool_}


@dataclass(frozen=True, eq=False)
class CdppTable:
    """Runs (star, factor, cdpp, valid) as four equally long numpy arrays.

    ``table["star"]`` and ``table.star`` give a column; ``len(table)`` its number of rows.
    Factors are rounded by :func:`~archi.factors.round_factor`; a factor may be NaN only in
    an invalid row (a :meth:`best` row of a star without a valid run). A bad column raises
    ``ValueError``.
    """

    star: np.ndarray
    factor: np.ndarray
    cdpp: np.ndarray
    valid: np.ndarray

    columns = COLUMNS

    def __post_init__(self) -> None:
        for name in COLUMNS:
            object.__setattr__(self, name, _column(name, getattr(self, name)))
        if len({len(self[name]) for name in COLUMNS}) > 1:
            raise ValueError("CDPP table columns have different lengths")
        if (self.star < 0).any():
            raise ValueError("CDPP table has a negative star index")
        no_factor = np.isnan(self.factor)
        if (no_factor & self.valid).any():
            raise ValueError("CDPP table has a missing factor")
        factors = self.factor[~no_factor]
        if (factors < 0).any() or not np.isfinite(factors).all():
            raise ValueError("CDPP table has a negative/infinite factor")
        self.factor[~no_factor] = [round_factor(f) for f in factors]

    @classmethod
    def from_columns(cls, columns: Mapping[str, Any]) -> CdppTable:
        """A table of the four columns of ``columns`` (other keys ignored)."""
        missing = [name for name in COLUMNS if name not in columns]
        if missing:
            raise ValueError(f"CDPP table lacks column(s) {', '.join(missing)}")
        return cls(*(columns[name] for name in COLUMNS))

    @classmethod
    def from_rows(cls, rows: Iterable[Run]) -> CdppTable:
        """A table of rows (star, factor, cdpp, valid) as given, in the given order."""
        rows = list(rows)
        if not rows:
            return cls.empty()
        star, factor, cdpp, valid = zip(*rows)
        return cls(star, factor, cdpp, valid)

    @classmethod
    def from_runs(cls, runs: Iterable[Run]) -> CdppTable:
        """A table of measured runs, in the given order, with the validity rule: a run is
        valid when flagged so **and** its CDPP is a finite number below INVALID_CDPP (a user
        metric may have any scale, even negative); an invalid run gets ``cdpp =
        INVALID_CDPP`` and ``valid = False``."""
        rows = []
        for star, factor, value, ok in runs:
            value = float(value)
            ok = bool(ok) and math.isfinite(value) and value < INVALID_CDPP
            rows.append((check_star_index(star), round_factor(factor),
                         value if ok else INVALID_CDPP, ok))
        return cls.from_rows(rows)

    @classmethod
    def empty(cls) -> CdppTable:
        return cls(*([] for _ in COLUMNS))

    @classmethod
    def concat(cls, tables: Iterable[CdppTable]) -> CdppTable:
        """The rows of every table, in order (duplicates kept)."""
        tables = list(tables)
        if not tables:
            return cls.empty()
        return cls(*(np.concatenate([t[name] for t in tables]) for name in COLUMNS))

    @classmethod
    def merge(cls, tables: Iterable[CdppTable]) -> CdppTable:
        """All runs of ``tables``, one row per (star, factor) (the first one given: rounds
        overlap at their edges), sorted by star then factor."""
        table = cls.concat(tables).sorted()
        return table.select(~table.repeated())

    def __len__(self) -> int:
        return len(self.star)

    def __getitem__(self, column: str) -> np.ndarray:
        if column not in COLUMNS:
            raise KeyError(f"a CDPP table has no column {column!r} (columns: {COLUMNS})")
        return getattr(self, column)

    def rows(self) -> Iterator[Run]:
        """The rows as Python tuples (star, factor, cdpp, valid)."""
        return zip(self.star.tolist(), self.factor.tolist(), self.cdpp.tolist(),
                   self.valid.tolist())

    def select(self, rows: np.ndarray) -> CdppTable:
        """The rows picked by a boolean mask or an index array, in that order."""
        return CdppTable(*(self[name][rows] for name in COLUMNS))

    def sorted(self) -> CdppTable:
        """Rows sorted by star then factor (stable: equal pairs keep their order)."""
        return self.select(np.lexsort((self.factor, self.star)))

    def repeated(self) -> np.ndarray:
        """True for each row of a sorted table whose (star, factor) equals the row before."""
        same = (self.star[1:] == self.star[:-1]) & (self.factor[1:] == self.factor[:-1])
        return np.concatenate([[False], same]) if len(self) else np.zeros(0, bool)

    def for_stars(self, stars: Iterable[int]) -> CdppTable:
        """The rows of ``stars``, in table order."""
        return self.select(np.isin(self.star, list(stars)))

    def best(self) -> CdppTable:
        """Each star's best run: the valid run with the lowest CDPP, sorted by star.

        A run is usable when ``valid`` is true and its CDPP is finite. Ties (equal CDPP) go
        to the smallest factor. A star without any usable run gets ``factor = NaN``,
        ``cdpp = INVALID_CDPP`` and ``valid = False`` (archi gave it factor 1, a value never
        measured as valid).
        """
        usable = self.valid & np.isfinite(self.cdpp)
        rows = []
        for star in np.unique(self.star).tolist():
            mine = np.flatnonzero(usable & (self.star == star))
            if len(mine):
                i = mine[np.lexsort((self.factor[mine], self.cdpp[mine]))[0]]
                rows.append((star, self.factor[i], self.cdpp[i], True))
            else:
                rows.append((star, math.nan, INVALID_CDPP, False))
        return CdppTable.from_rows(rows)


def _column(name: str, values: Any) -> np.ndarray:
    array = np.array(values)
    if name == "valid" and array.size and array.dtype != np.bool_:
        raise ValueError("CDPP table column 'valid' must be boolean")
    try:
        return array.astype(_DTYPES[name]).reshape(-1)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"CDPP table has missing or non-numeric values in {name}: "
                         f"{one_line(exc)}") from None
