"""Optimisation of the mask factor: the pure building blocks the workflow calls.

The "factor" of a mask is the circle radius in pixels (``circle``, fractional allowed) or the
number of pixel layers grown around the star's contour (``shape``, integer). Each star's factor
is chosen by minimising its CDPP (noise metric) over a grid of factors:

1. :func:`factor_grid` gives the factors of a range; one photometry job per factor turns its
   per-star CDPP values into a table (:func:`make_cdpp_table`, :func:`write_cdpp_table`).
2. :func:`read_cdpp_tables` gathers the tables, :func:`best_factors` picks each star's best.
3. :func:`plan_extension` decides which stars are searched again over a higher range
   (the rule is given in its docstring) and which have converged.
4. Stars whose method is ``circle`` are fine-tuned around their best radius
   (:func:`fine_tune_plan`, :func:`fine_tune_grid`); the fine-tune tables are simply added to the
   grid tables and :func:`best_factors` is run again on the union.
5. The result is stored per visit and star in the optimised-factors file
   (:func:`write_optimized_factors`, :func:`read_optimized_factors`).

Errors: a file that is missing raises :class:`~archi.errors.ProductNotFoundError`, a file that
cannot be read or has the wrong content raises :class:`~archi.errors.CorruptProductError`
(both name the file); a bad option (range, step, method string, number of extensions) raises
:class:`~archi.errors.ConfigError`; a bad in-memory argument (a table without the columns, a
factor that is not a number) raises ``ValueError``.

Factors are rounded to :data:`FACTOR_DECIMALS` decimals everywhere, so that ``0.1 + 0.2`` is
``0.3`` and file names built with :func:`format_factor` are stable.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

import numpy as np
import yaml

from archi._lazy import LazyModule
from archi.noise import INVALID_CDPP
from archi.errors import ConfigError, CorruptProductError, ProductNotFoundError, one_line
from archi.io.atomic import write_text_atomically

if TYPE_CHECKING:
    import pandas as pd
else:  # per-factor jobs write their tables without pandas (see archi._lazy)
    pd = LazyModule("pandas")

__all__ = [
    "FACTOR_DECIMALS",
    "INVALID_CDPP",
    "MASK_METHODS",
    "CDPP_TABLE_COLUMNS",
    "OPTIMIZED_FACTORS_FORMAT",
    "OPTIMIZED_FACTORS_VERSION",
    "round_factor",
    "format_factor",
    "parse_factor",
    "factor_grid",
    "range_for_round",
    "star_methods",
    "make_cdpp_table",
    "write_cdpp_table",
    "checked_runs",
    "runs_table",
    "write_runs",
    "read_cdpp_tables",
    "best_factors",
    "ExtensionPlan",
    "plan_extension",
    "fine_tune_grid",
    "fine_tune_plan",
    "StarFactor",
    "VisitFactors",
    "write_optimized_factors",
    "read_optimized_factors",
    "optimized_factors_for",
]

FACTOR_DECIMALS = 6
"""Factors are rounded to this many decimals (1e-6 px or layer): removes float drift."""

# INVALID_CDPP (archi's 2e7 ppm penalty) is defined once, in archi.noise

MASK_METHODS = ("circle", "shape")
"""Mask methods: ``circle`` (factor = radius [px]) and ``shape`` (factor = integer layers)."""

CDPP_TABLE_COLUMNS = ("star", "factor", "cdpp", "valid")
"""Columns of a CDPP table, in file order (TSV with a header line)."""

OPTIMIZED_FACTORS_FORMAT = "archi-optimized-factors"
"""Value of the ``format`` key of the optimised-factors file."""

OPTIMIZED_FACTORS_VERSION = 1
"""Layout version of the optimised-factors file written by this module."""

MAX_GRID_SIZE = 10_000
"""Largest number of factors :func:`factor_grid` accepts (each factor is one photometry job)."""

# Relative tolerance (in units of the step) for "is this value on the grid / at the edge".
# Grid values are multiples of the step rounded to 1e-6, so 1e-6 of a step can never confuse
# two neighbouring grid values, and it absorbs float drift such as 1.0 - 2 * 0.1.
_STEP_TOL = 1e-6

_CANONICAL_FACTOR = re.compile(r"\A(0|[1-9][0-9]*)(\.[0-9]*[1-9])?\Z")


# --------------------------------------------------------------------------------------------
# Factors: rounding, names, grids
# --------------------------------------------------------------------------------------------

def round_factor(value: float) -> float:
    """``value`` as a float rounded to :data:`FACTOR_DECIMALS` decimals (``-0.0`` becomes 0.0).

    Raises ``ValueError`` if ``value`` is not a finite, non-negative number.
    """
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"mask factor {value!r} is not a number") from None
    if not math.isfinite(number) or number < 0:
        raise ValueError(f"mask factor {value!r} must be a finite number >= 0")
    return round(number, FACTOR_DECIMALS) + 0.0


def format_factor(value: float) -> str:
    """Canonical text of a factor, used in file names: ``3.0 -> "3"``, ``3.1 -> "3.1"``.

    The factor is first rounded by :func:`round_factor` (so ``0.30000000000000004 -> "0.3"``);
    trailing zeros and a trailing decimal point are dropped. No sign, no exponent.
    """
    text = f"{round_factor(value):.{FACTOR_DECIMALS}f}".rstrip("0").rstrip(".")
    return text


def parse_factor(text: str) -> float:
    """Inverse of :func:`format_factor`: ``"3.1" -> 3.1``.

    Only canonical text is accepted (``"3.10"``, ``"03"``, ``"3."``, ``"1e3"``, ``"-1"`` raise
    ``ValueError``), so that one factor always has one file name.
    ``parse_factor(format_factor(x)) == round_factor(x)`` for every valid ``x``.
    """
    if not isinstance(text, str) or not _CANONICAL_FACTOR.match(text):
        raise ValueError(f"{text!r} is not a canonical mask factor (e.g. '3' or '3.1')")
    value = round_factor(float(text))
    if format_factor(value) != text:
        raise ValueError(f"{text!r} is not a canonical mask factor; expected {format_factor(value)!r}")
    return value


def _check_step(step: float, name: str = "step") -> float:
    try:
        step = float(step)
    except (TypeError, ValueError):
        raise ConfigError(f"{name} {step!r} is not a number") from None
    if not math.isfinite(step) or step < 10.0 ** -FACTOR_DECIMALS:
        raise ConfigError(f"{name} {step!r} must be a finite number >= 1e-{FACTOR_DECIMALS}")
    return step


def _check_range(val_range: tuple[float, float]) -> tuple[float, float]:
    try:
        low, high = (float(v) for v in val_range)
    except (TypeError, ValueError):
        raise ConfigError(f"val_range {val_range!r} must be two numbers [low, high]") from None
    if not (math.isfinite(low) and math.isfinite(high)) or low < 0 or high < low:
        raise ConfigError(f"val_range {list(val_range)!r} must satisfy 0 <= low <= high")
    return low, high


def factor_grid(val_range: tuple[float, float], step: float) -> list[float]:
    """Factors ``low, low + step, ...`` up to ``high``, both ends included when on the grid.

    ``high`` is included when ``(high - low) / step`` is an integer within 1e-6 of a step
    (float drift such as ``(1.0 - 0.1) / 0.1 = 8.999999999999998`` is absorbed); otherwise the
    grid stops at the last value below ``high``. Values are computed as ``low + i * step``
    (no accumulation) and rounded by :func:`round_factor`.

    Raises :class:`~archi.errors.ConfigError` for ``low < 0``, ``high < low``, a step that is not
    positive (or below 1e-6), or more than :data:`MAX_GRID_SIZE` factors.
    """
    low, high = _check_range(val_range)
    step = _check_step(step)
    count = math.floor((high - low) / step + _STEP_TOL) + 1
    if count > MAX_GRID_SIZE:
        raise ConfigError(f"val_range {[low, high]} with step {step} gives {count} factors "
                          f"(more than {MAX_GRID_SIZE})")
    grid = [round_factor(low + i * step) for i in range(count)]
    if len(set(grid)) != len(grid):  # pragma: no cover - excluded by the step check
        raise ConfigError(f"step {step} is too small for {FACTOR_DECIMALS}-decimal factors")
    return grid


def range_for_round(val_range: tuple[float, float], round_index: int) -> tuple[float, float]:
    """Factor range searched in round ``round_index`` (0 = the configured ``val_range``).

    Round ``k >= 1`` searches ``(high * 2**(k-1), high * 2**k)``: each extension goes from the
    previous maximum to twice the previous maximum. This is the range :func:`plan_extension`
    returns, so a workflow can name its rounds in advance.
    """
    low, high = _check_range(val_range)
    if isinstance(round_index, bool) or not isinstance(round_index, (int, np.integer)) \
            or round_index < 0:
        raise ConfigError(f"round index {round_index!r} must be an integer >= 0")
    if round_index == 0:
        return round_factor(low), round_factor(high)
    return round_factor(high * 2 ** (round_index - 1)), round_factor(high * 2 ** round_index)


def star_methods(method: str, stars: Iterable[int]) -> dict[int, str]:
    """Mask method of each star from the configuration's ``method`` string.

    ``"circle"`` or ``"shape"``: every star uses it. ``"P+S"`` (e.g. ``"circle+shape"``): the
    target, star 0, uses ``P`` and every other star uses ``S``. More than two parts or an
    unknown method raise :class:`~archi.errors.ConfigError`.
    """
    if not isinstance(method, str):
        raise ConfigError(f"method {method!r} must be a string such as 'circle' or 'circle+shape'")
    parts = method.split("+")
    if len(parts) > 2 or any(p not in MASK_METHODS for p in parts):
        raise ConfigError(f"method {method!r} must be one of {', '.join(MASK_METHODS)} "
                          "or 'P+S' with P, S among them")
    target, others = parts[0], parts[-1]
    result = {}
    for star in stars:
        star = _check_star(star)
        result[star] = target if star == 0 else others
    return result


def _check_star(star: Any) -> int:
    if isinstance(star, bool) or not isinstance(star, (int, np.integer)) or star < 0:
        raise ValueError(f"star index {star!r} must be an integer >= 0")
    return int(star)


# --------------------------------------------------------------------------------------------
# CDPP tables
# --------------------------------------------------------------------------------------------

def make_cdpp_table(factors: float | Mapping[int, float], cdpp: Mapping[int, float],
                    valid: Mapping[int, bool] | None = None) -> pd.DataFrame:
    """CDPP table of one photometry run: one row per star of ``cdpp``.

    ``factors`` is the factor of the run (same for every star) or a per-star mapping (fine-tune
    runs). A run is valid when ``valid[star]`` is true (default true) **and** its CDPP is a
    finite number below INVALID_CDPP (a user metric may have any scale, even negative); an
    invalid run gets ``cdpp = INVALID_CDPP`` and ``valid = False``.
    Rows are sorted by star.
    """
    runs = []
    for star in sorted(_check_star(s) for s in cdpp):
        if isinstance(factors, Mapping):
            if star not in factors:
                raise ValueError(f"no factor given for star {star}")
            factor = factors[star]
        else:
            factor = factors
        runs.append((star, factor, cdpp[star],
                     bool(True if valid is None else valid.get(star, False))))
    return runs_table(runs)


Run = tuple[int, float, float, bool]
"""One photometry run of one star: (star, factor, cdpp, valid)."""


def checked_runs(runs: Iterable[Run]) -> list[Run]:
    """Runs with the rule of :func:`make_cdpp_table`: a run is valid when flagged so and its
    CDPP is a finite number below INVALID_CDPP, else it gets INVALID_CDPP and False; stars
    checked, factors rounded. Plain tuples: no pandas needed (see :func:`write_runs`)."""
    rows = []
    for star, factor, value, ok in runs:
        value = float(value)
        ok = bool(ok) and math.isfinite(value) and value < INVALID_CDPP
        rows.append((_check_star(star), round_factor(factor), value if ok else INVALID_CDPP,
                     ok))
    return rows


def runs_table(runs: Iterable[Run]) -> pd.DataFrame:
    """CDPP table of any runs ``(star, factor, cdpp, valid)``, in the given order, with the
    rule of :func:`make_cdpp_table` for invalid runs."""
    return _typed_table(pd.DataFrame(checked_runs(runs), columns=list(CDPP_TABLE_COLUMNS)))


def write_runs(runs: Iterable[Run], path: str | Path) -> None:
    """:func:`write_cdpp_table` of ``runs_table(runs)`` without pandas: the same text (CDPP
    as Python's shortest round-trip repr, which is what pandas writes), atomically."""
    rows = sorted(checked_runs(runs), key=lambda run: (run[0], run[1]))

    def dump(fh: TextIO) -> None:
        fh.write("\t".join(CDPP_TABLE_COLUMNS) + "\n")
        for star, factor, value, ok in rows:
            fh.write(f"{star}\t{format_factor(factor)}\t{value!r}\t{ok}\n")

    write_text_atomically(Path(path), dump)


def _typed_table(df: pd.DataFrame) -> pd.DataFrame:
    return df.astype({"star": "int64", "factor": "float64", "cdpp": "float64", "valid": "bool"})


def _check_table(table: pd.DataFrame, *, best: bool = False) -> pd.DataFrame:
    """The four columns of a CDPP table with their types; ``ValueError`` if unusable.

    With ``best=True`` (a :func:`best_factors` table) an invalid row may have a NaN factor.
    """
    if not isinstance(table, pd.DataFrame):
        raise ValueError(f"a CDPP table must be a pandas DataFrame, not {type(table).__name__}")
    missing = [c for c in CDPP_TABLE_COLUMNS if c not in table.columns]
    if missing:
        raise ValueError(f"CDPP table lacks column(s) {', '.join(missing)}")
    df = table.loc[:, list(CDPP_TABLE_COLUMNS)].copy()
    if df["valid"].dtype != bool:
        raise ValueError("CDPP table column 'valid' must be boolean")
    try:
        df = _typed_table(df)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"CDPP table has missing or non-numeric values: {one_line(exc)}") from None
    no_factor = df["factor"].isna()
    if best:
        no_factor &= df["valid"]
    if no_factor.any():
        raise ValueError("CDPP table has a missing factor")
    has_factor = df["factor"].notna()
    factors = df.loc[has_factor, "factor"]
    if (df["star"] < 0).any() or (factors < 0).any() or not np.isfinite(factors).all():
        raise ValueError("CDPP table has a negative star index or a negative/infinite factor")
    df.loc[has_factor, "factor"] = factors.map(round_factor)
    return df.reset_index(drop=True)


