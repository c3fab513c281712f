"""The factor search as a sequence of decisions, shared by the workflow and the API.

Round 0 measures every star over ``factor_grid(val_range, step)``. After each round a
decision is taken on all tables so far (:func:`decide_round`): stars whose best factor lies
within two steps of the top of the round's range are measured again over
``(previous max, 2 x previous max)`` (at most ``optimization_extensions`` rounds); the others
have converged. When no star needs another round, circles are fine-tuned: best +/- 1 px in
0.1-px steps (:func:`fine_tune_plan`: one job per star, all its radii in one pass).

A decision is a small YAML file, so each round can be a Snakemake checkpoint.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import yaml

from archi import optimize as opt
from archi._lazy import LazyModule
from archi.errors import CorruptProductError
from archi.options import Options

if TYPE_CHECKING:
    import pandas as pd
else:  # per-factor jobs write their tables without pandas (see archi._lazy)
    pd = LazyModule("pandas")


def round_range(options: Options, round_index: int) -> tuple[float, float]:
    """Factor range of a round: val_range, then (max, 2 max), (2 max, 4 max), ..."""
    return opt.range_for_round(options.val_range, round_index)


def round_factors(options: Options, round_index: int) -> list[float]:
    """Factors measured in a round (an extension round skips its first factor, the previous
    round's maximum, which is already measured)."""
    grid = opt.factor_grid(round_range(options, round_index), options.step)
    return grid if round_index == 0 else grid[1:]


@dataclass(frozen=True)
class RoundDecision:
    """What to do after a round."""

    round_index: int
    extend: list[int]  # stars to measure in round ``round_index + 1``
    best: dict[int, float]  # best factor so far per star (NaN: no valid run)

    @property
    def done(self) -> bool:
        return not self.extend


def decide_round(table: pd.DataFrame, options: Options, round_index: int) -> RoundDecision:
    """Decision after ``round_index`` from every CDPP table measured so far."""
    plan = opt.plan_extension(table, round_range(options, round_index), options.step,
                              round_index, options.optimization_extensions)
    best = opt.best_factors(table)
    extend = sorted(int(s) for s in plan.extend) if not plan.done else []
    return RoundDecision(round_index, extend,
                         {int(r.star): float(r.factor) for r in best.itertuples()})


def write_decision(path: str | Path, decision: RoundDecision) -> None:
    text = yaml.safe_dump({"round": decision.round_index, "extend": decision.extend,
                           "done": decision.done,
                           "best": {k: (None if v != v else v)
                                    for k, v in decision.best.items()}}, sort_keys=False)
    from archi.io.atomic import atomic_path  # lazy: astropy slows Snakemake's start

    with atomic_path(path) as tmp:
        Path(tmp).write_text(text)


def read_decision(path: str | Path) -> RoundDecision:
    path = Path(path)
    try:
        doc = yaml.safe_load(path.read_text())
        return RoundDecision(int(doc["round"]), [int(s) for s in doc["extend"]],
                             {int(k): (float("nan") if v is None else float(v))
                              for k, v in doc["best"].items()})
    except (OSError, KeyError, TypeError, ValueError, yaml.YAMLError) as exc:
        raise CorruptProductError(path, f"not a round decision ({exc})") from None


def fine_tune_plan(table: pd.DataFrame, options: Options) -> dict[int, list[float]]:
    """Star -> radii of its fine tune (circles whose best run is valid), one job per star;
    radii the grid already measured (the best, the grid's own points) are not run again."""
    if not options.fine_tune_circle or not len(table):
        return {}
    n_stars = int(table.star.max()) + 1
    methods = {j: options.star_method(j) for j in range(n_stars)}
    plan = opt.fine_tune_plan(opt.best_factors(table), methods)
    measured = {(int(j), opt.round_factor(f)) for j, f in zip(table.star, table.factor)}
    plan = {int(star): [r for r in map(opt.round_factor, radii)
                        if (int(star), r) not in measured]
            for star, radii in sorted(plan.items())}
    return {star: radii for star, radii in plan.items() if radii}


def fine_tune_parts(plan: dict[int, list[float]], jobs: int) -> list[list[int]]:
    """The stars of each fine-tune job: at most ``jobs`` parts of nearly equal size (fewer
    when there are fewer stars), in star order. Few parts pay the start-up cost of a job
    (interpreter, imports, reading the cube) few times; many parts run in parallel."""
    if jobs < 1:
        raise ValueError(f"fine-tune jobs must be >= 1, got {jobs}")
    stars = sorted(plan)
    n = min(jobs, len(stars))
    return [[int(s) for s in part] for part in np.array_split(stars, n)] if n else []


def merge_tables(tables: list[pd.DataFrame]) -> pd.DataFrame:
    """All runs, one row per (star, factor) (rounds overlap at their edges)."""
    if not tables:
        return opt.make_cdpp_table({}, {})
    merged = pd.concat(tables, ignore_index=True)
    merged = merged.drop_duplicates(subset=["star", "factor"], keep="first")
    return merged.sort_values(["star", "factor"]).reset_index(drop=True)
