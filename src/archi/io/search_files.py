"""Home of the factor search's own files: CDPP tables (TSV), round decisions and the
fine-tune plan (YAML).

Every file is written atomically (:mod:`archi.io.atomic`), so a killed job never leaves
one that looks complete. A missing file raises :class:`~archi.errors.ProductNotFoundError`;
a file that cannot be read or has the wrong content raises
:class:`~archi.errors.CorruptProductError` naming the file.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any, TextIO

import numpy as np
import yaml

from archi.cdpp_table import COLUMNS, CdppTable
from archi.errors import CorruptProductError, ProductNotFoundError, one_line
from archi.factors import format_factor, parse_factor
from archi.io.atomic import atomic_path, write_text_atomically
from archi.optimize import RoundDecision

_TRUE = {"true": True, "1": True, "false": False, "0": False}


def write_cdpp_table(table: CdppTable, path: str | Path) -> None:
    """Write a CDPP table as TSV (header ``star factor cdpp valid``), atomically.

    Rows sorted by star then factor; factors written with :func:`format_factor`, CDPP as
    Python's shortest round-trip text (what pandas wrote), ``valid`` as ``True``/``False``.
    The text goes to a temporary file in the same folder which then replaces ``path``
    (``os.replace``), so a reader never sees a partial file. Parent folders are created.
    """
    rows = list(table.sorted().rows())

    def dump(fh: TextIO) -> None:
        fh.write("\t".join(COLUMNS) + "\n")
        for star, factor, value, ok in rows:
            fh.write(f"{star}\t{format_factor(factor)}\t{value!r}\t{ok}\n")

    write_text_atomically(Path(path), dump)


def read_cdpp_tables(paths: str | Path | Iterable[str | Path]) -> CdppTable:
    """Read one or several CDPP tables into one table, sorted by star then factor.

    The same path given twice is read once. A (star, factor) pair present in several files must
    carry the same CDPP and validity (within 1e-9 relative) and is kept once; otherwise the
    later file is reported as inconsistent.

    Raises :class:`~archi.errors.ProductNotFoundError` for a missing file and
    :class:`~archi.errors.CorruptProductError` (naming the file) for an unreadable file, a
    missing column, or a value that is not a star index / canonical factor / number / boolean.
    """
    if isinstance(paths, (str, Path)):
        paths = [paths]
    unique = list(dict.fromkeys(Path(p) for p in paths))
    tables = [_read_one_cdpp_table(p) for p in unique]
    everything = CdppTable.concat(tables)
    source = np.concatenate([np.full(len(t), i) for i, t in enumerate(tables)] or [[]])
    order = np.lexsort((everything.factor, everything.star))  # stable: files in order
    table, source = everything.select(order), source[order].astype(int)
    repeated = table.repeated()
    # the first row of each (star, factor): the one kept, the others must agree with it
    first = np.maximum.accumulate(np.where(repeated, 0, np.arange(len(table))))
    for i in np.flatnonzero(repeated):
        _check_same_run(table, i, first[i], unique[source[i]], unique[source[first[i]]])
    return table.select(~repeated)


def _check_same_run(table: CdppTable, i: int, first: int, path: Path, first_path: Path
                    ) -> None:
    """CorruptProductError unless rows ``i`` and ``first`` (the same run) agree."""
    a, b = table.cdpp[i], table.cdpp[first]
    same = table.valid[i] == table.valid[first] and (
        np.isclose(a, b, rtol=1e-9, atol=0.0) or (np.isnan(a) and np.isnan(b)))
    if not same:
        raise CorruptProductError(
            path, f"star {table.star[i]} factor {format_factor(table.factor[i])} has "
                  f"cdpp={float(a)!r} valid={bool(table.valid[i])} but {first_path} has "
                  f"cdpp={float(b)!r} valid={bool(table.valid[first])}")


def _read_lines(path: Path) -> list[str]:
    if not path.exists():
        raise ProductNotFoundError(f"{path}: CDPP table not found")
    try:
        lines = [line for line in path.read_text(encoding="utf-8").splitlines() if line]
    except (OSError, UnicodeDecodeError) as exc:
        raise CorruptProductError(path, f"cannot be read as a CDPP table: {one_line(exc)}"
                                  ) from None
    if not lines:
        raise CorruptProductError(path, "empty file, expected a CDPP table with header "
                                        + "\\t".join(COLUMNS))
    return lines


def _read_one_cdpp_table(path: Path) -> CdppTable:
    lines = _read_lines(path)
    header = lines[0].split("\t")
    missing = [c for c in COLUMNS if c not in header]
    if missing:
        raise CorruptProductError(path, f"missing column(s) {', '.join(missing)} "
                                        f"(found {', '.join(header)})")
    fields = []
    for line_number, line in enumerate(lines[1:], start=2):
        values = line.split("\t")
        if len(values) != len(header):
            raise CorruptProductError(path, f"line {line_number}: {len(values)} fields, "
                                            f"expected {len(header)}")
        fields.append((line_number, dict(zip(header, values))))
    convert: dict[str, Callable[[str], Any]] = {
        "star": _star, "factor": parse_factor, "cdpp": float,
        "valid": lambda text: _TRUE[text.lower()]}
    columns = {}
    for name in COLUMNS:
        values = []
        for line_number, row in fields:
            try:
                values.append(convert[name](row[name].strip()))
            except (TypeError, ValueError, KeyError):
                raise CorruptProductError(
                    path, f"line {line_number}: bad {name} {row[name]!r}") from None
        columns[name] = np.array(values, dtype=bool) if name == "valid" else values
    return CdppTable.from_columns(columns)


def _star(text: str) -> int:
    if not text.isdigit():
        raise ValueError(text)
    return int(text)


def write_decision(path: str | Path, decision: RoundDecision) -> None:
    """The decision after a round as a small YAML file (round, extend, done, best; a star
    without a valid run has best ``null``), atomically."""
    text = yaml.safe_dump({"round": decision.round_index, "extend": decision.extend,
                           "done": decision.done,
                           "best": {k: (None if math.isnan(v) else v)
                                    for k, v in decision.best.items()}}, sort_keys=False)
    with atomic_path(path) as tmp:
        Path(tmp).write_text(text)


def read_decision(path: str | Path) -> RoundDecision:
    """A decision written by :func:`write_decision` (round, extend and best only)."""
    path = Path(path)
    try:
        doc = yaml.safe_load(path.read_text())
        return RoundDecision(int(doc["round"]), [int(s) for s in doc["extend"]],
                             {int(k): (float("nan") if v is None else float(v))
                              for k, v in doc["best"].items()})
    except (OSError, KeyError, TypeError, ValueError, yaml.YAMLError) as exc:
        detail = " ".join(str(exc).split())  # YAML's messages span lines
        raise CorruptProductError(path, f"not a round decision ({detail})") from None


def write_fine_plan(path: str | Path, plan: dict[int, list[float]]) -> None:
    """The fine-tune plan (star -> radii) as YAML, atomically."""
    with atomic_path(path) as tmp:
        tmp.write_text(yaml.safe_dump(plan))


def read_fine_plan(path: str | Path) -> dict[int, list[float]]:
    """The fine-tune plan written by :func:`write_fine_plan` (an empty file: no star)."""
    path = Path(path)
    try:
        plan = yaml.safe_load(path.read_text()) or {}
        return {int(star): [float(r) for r in radii] for star, radii in plan.items()}
    except (OSError, AttributeError, TypeError, ValueError, yaml.YAMLError) as exc:
        detail = " ".join(str(exc).split())
        raise CorruptProductError(path, f"not a fine-tune plan ({detail})") from None