def write_cdpp_table(df: pd.DataFrame, path: str | Path) -> None:
    """Write a CDPP table as TSV (header ``star factor cdpp valid``), atomically.

    Only the four columns are written, sorted by star then factor; factors are written with
    :func:`format_factor`, CDPP with full float precision, ``valid`` as ``True``/``False``.
    The text goes to a temporary file in the same folder which then replaces ``path``
    (``os.replace``), so a reader never sees a partial file. Parent folders are created.
    """
    table = _check_table(df).sort_values(["star", "factor"], kind="mergesort")
    out = table.assign(factor=table["factor"].map(format_factor))

    def dump(fh: TextIO) -> None:
        out.to_csv(fh, sep="\t", index=False, lineterminator="\n")

    write_text_atomically(Path(path), dump)


def read_cdpp_tables(paths: str | Path | Iterable[str | Path]) -> pd.DataFrame:
    """Read one or several CDPP tables into one DataFrame (columns :data:`CDPP_TABLE_COLUMNS`).

    The same path given twice is read once. A (star, factor) pair present in several files must
    carry the same CDPP and validity (within 1e-9 relative) and is kept once; otherwise the
    later file is reported as inconsistent. Rows are sorted by star then factor.

    Raises :class:`~archi.errors.ProductNotFoundError` for a missing file and
    :class:`~archi.errors.CorruptProductError` (naming the file) for an unreadable file, a
    missing column, or a value that is not a star index / canonical factor / number / boolean.
    """
    if isinstance(paths, (str, Path)):
        paths = [paths]
    unique: list[Path] = []
    for p in paths:
        p = Path(p)
        if p not in unique:
            unique.append(p)
    frames = []
    for p in unique:
        frame = _read_one_cdpp_table(p)
        frame["_source"] = str(p)
        frames.append(frame)
    if not frames:
        return _typed_table(pd.DataFrame(columns=list(CDPP_TABLE_COLUMNS)))
    table = pd.concat(frames, ignore_index=True)
    table = table.sort_values(["star", "factor"], kind="mergesort")
    dup = table.duplicated(["star", "factor"], keep=False)
    if dup.any():
        for _, group in table[dup].groupby(["star", "factor"], sort=True):
            first = group.iloc[0]
            for _, row in group.iloc[1:].iterrows():
                same = row["valid"] == first["valid"] and (
                    np.isclose(row["cdpp"], first["cdpp"], rtol=1e-9, atol=0.0)
                    or (np.isnan(row["cdpp"]) and np.isnan(first["cdpp"])))
                if not same:
                    raise CorruptProductError(
                        row["_source"],
                        f"star {row['star']} factor {format_factor(row['factor'])} has "
                        f"cdpp={row['cdpp']!r} valid={row['valid']} but "
                        f"{first['_source']} has cdpp={first['cdpp']!r} valid={first['valid']}")
        table = table.drop_duplicates(["star", "factor"], keep="first")
    return table.drop(columns="_source").reset_index(drop=True)


