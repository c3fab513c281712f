"""Home of the factor search's rules: which factors to measure, what to do after a round,
which factor each star keeps. Pure functions of CDPP tables and options (no files, no
photometry: :mod:`archi.runs` measures, :mod:`archi.io.search_files` stores).

Each star's mask factor is chosen by minimising its CDPP over a grid of factors:

1. Round 0 measures every star over ``factor_grid(val_range, step)`` (:func:`round_factors`).
2. After each round, :func:`decide_round` (the rule is in :func:`plan_extension`'s
   docstring) decides which stars are measured again over a higher range: round ``k``
   searches ``(max, 2 max)`` of round ``k - 1`` (:func:`archi.factors.range_for_round`).
3. When no star needs another round, stars whose method is ``circle`` are fine-tuned around
   their best radius (:func:`fine_tune_plan`, :func:`fine_tune_grid`).
4. :func:`choose` takes each star's best run over the union of every table, with a
   fallback for stars without a valid run.

Stars measured by PSF fits (``method: psf``, :mod:`archi.psfphot`) have no mask: they are
not searched (:func:`searched_stars`) and get no factor (:func:`choose_every_star`).

A bad option raises :class:`~archi.errors.ConfigError`; a bad in-memory argument
``ValueError``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np

from archi.cdpp_table import CdppTable
from archi.errors import ConfigError
from archi.factors import (
    STEP_TOLERANCE,
    check_range,
    check_step,
    factor_grid,
    range_for_round,
    round_factor,
)
from archi.options import Options


def round_range(options: Options, round_index: int) -> tuple[float, float]:
    """Factor range of a round: val_range, then (max, 2 max), (2 max, 4 max), ..."""
    return range_for_round(options.val_range, round_index)


def round_factors(options: Options, round_index: int) -> list[float]:
    """Factors measured in a round (an extension round skips its first factor, the previous
    round's maximum, which is already measured)."""
    grid = factor_grid(round_range(options, round_index), options.step)
    return grid if round_index == 0 else grid[1:]


@dataclass(frozen=True)
class RoundDecision:
    """What to do after a round of the factor search (see :func:`plan_extension`).

    Every star of the table is in exactly one of ``extend``, ``converged``, ``at_limit``,
    ``invalid``. The decision file (:func:`archi.io.search_files.write_decision`) keeps
    ``round_index``, ``extend`` and ``best`` only.
    """

    round_index: int
    """The round just finished (0 = the configured ``val_range``)."""
    extend: list[int]
    """Stars to measure over ``new_range`` in round ``round_index + 1``."""
    best: dict[int, float]
    """Best factor so far per star (NaN: no valid run)."""
    new_range: tuple[float, float] | None = None
    """``(previous max, 2 * previous max)`` when some star is extended, else ``None``."""
    converged: list[int] = field(default_factory=list)
    """Stars whose best factor is below the top edge: finished, not measured again."""
    at_limit: list[int] = field(default_factory=list)
    """Stars still at the top edge but no extension left: finished without converging."""
    invalid: list[int] = field(default_factory=list)
    """Stars without any valid run so far: finished, never trigger an extension."""

    @property
    def done(self) -> bool:
        """True when no star needs another round."""
        return not self.extend

    @property
    def next_round(self) -> int | None:
        """Index of the next round, or ``None`` when done."""
        return None if self.done else self.round_index + 1


def _check_rounds(round_index: int, max_extensions: int) -> None:
    for name, value in (("optimization_extensions", max_extensions), ("round index", round_index)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 0:
            raise ConfigError(f"{name} {value!r} must be an integer >= 0")
    if round_index > max_extensions:
        raise ConfigError(f"round index {round_index} is beyond optimization_extensions "
                          f"{max_extensions}")


def plan_extension(table: CdppTable, current_range: tuple[float, float], step: float,
                   round_index: int, max_extensions: int) -> RoundDecision:
    """Decide which stars are searched again over a higher factor range.

    ``table`` holds the CDPP runs measured so far (all rounds may be included; only each
    star's best over the whole table matters). ``current_range`` is the range of round
    ``round_index`` (0 = the configured ``val_range``; round ``k`` is the ``k``-th extension).

    Rule, per star, with ``best`` its :meth:`CdppTable.best` run and
    ``top`` = the largest value of ``factor_grid(current_range, step)``:

    * no valid run -> ``invalid`` (never triggers an extension);
    * ``best < top - 2*step - 1e-6*step`` -> ``converged`` (not measured again);
    * otherwise (best is one of the top three grid values ``top - 2*step``, ``top - step``,
      ``top``, or above, with a tolerance of 1e-6 step for float drift) the star is at the top
      edge: if ``round_index < max_extensions`` -> ``extend``, else -> ``at_limit``.

    The new range is ``(high, 2 * high)`` with ``high = current_range[1]``: from the previous
    maximum to twice the previous maximum (archi's documented rule; archi's code shifted the
    range by ``span - 2*step`` instead). Hence at most ``max_extensions`` extension rounds
    (archi ran one more). Round ``k``'s range is :func:`archi.factors.range_for_round`.

    Raises :class:`~archi.errors.ConfigError` for a bad range/step, a negative
    ``max_extensions``, ``round_index`` outside ``0..max_extensions``, or a range whose
    doubling would add no new factor (``high < step``).
    """
    low, high = check_range(current_range)
    step = check_step(step)
    _check_rounds(round_index, max_extensions)
    threshold = factor_grid((low, high), step)[-1] - 2 * step - STEP_TOLERANCE * step
    best = table.best()
    kinds: dict[str, list[int]] = {"extend": [], "converged": [], "at_limit": [], "invalid": []}
    for star, factor, _, valid in best.rows():
        if not valid:
            kinds["invalid"].append(star)
        elif factor < threshold:
            kinds["converged"].append(star)
        else:
            kinds["extend" if round_index < max_extensions else "at_limit"].append(star)
    new_range = None
    if kinds["extend"]:
        new_range = (round_factor(high), round_factor(2 * high))
        if factor_grid(new_range, step)[-1] <= round_factor(high):
            raise ConfigError(f"cannot extend the range {[low, high]}: doubling its maximum "
                              f"adds no factor with step {step}")
    return RoundDecision(round_index=int(round_index), new_range=new_range,
                         best={star: factor for star, factor, _, _ in best.rows()}, **kinds)


def decide_round(table: CdppTable, options: Options, round_index: int) -> RoundDecision:
    """Decision after ``round_index`` from every CDPP table measured so far."""
    return plan_extension(table, round_range(options, round_index), options.step,
                          round_index, options.optimization_extensions)


def fine_tune_grid(best: float, step: float = 0.1, halfwidth: float = 1.0,
                   minimum: float = 1.0) -> list[float]:
    """Radii ``best - halfwidth ... best + halfwidth`` in steps of ``step`` (21 values by default).

    Centred on the best radius itself (archi truncated it to an integer first). Values below
    ``minimum`` (default 1 px: a smaller circle holds at most the central pixel, and archi's
    grid could reach 0) are dropped; ``best`` must be at least ``minimum``, so the grid is
    never empty. ``halfwidth`` is rounded down to a whole number of steps (within 1e-6 step).
    """
    best = round_factor(best)
    step = check_step(step, "fine-tune step")
    if not math.isfinite(halfwidth) or halfwidth < 0:
        raise ConfigError(f"fine-tune half-width {halfwidth!r} must be a finite number >= 0")
    if not math.isfinite(minimum) or minimum < 0:
        raise ConfigError(f"fine-tune minimum {minimum!r} must be a finite number >= 0")
    if best < minimum:
        raise ValueError(f"best radius {best} is below the fine-tune minimum {minimum}")
    n = math.floor(halfwidth / step + STEP_TOLERANCE)
    grid = (round_factor(max(best + i * step, 0.0)) for i in range(-n, n + 1))
    return [v for v in grid if v >= minimum - STEP_TOLERANCE * step]


def fine_tune_plan(table: CdppTable, options: Options) -> dict[int, list[float]]:
    """Star -> radii of its fine tune (:func:`fine_tune_grid` around its best radius), for the
    stars whose method is ``circle`` and whose best run is valid (none unless
    ``options.fine_tune_circle``); radii the table already holds for that star (the best,
    the grid's own points) are not run again, and a star left without radii is left out.
    The measured fine-tune runs go into ordinary CDPP tables; :func:`choose` on the union of
    grid and fine-tune tables then gives the final factors."""
    if not options.fine_tune_circle or not len(table):
        return {}
    measured = set(zip(table.star.tolist(), table.factor.tolist()))
    plan = {}
    for star, factor, _, valid in table.best().rows():
        if options.star_method(star) == "circle" and valid:
            radii = [r for r in fine_tune_grid(factor) if (star, r) not in measured]
            if radii:
                plan[star] = radii
    return plan


def fine_tune_parts(plan: Mapping[int, list[float]], jobs: int) -> list[list[int]]:
    """The stars of each fine-tune job: at most ``jobs`` parts of nearly equal size (fewer
    when there are fewer stars), in star order. Few parts pay the start-up cost of a job
    (interpreter, imports, reading the cube) few times; many parts run in parallel."""
    if jobs < 1:
        raise ValueError(f"fine-tune jobs must be >= 1, got {jobs}")
    stars = sorted(plan)
    n = min(jobs, len(stars))
    return [[int(s) for s in part] for part in np.array_split(stars, n)] if n else []


def choose(table: CdppTable) -> tuple[dict[int, float], dict[int, float], dict[int, bool]]:
    """Each star's factor, its CDPP and whether it is valid: the best valid run. The
    fallback of a star with no valid run (every mask out of the field, over a brighter star
    or too contaminated, or a visit too short for the metric: :data:`K2_MIN_FRAMES`): the
    smallest factor it was measured with (every invalid run scores the same penalty), the
    least exposed to the field's edge and its neighbours; ``valid`` False and its CDPP NaN,
    never a placeholder number."""
    factors, cdpp, valid = {}, {}, {}
    for star, factor, value, ok in table.best().rows():
        if not ok:
            mine = np.flatnonzero(table.star == star)
            first = mine[np.lexsort((table.factor[mine], table.cdpp[mine]))[0]]
            factor, value = float(table.factor[first]), math.nan
        factors[star], cdpp[star], valid[star] = factor, value, ok
    return factors, cdpp, valid


def searched_stars(options: Options, n_stars: int) -> list[int]:
    """The stars whose mask factor is searched: all but those measured by PSF fits
    (``method: psf``, no mask)."""
    return [j for j in range(n_stars) if options.star_method(j) != "psf"]


def choose_every_star(table: CdppTable, options: Options, n_stars: int
                      ) -> tuple[dict[int, float], dict[int, float], dict[int, bool]]:
    """:func:`choose` for the searched stars, and every ``psf`` star with factor and CDPP
    NaN, valid (it has no mask to choose)."""
    factors, cdpp, valid = choose(table) if len(table) else ({}, {}, {})
    for j in set(range(n_stars)) - set(searched_stars(options, n_stars)):
        factors[j], cdpp[j], valid[j] = math.nan, math.nan, True
    return dict(sorted(factors.items())), dict(sorted(cdpp.items())), dict(sorted(valid.items()))


K2_MIN_FRAMES = 41
"""Good frames the K2 CDPP needs (its Savitzky-Golay window, :func:`archi.noise.k2_cdpp`):
a shorter visit cannot be scored by it."""


def search_warnings(visit_key: str, options: Options, valid: Mapping[int, bool],
                    factors: Mapping[int, float], good_frames: int) -> list[str]:
    """One-line warnings about a search's choice: a visit with fewer good frames than the
    K2 CDPP needs (every star then takes the fallback of :func:`choose`), or the stars with
    no valid run and their fallback factors. Empty when every star is valid."""
    invalid = sorted(j for j, ok in valid.items() if not ok)
    if not invalid:
        return []
    fallback = "valid: false, CDPP NaN"
    if options.CDPP_type.upper() == "K2" and good_frames < K2_MIN_FRAMES:
        return [f"{visit_key}: {good_frames} good frames, fewer than the {K2_MIN_FRAMES} the "
                f"K2 CDPP needs: every star takes the smallest factor searched ({fallback})"]
    listed = ", ".join(f"{j} ({factors.get(j, math.nan):g})" for j in invalid)
    return [f"{visit_key}: star(s) {listed} have no valid run (every mask out of the field, "
            f"over a brighter star, too contaminated or not scored by the metric): fallback "
            f"factor in brackets ({fallback})"]
