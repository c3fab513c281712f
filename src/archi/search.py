"""Home of the factor search's workflow jobs (``search_jobs: factor``): each function is the
work of one job, from its input files to its output files.

Round 0 measures every star at each factor of the grid, one job per factor
(:func:`photometry_job`); after each round a decision
(:func:`archi.search_decisions.select_round_job`) names the stars measured again over a
higher range; then the circle fine tune is planned
(:func:`archi.search_decisions.plan_fine_tune_job`) and measured in a few jobs
(:func:`fine_tune_job`); finally every star's factor is chosen (:func:`choose_factors_job`). The rules are in
:mod:`archi.optimize`, the measurements in :mod:`archi.runs`, the files in
:mod:`archi.io.search_files`. These jobs import no pandas: a per-factor job measures for
a fraction of a second.
"""

from __future__ import annotations

import dataclasses
import warnings
from collections.abc import Iterable
from pathlib import Path

import numpy as np

from archi import runs
from archi.cdpp_table import CdppTable
from archi.factors import parse_factor
from archi.framequality import paged
from archi.io import read_visit
from archi.io.factors_file import write_search_factors
from archi.io.prepared import read_prepared
from archi.io.search_files import (
    read_cdpp_tables,
    read_decision,
    read_fine_plan,
    write_cdpp_table,
)
from archi.optimize import (
    choose_every_star,
    fine_tune_parts,
    round_factors,
    search_warnings,
    searched_stars,
)
from archi.options import Options
from archi.prepared import Prepared
from archi.visit import Visit

# read_decision and round_factors are here too: the workflow walks the rounds with them
__all__ = ["choose_factors_job", "fine_tune_job", "photometry_job", "read_decision",
           "round_factors"]

Paths = Iterable[str | Path]


def _visit_of(prepared: Prepared) -> Visit:
    # archi.io's reader, not archi.api.load_visit: a per-factor job then imports none of
    # the detection, field fitting and writers that api pulls in (~0.2 s)
    visit = read_visit(prepared.visit_folder, layout=prepared.layout,
                       aperture=prepared.options.official_curve)
    return dataclasses.replace(visit, cube=paged(visit.cube))  # one chunk held at a time


def photometry_job(prepared_path: str | Path, factor: str, decisions: Paths,
                   out_path: str | Path) -> CdppTable:
    """The CDPP table of one factor (its canonical text) of a search round: every star with
    a mask (not ``psf``) in round 0, the stars the last decision extended (``decisions``: its
    file) later."""
    prepared = read_prepared(prepared_path)
    decisions = list(decisions)
    stars = (read_decision(decisions[0]).extend if decisions
             else searched_stars(prepared.options, prepared.stars.n_stars))
    table = runs.cdpp_table(_visit_of(prepared), prepared, parse_factor(factor), stars=stars)
    write_cdpp_table(table, out_path)
    return table


def fine_tune_job(prepared_path: str | Path, plan_path: str | Path, jobs: int, part: int,
                  out_path: str | Path) -> CdppTable:
    """The fine-tune CDPP table of part ``part`` of ``jobs`` of the planned stars (one pass
    over the cube)."""
    prepared = read_prepared(prepared_path)
    plan = read_fine_plan(plan_path)
    stars = fine_tune_parts(plan, jobs)[part]
    table = runs.factor_table(_visit_of(prepared), prepared, {star: plan[star] for star in stars})
    write_cdpp_table(table, out_path)
    return table


def choose_factors_job(tables: Paths, prepared_path: str | Path, options: Options,
                       factors_path: str | Path, table_path: str | Path
                       ) -> tuple[dict[int, float], dict[int, float], dict[int, bool]]:
    """Every star's factor from all runs: the table of all runs and the factors file
    (``psf`` stars: no factor)."""
    prepared = read_prepared(prepared_path)
    table = CdppTable.merge([read_cdpp_tables(tables)])
    factors, cdpp, valid = choose_every_star(table, options, prepared.stars.n_stars)
    write_cdpp_table(table, table_path)
    write_search_factors(factors_path, options, prepared.visit_key, factors, cdpp, valid)
    good = int(np.count_nonzero(~prepared.frame_quality().excluded))
    for line in search_warnings(prepared.visit_key, options, valid, factors, good):
        warnings.warn(line, stacklevel=2)
    return factors, cdpp, valid
