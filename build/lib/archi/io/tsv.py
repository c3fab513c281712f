"""Tab-separated tables, written exactly as pandas' ``DataFrame(rows).to_csv(path, sep="\t",
index=False, float_format=...)`` writes them, without importing pandas: the small summary
tables of the workflow's job scripts (pandas' import is about 0.25 s of each short job).

Values: integers as integers, floats as Python's shortest repr (or ``float_format``), NaN
and None as empty fields, booleans as True/False, anything else as ``str``; fields holding
a tab, quote or newline are quoted (csv's QUOTE_MINIMAL, as pandas does). Every row must
have the keys of the first (the columns, in that order).
"""

from __future__ import annotations

import csv
import math
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from archi.io.atomic import atomic_path

__all__ = ["format_field", "write_tsv"]


def format_field(value: object, float_format: str | None = None) -> str:
    """One field as pandas writes it (see the module docstring)."""
    if value is None:
        return ""
    if isinstance(value, (bool, np.bool_)):
        return str(bool(value))
    if isinstance(value, (int, np.integer)):
        return str(int(value))
    if isinstance(value, (float, np.floating)):
        v = float(value)
        if math.isnan(v):
            return ""
        return float_format % v if float_format else repr(v)
    return str(value)


def write_tsv(rows: Sequence[Mapping[str, object]], path: str | Path,
              float_format: str | None = None) -> None:
    """Write ``rows`` (one mapping per row, columns in the first row's key order) to
    ``path`` atomically (see :func:`archi.io.fitswrite.atomic_path`)."""
    columns = list(rows[0]) if rows else []
    for i, row in enumerate(rows):
        if list(row) != columns:
            raise ValueError(f"row {i} has columns {list(row)}, the first row {columns}")
    with atomic_path(path) as tmp:
        with open(tmp, "w", newline="") as fh:
            writer = csv.writer(fh, delimiter="\t", lineterminator="\n")
            writer.writerow(columns)
            writer.writerows([format_field(row[c], float_format) for c in columns]
                             for row in rows)