_TRUE = {"true": True, "1": True, "false": False, "0": False}


def _read_one_cdpp_table(path: Path) -> pd.DataFrame:
    if not path.exists():
        raise ProductNotFoundError(f"{path}: CDPP table not found")
    try:
        raw = pd.read_csv(path, sep="\t", dtype=str, keep_default_na=False, na_filter=False)
    except pd.errors.EmptyDataError:
        raise CorruptProductError(path, "empty file, expected a CDPP table with header "
                                        + "\\t".join(CDPP_TABLE_COLUMNS)) from None
    except (OSError, UnicodeDecodeError, pd.errors.ParserError) as exc:
        raise CorruptProductError(path, f"cannot be read as a CDPP table: {one_line(exc)}") from None
    missing = [c for c in CDPP_TABLE_COLUMNS if c not in raw.columns]
    if missing:
        raise CorruptProductError(path, f"missing column(s) {', '.join(missing)} "
                                        f"(found {', '.join(map(str, raw.columns))})")

    def convert(column: str, func: Callable[[str], Any]) -> list[Any]:
        values = []
        for line, text in enumerate(raw[column], start=2):
            try:
                values.append(func(text.strip()))
            except (TypeError, ValueError, KeyError):
                raise CorruptProductError(path, f"line {line}: bad {column} {text!r}") from None
        return values

    def star(text: str) -> int:
        if not text.isdigit():
            raise ValueError(text)
        return int(text)

    table = pd.DataFrame({
        "star": pd.Series(convert("star", star), dtype="int64"),
        "factor": pd.Series(convert("factor", parse_factor), dtype="float64"),
        "cdpp": pd.Series(convert("cdpp", float), dtype="float64"),
        "valid": pd.Series(convert("valid", lambda t: _TRUE[t.lower()]), dtype="bool"),
    })
    return table


