"""Home of the factor search's decision jobs (``search_jobs: factor``): after a round, the
stars that go on to a higher range (:func:`select_round_job`), and the plan of the circle
fine tune (:func:`plan_fine_tune_job`).

Each job stands on the workflow's critical path between two rounds of photometry jobs and
reads and writes only small text files, so it imports neither the photometry nor numba
nor astropy (0.16 s of imports instead of 0.65 s). The rules are in :mod:`archi.optimize`,
the files in :mod:`archi.io.search_files`; the measuring jobs are in :mod:`archi.search`.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from archi.io.search_files import read_cdpp_tables, write_decision, write_fine_plan
from archi.optimize import RoundDecision, decide_round, fine_tune_plan
from archi.options import Options

__all__ = ["plan_fine_tune_job", "select_round_job"]

Paths = Iterable[str | Path]


def select_round_job(tables: Paths, options: Options, round_index: int,
                     out_path: str | Path) -> RoundDecision:
    """The decision after a round, from every table so far."""
    decision = decide_round(read_cdpp_tables(tables), options, round_index)
    write_decision(out_path, decision)
    return decision


def plan_fine_tune_job(tables: Paths, options: Options, out_path: str | Path
                       ) -> dict[int, list[float]]:
    """The stars of the circle fine tune and the radii of each."""
    plan = fine_tune_plan(read_cdpp_tables(tables), options)
    write_fine_plan(out_path, plan)
    return plan
