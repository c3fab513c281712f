"""Home of the mask factor: its rounding, its canonical text (file names) and its grids.

The "factor" of a mask is the circle radius in pixels (``circle``, fractional allowed) or the
number of pixel layers grown around the star's contour (``shape``, integer). Factors are
rounded to :data:`FACTOR_DECIMALS` decimals everywhere, so that ``0.1 + 0.2`` is ``0.3`` and
file names built with :func:`format_factor` are stable.

A bad option (range, step) raises :class:`~archi.errors.ConfigError`; a bad in-memory value
(a factor that is not a number, a negative star index) raises ``ValueError``.
"""

from __future__ import annotations

import math
import re
from typing import Any

import numpy as np

from archi.errors import ConfigError

FACTOR_DECIMALS = 6
"""Factors are rounded to this many decimals (1e-6 px or layer): removes float drift."""

MAX_GRID_SIZE = 10_000
"""Largest number of factors :func:`factor_grid` accepts (each factor is one photometry job)."""

STEP_TOLERANCE = 1e-6
"""Relative tolerance (in units of the step) for "is this value on the grid / at the edge".
Grid values are multiples of the step rounded to 1e-6, so 1e-6 of a step can never confuse
two neighbouring grid values, and it absorbs float drift such as 1.0 - 2 * 0.1."""

_CANONICAL_FACTOR = re.compile(r"\A(0|[1-9][0-9]*)(\.[0-9]*[1-9])?\Z")


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
    return f"{round_factor(value):.{FACTOR_DECIMALS}f}".rstrip("0").rstrip(".")


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


def check_star_index(star: Any) -> int:
    """``star`` as an int; ``ValueError`` unless it is an integer >= 0."""
    if isinstance(star, bool) or not isinstance(star, (int, np.integer)) or star < 0:
        raise ValueError(f"star index {star!r} must be an integer >= 0")
    return int(star)


def check_step(step: float, name: str = "step") -> float:
    """``step`` as a float; ConfigError unless finite and at least 1e-6 (one factor unit)."""
    try:
        step = float(step)
    except (TypeError, ValueError):
        raise ConfigError(f"{name} {step!r} is not a number") from None
    if not math.isfinite(step) or step < 10.0 ** -FACTOR_DECIMALS:
        raise ConfigError(f"{name} {step!r} must be a finite number >= 1e-{FACTOR_DECIMALS}")
    return step


def check_range(val_range: tuple[float, float]) -> tuple[float, float]:
    """``(low, high)`` as floats; ConfigError unless ``0 <= low <= high``, both finite."""
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
    low, high = check_range(val_range)
    step = check_step(step)
    count = math.floor((high - low) / step + STEP_TOLERANCE) + 1
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
    previous maximum to twice the previous maximum. This is the range
    :func:`archi.optimize.plan_extension` returns, so a workflow can name its rounds in advance.
    """
    low, high = check_range(val_range)
    if isinstance(round_index, bool) or not isinstance(round_index, (int, np.integer)) \
            or round_index < 0:
        raise ConfigError(f"round index {round_index!r} must be an integer >= 0")
    if round_index == 0:
        return round_factor(low), round_factor(high)
    return round_factor(high * 2 ** (round_index - 1)), round_factor(high * 2 ** round_index)