def best_factors(table: pd.DataFrame) -> pd.DataFrame:
    """Each star's best factor: the valid run with the lowest CDPP.

    Returns one row per star of ``table`` (sorted by star) with columns
    ``star, factor, cdpp, valid``. A run is usable when ``valid`` is true and its CDPP is
    finite. Ties (equal CDPP) go to the smallest factor. A star without any usable run gets
    ``factor = NaN``, ``cdpp = INVALID_CDPP`` and ``valid = False`` (archi gave it factor 1, a
    value never measured as valid).
    """
    df = _check_table(table)
    usable = df[df["valid"] & np.isfinite(df["cdpp"])]
    best = (usable.sort_values(["star", "cdpp", "factor"], kind="mergesort")
            .drop_duplicates("star", keep="first")
            .set_index("star"))
    stars = np.sort(df["star"].unique())
    out = pd.DataFrame({"star": stars})
    out["factor"] = best["factor"].reindex(stars).to_numpy(dtype=float)
    out["cdpp"] = best["cdpp"].reindex(stars).fillna(INVALID_CDPP).to_numpy(dtype=float)
    out["valid"] = out["star"].isin(best.index).to_numpy(dtype=bool)
    return _typed_table(out)


# --------------------------------------------------------------------------------------------
# Range extension
# --------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class ExtensionPlan:
    """What to do after a round of the factor search (see :func:`plan_extension`).

    Every star of the table is in exactly one of ``extend``, ``converged``, ``at_limit``,
    ``invalid``.
    """

    round_index: int
    """The round just finished (0 = the configured ``val_range``)."""
    current_range: tuple[float, float]
    """Range of the round just finished."""
    step: float
    """Grid step (the same in every round)."""
    new_range: tuple[float, float] | None
    """``(previous max, 2 * previous max)`` when some star is extended, else ``None``."""
    extend: tuple[int, ...]
    """Stars to measure over ``new_range`` in round ``round_index + 1``."""
    converged: tuple[int, ...]
    """Stars whose best factor is below the top edge: finished, not measured again."""
    at_limit: tuple[int, ...]
    """Stars still at the top edge but no extension left: finished without converging."""
    invalid: tuple[int, ...]
    """Stars without any valid run so far: finished, never trigger an extension."""

    @property
    def done(self) -> bool:
        """True when no star needs another round."""
        return not self.extend

    @property
    def next_round(self) -> int | None:
        """Index of the next round, or ``None`` when done."""
        return None if self.done else self.round_index + 1

    @property
    def new_factors(self) -> list[float]:
        """Factors of ``new_range`` (its first one, the previous maximum, was already measured)."""
        return [] if self.new_range is None else factor_grid(self.new_range, self.step)


def plan_extension(table: pd.DataFrame, current_range: tuple[float, float], step: float,
                   round_index: int, max_extensions: int) -> ExtensionPlan:
    """Decide which stars are searched again over a higher factor range.

    ``table`` holds the CDPP runs measured so far (all rounds may be included; only each
    star's best over the whole table matters). ``current_range`` is the range of round
    ``round_index`` (0 = the configured ``val_range``; round ``k`` is the ``k``-th extension).

    Rule, per star, with ``best`` its :func:`best_factors` result and
    ``top`` = the largest value of ``factor_grid(current_range, step)``:

    * no valid run -> ``invalid`` (never triggers an extension);
    * ``best < top - 2*step - 1e-6*step`` -> ``converged`` (not measured again);
    * otherwise (best is one of the top three grid values ``top - 2*step``, ``top - step``,
      ``top``, or above, with a tolerance of 1e-6 step for float drift) the star is at the top
      edge: if ``round_index < max_extensions`` -> ``extend``, else -> ``at_limit``.

    The new range is ``(high, 2 * high)`` with ``high = current_range[1]``: from the previous
    maximum to twice the previous maximum (archi's documented rule; archi's code shifted the
    range by ``span - 2*step`` instead). Hence at most ``max_extensions`` extension rounds
    (archi ran one more). Round ``k``'s range is :func:`range_for_round`.

    Raises :class:`~archi.errors.ConfigError` for a bad range/step, a negative
    ``max_extensions``, ``round_index`` outside ``0..max_extensions``, or a range whose
    doubling would add no new factor (``high < step``).
    """
    low, high = _check_range(current_range)
    step = _check_step(step)
    for name, value in (("optimization_extensions", max_extensions), ("round index", round_index)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 0:
            raise ConfigError(f"{name} {value!r} must be an integer >= 0")
    if round_index > max_extensions:
        raise ConfigError(f"round index {round_index} is beyond optimization_extensions "
                          f"{max_extensions}")

    top = factor_grid((low, high), step)[-1]
    threshold = top - 2 * step - _STEP_TOL * step
    best = best_factors(table)

    extend, converged, at_limit, invalid = [], [], [], []
    for row in best.itertuples(index=False):
        star = int(row.star)
        if not row.valid:
            invalid.append(star)
        elif row.factor < threshold:
            converged.append(star)
        elif round_index < max_extensions:
            extend.append(star)
        else:
            at_limit.append(star)

    new_range = None
    if extend:
        new_range = (round_factor(high), round_factor(2 * high))
        if factor_grid(new_range, step)[-1] <= round_factor(high):
            raise ConfigError(f"cannot extend the range {[low, high]}: doubling its maximum "
                              f"adds no factor with step {step}")
    return ExtensionPlan(round_index=int(round_index), current_range=(low, high), step=step,
                         new_range=new_range, extend=tuple(extend), converged=tuple(converged),
                         at_limit=tuple(at_limit), invalid=tuple(invalid))


# --------------------------------------------------------------------------------------------
# Circle fine tune
# --------------------------------------------------------------------------------------------

def fine_tune_grid(best: float, step: float = 0.1, halfwidth: float = 1.0,
                   minimum: float = 1.0) -> list[float]:
    """Radii ``best - halfwidth ... best + halfwidth`` in steps of ``step`` (21 values by default).

    Centred on the best radius itself (archi truncated it to an integer first). Values below
    ``minimum`` (default 1 px: a smaller circle holds at most the central pixel, and archi's
    grid could reach 0) are dropped; ``best`` must be at least ``minimum``, so the grid is
    never empty. ``halfwidth`` is rounded down to a whole number of steps (within 1e-6 step).
    """
    best = round_factor(best)
    step = _check_step(step, "fine-tune step")
    if not math.isfinite(halfwidth) or halfwidth < 0:
        raise ConfigError(f"fine-tune half-width {halfwidth!r} must be a finite number >= 0")
    if not math.isfinite(minimum) or minimum < 0:
        raise ConfigError(f"fine-tune minimum {minimum!r} must be a finite number >= 0")
    if best < minimum:
        raise ValueError(f"best radius {best} is below the fine-tune minimum {minimum}")
    n = math.floor(halfwidth / step + _STEP_TOL)
    grid = (round_factor(max(best + i * step, 0.0)) for i in range(-n, n + 1))
    return [v for v in grid if v >= minimum - _STEP_TOL * step]


def fine_tune_plan(best: pd.DataFrame, methods: Mapping[int, str], *, step: float = 0.1,
                   halfwidth: float = 1.0, minimum: float = 1.0) -> dict[int, list[float]]:
    """Fine-tune radii per star, for the stars whose method is ``circle`` and best is valid.

    ``best`` is a :func:`best_factors` table, ``methods`` maps every star to its method (see
    :func:`star_methods`). Shape stars and stars without a valid best are left out.
    The measured fine-tune runs go into ordinary CDPP tables; running :func:`best_factors` on
    the union of grid and fine-tune tables then gives the final factors.
    """
    df = _check_table(best, best=True)
    plan = {}
    for row in df.itertuples(index=False):
        star = int(row.star)
        if star not in methods:
            raise ValueError(f"no mask method given for star {star}")
        if methods[star] not in MASK_METHODS:
            raise ConfigError(f"star {star}: unknown mask method {methods[star]!r}")
        if methods[star] == "circle" and row.valid and math.isfinite(row.factor):
            plan[star] = fine_tune_grid(row.factor, step, halfwidth, minimum)
    return plan


# --------------------------------------------------------------------------------------------
# Optimised-factors file
# --------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class StarFactor:
    """Optimised mask of one star."""

    method: str
    """``circle`` or ``shape``."""
    factor: float | None
    """Best factor (radius [px] or layers); ``None`` when no valid factor was found."""
    cdpp: float | None = None
    """CDPP [ppm] at that factor, if recorded."""
    valid: bool = True
    """False when the star had no valid run (``factor`` is then ``None``)."""


@dataclass(frozen=True)
class VisitFactors:
    """Optimised masks of every star of one visit."""

    visit_id: str
    stars: dict[int, StarFactor]
    settings: dict[str, Any] = field(default_factory=dict)
    """Free-form settings the factors were optimised with (detect mode, grid_bg, ...)."""

    @property
    def factors(self) -> dict[int, float | None]:
        """``{star: factor}``."""
        return {k: s.factor for k, s in self.stars.items()}

    @property
    def methods(self) -> dict[int, str]:
        """``{star: method}``."""
        return {k: s.method for k, s in self.stars.items()}


def write_optimized_factors(path: str | Path, factors: Mapping[int, float | None], *,
                            methods: str | Mapping[int, str], visit_id: str,
                            cdpp: Mapping[int, float] | None = None,
                            settings: Mapping[str, Any] | None = None) -> VisitFactors:
    """Store the optimised factors of one visit in the YAML file ``path``, atomically.

    ``factors`` maps star -> factor (``None`` or NaN: no valid factor, stored as ``null`` with
    ``valid: false``). ``methods`` is the configuration's method string (``"circle+shape"``)
    or a per-star mapping. ``cdpp`` optionally maps star -> CDPP at the best factor.
    ``settings`` is a flat mapping of scalars (or lists of scalars) recorded with the visit.

    If ``path`` exists, its other visits are kept and this visit's entry is replaced; an
    existing file that cannot be read raises :class:`~archi.errors.CorruptProductError` and is
    left untouched. Layout (version 1)::

        format: archi-optimized-factors
        version: 1
        visits:
          CH_PR100018_TG027204_V0200:
            settings: {detect_mode: dynam, grid_bg: 0}
            stars:
              0: {method: circle, factor: 10.3, cdpp: 154.2, valid: true}
              1: {method: shape, factor: 3, cdpp: 812.0, valid: true}
              2: {method: shape, factor: null, cdpp: null, valid: false}

    Shape factors are written as integers. Two jobs writing the same file at the same time
    may lose one visit (read-modify-write); give concurrent jobs different files.
    Returns the stored :class:`VisitFactors`.
    """
    path = Path(path)
    if not isinstance(visit_id, str) or not visit_id:
        raise ValueError(f"visit id {visit_id!r} must be a non-empty string")
    stars = sorted(_check_star(s) for s in factors)
    per_star = star_methods(methods, stars) if isinstance(methods, str) else dict(methods)
    entries: dict[int, StarFactor] = {}
    for star in stars:
        if star not in per_star:
            raise ValueError(f"no mask method given for star {star}")
        raw = factors[star]
        value = None if raw is None or _is_nan(raw) else raw
        metric = None if cdpp is None or cdpp.get(star) is None else float(cdpp[star])
        entry = StarFactor(method=per_star[star],
                           factor=None if value is None else round_factor(value),
                           cdpp=None if metric is None or not math.isfinite(metric) else metric,
                           valid=value is not None)
        _check_star_factor(entry, f"star {star}", ValueError)
        entries[star] = entry
    clean_settings = _check_settings(settings or {})
    visit = VisitFactors(visit_id=visit_id, stars=entries, settings=clean_settings)

    visits = read_optimized_factors(path) if path.exists() else {}
    visits[visit_id] = visit
    document = {
        "format": OPTIMIZED_FACTORS_FORMAT,
        "version": OPTIMIZED_FACTORS_VERSION,
        "visits": {vid: _visit_to_yaml(v) for vid, v in sorted(visits.items())},
    }

    def dump(fh: TextIO) -> None:
        yaml.safe_dump(document, fh, sort_keys=False, default_flow_style=None)

    write_text_atomically(path, dump)
    return visit


def read_optimized_factors(path: str | Path) -> dict[str, VisitFactors]:
    """Read an optimised-factors file: ``{visit_id: VisitFactors}``.

    A missing file raises :class:`~archi.errors.ProductNotFoundError` (and, unlike archi, no
    empty file is created); bad YAML, another format or version, or any malformed entry raise
    :class:`~archi.errors.CorruptProductError` naming the file and the entry.
    """
    path = Path(path)
    if not path.exists():
        raise ProductNotFoundError(f"{path}: optimised-factors file not found; "
                                   "run the optimisation first")
    try:
        with open(path, encoding="utf-8") as fh:
            doc = yaml.safe_load(fh)
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
        raise CorruptProductError(path, f"cannot be read as YAML: {one_line(exc)}") from None

    def bad(problem: str) -> CorruptProductError:
        return CorruptProductError(path, problem)

    if not isinstance(doc, dict):
        raise bad("not an optimised-factors file (expected a mapping with format, version, visits)")
    if doc.get("format") != OPTIMIZED_FACTORS_FORMAT:
        raise bad(f"format is {doc.get('format')!r}, expected {OPTIMIZED_FACTORS_FORMAT!r}")
    version = doc.get("version")
    if version != OPTIMIZED_FACTORS_VERSION or isinstance(version, bool):
        raise bad(f"unsupported version {version!r} (this archi reads version "
                  f"{OPTIMIZED_FACTORS_VERSION})")
    unknown = set(doc) - {"format", "version", "visits"}
    if unknown:
        raise bad(f"unknown top-level key(s) {', '.join(map(str, sorted(unknown, key=str)))}")
    visits_doc = doc.get("visits")
    if visits_doc is None:
        visits_doc = {}
    if not isinstance(visits_doc, dict):
        raise bad("'visits' must be a mapping of visit id -> entry")

    visits: dict[str, VisitFactors] = {}
    for vid, vdoc in visits_doc.items():
        where = f"visits.{vid}"
        if not isinstance(vid, str) or not vid:
            raise bad(f"visit id {vid!r} must be a non-empty string")
        if not isinstance(vdoc, dict) or not isinstance(vdoc.get("stars"), dict):
            raise bad(f"{where} must be a mapping with a 'stars' mapping")
        if set(vdoc) - {"settings", "stars"}:
            raise bad(f"{where} has unknown key(s) "
                      f"{', '.join(map(str, sorted(set(vdoc) - {'settings', 'stars'}, key=str)))}")
        settings = vdoc.get("settings") or {}
        try:
            settings = _check_settings(settings)
        except ValueError as exc:
            raise bad(f"{where}.settings: {exc}") from None
        stars: dict[int, StarFactor] = {}
        for star, sdoc in vdoc["stars"].items():
            swhere = f"{where}.stars.{star}"
            if isinstance(star, bool) or not isinstance(star, int) or star < 0:
                raise bad(f"{swhere}: star index must be an integer >= 0")
            if not isinstance(sdoc, dict) or set(sdoc) - {"method", "factor", "cdpp", "valid"} \
                    or not {"method", "factor", "valid"} <= set(sdoc):
                raise bad(f"{swhere} must be a mapping with method, factor, valid "
                          "(and optionally cdpp)")
            entry = _star_from_yaml(sdoc, lambda p, w=swhere: bad(f"{w}: {p}"))
            stars[star] = entry
        visits[vid] = VisitFactors(visit_id=vid, stars=dict(sorted(stars.items())),
                                   settings=settings)
    return visits


def optimized_factors_for(path: str | Path, visit_id: str) -> VisitFactors:
    """The entry of ``visit_id`` in the optimised-factors file ``path``.

    Raises :class:`~archi.errors.ProductNotFoundError` if the file or the visit is missing.
    """
    visits = read_optimized_factors(path)
    if visit_id not in visits:
        known = ", ".join(sorted(visits)) or "none"
        raise ProductNotFoundError(f"{path}: no optimised factors for visit {visit_id!r} "
                                   f"(visits in file: {known}); run the optimisation first")
    return visits[visit_id]


def _check_star_factor(entry: StarFactor, where: str, error: Callable[[str], Exception]) -> None:
    if entry.method not in MASK_METHODS:
        raise error(f"{where}: method {entry.method!r} is not one of {', '.join(MASK_METHODS)}")
    if entry.valid and entry.factor is None:
        raise error(f"{where}: a valid star needs a factor")
    if not entry.valid and entry.factor is not None:
        raise error(f"{where}: an invalid star has no factor (null)")
    if entry.factor is not None:
        if entry.method == "shape" and entry.factor != int(entry.factor):
            raise error(f"{where}: shape factor {entry.factor} must be a whole number of layers")
        if entry.method == "circle" and entry.factor <= 0:
            raise error(f"{where}: circle radius {entry.factor} must be > 0")
    if entry.cdpp is not None and not math.isfinite(entry.cdpp):
        raise error(f"{where}: cdpp {entry.cdpp!r} must be finite")


def _star_from_yaml(sdoc: dict, bad: Callable[[str], Exception]) -> StarFactor:
    method, factor, metric, valid = (sdoc.get("method"), sdoc.get("factor"), sdoc.get("cdpp"),
                                     sdoc.get("valid"))
    if not isinstance(valid, bool):
        raise bad(f"valid {valid!r} must be true or false")
    for name, value in (("factor", factor), ("cdpp", metric)):
        if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float))):
            raise bad(f"{name} {value!r} must be a number or null")
    if factor is not None:
        try:
            factor = round_factor(factor)
        except ValueError as exc:
            raise bad(str(exc)) from None
    entry = StarFactor(method=method, factor=factor,
                       cdpp=None if metric is None else float(metric), valid=valid)
    _check_star_factor(entry, "entry", lambda p: bad(p.removeprefix("entry: ")))
    return entry


def _visit_to_yaml(visit: VisitFactors) -> dict[str, Any]:
    stars = {}
    for star, s in sorted(visit.stars.items()):
        factor: float | int | None = s.factor
        if factor is not None and s.method == "shape":
            factor = int(factor)
        stars[int(star)] = {"method": s.method, "factor": factor, "cdpp": s.cdpp,
                            "valid": bool(s.valid)}
    return {"settings": dict(visit.settings), "stars": stars}


_SCALARS = (str, int, float, bool, type(None))


def _check_settings(settings: Mapping[str, Any]) -> dict[str, Any]:
    if not isinstance(settings, Mapping):
        raise ValueError(f"settings must be a mapping, not {type(settings).__name__}")
    out: dict[str, Any] = {}
    for key, value in settings.items():
        if not isinstance(key, str):
            raise ValueError(f"settings key {key!r} must be a string")
        if isinstance(value, np.generic):
            value = value.item()
        if isinstance(value, (list, tuple)):
            value = [v.item() if isinstance(v, np.generic) else v for v in value]
            if not all(isinstance(v, _SCALARS) for v in value):
                raise ValueError(f"settings {key!r} must hold scalars, got {value!r}")
        elif not isinstance(value, _SCALARS):
            raise ValueError(f"settings {key!r} must be a scalar or a list of scalars, "
                             f"got {type(value).__name__}")
        out[key] = value
    return out


# --------------------------------------------------------------------------------------------
# Helpers
# --------------------------------------------------------------------------------------------

def _is_nan(value: Any) -> bool:
    try:
        return math.isnan(float(value))
    except (TypeError, ValueError):
        return False
