"""Table-driven tests of the search's decisions (issue 18): which stars a round extends,
which circles reach a brighter star, and the decision files the workflow passes between
jobs. Each row states the expected outcome worked out by hand from the rule."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest

from archi.cdpp_table import CdppTable
from archi.errors import CorruptProductError
from archi.io.search_files import read_decision, write_decision
from archi.optimize import RoundDecision, decide_round
from archi.options import Options
from archi.runs import engulfs_brighter_star

OPTIONS = Options(val_range=(8, 20), step=2, optimization_extensions=2)
# round 0 grid 8..20 (edge: 16, 18, 20), round 1 20..40 (edge 36-40), round 2 40..80


def _runs(best_of_star: dict[int, float], grid: list[float], invalid=()) -> CdppTable:
    """CDPP = |factor - best| + 1: each star's minimum at its ``best``."""
    return CdppTable.from_rows([(s, f, abs(f - b) + 1.0, s not in invalid)
                                for s, b in best_of_star.items() for f in grid])


ROUND0 = [8.0 + 2 * i for i in range(7)]
ROUND1 = [20.0 + 2 * i for i in range(11)]
ROUND2 = [40.0 + 2 * i for i in range(21)]


@pytest.mark.parametrize("round_index, grid, best, invalid, expected", [
    # best below the top three grid values -> converged; at them -> extended
    (0, ROUND0, {0: 14, 1: 16, 2: 20}, (), dict(converged=[0], extend=[1, 2],
                                               new_range=(20.0, 40.0))),
    # a star without a valid run never extends
    (0, ROUND0, {0: 20, 1: 20}, (1,), dict(extend=[0], invalid=[1], new_range=(20.0, 40.0))),
    # round 1: its own edge is 36-40
    (1, ROUND1, {0: 34, 1: 36}, (), dict(converged=[0], extend=[1], new_range=(40.0, 80.0))),
    # the last round allowed: at the edge means at_limit, nothing extends
    (2, ROUND2, {0: 80, 1: 50}, (), dict(at_limit=[0], converged=[1], new_range=None)),
])
def test_round_decisions(round_index, grid, best, invalid, expected):
    decision = decide_round(_runs(best, grid, invalid), OPTIONS, round_index)
    for kind in ("extend", "converged", "at_limit", "invalid"):
        assert getattr(decision, kind) == expected.get(kind, []), kind
    assert decision.new_range == expected["new_range"]
    assert decision.done == (expected["new_range"] is None)


def _prepared(x, y, brightness, method="circle"):
    return SimpleNamespace(
        options=Options(method=method), stars=SimpleNamespace(brightness=np.array(brightness)),
        tracks=SimpleNamespace(x=np.array(x)[:, None], y=np.array(y)[:, None]))


@pytest.mark.parametrize("factors, expected", [
    ({1: 9.9}, {1: False}),  # 10 px from the brighter star 0: a 9.9 px circle misses it
    ({1: 10.1}, {1: True}),  # 10.1 px reaches its centre
    ({1: 25.0}, {1: True}),
    ({0: 25.0}, {0: False}),  # star 0 is the brightest: it can engulf only fainter ones
    ({2: 30.0}, {2: True}),  # star 2 (faintest, 20 px from star 1) reaches stars 0 and 1
    ({2: 15.0}, {2: False}),
])
def test_a_circle_over_a_brighter_stars_centre(factors, expected):
    prepared = _prepared([100.0, 110.0, 130.0], [100.0, 100.0, 100.0], [1e6, 1e5, 1e4])
    assert engulfs_brighter_star(prepared, factors) == expected


def test_shape_masks_are_never_judged_by_a_radius():
    prepared = _prepared([100.0, 101.0], [100.0, 100.0], [1e6, 1e5], method="shape")
    assert engulfs_brighter_star(prepared, {1: 40.0}) == {1: False}


def test_a_decision_file_round_trips_with_a_star_without_valid_run(tmp_path):
    decision = RoundDecision(1, [3], {0: 14.0, 3: 38.0, 5: float("nan")})
    write_decision(tmp_path / "round1.yaml", decision)
    back = read_decision(tmp_path / "round1.yaml")
    assert (back.round_index, back.extend) == (1, [3])
    assert back.best[0] == 14.0 and back.best[3] == 38.0 and np.isnan(back.best[5])


@pytest.mark.parametrize("content", [
    "",  # empty
    "round: 1\nextend: [3]\n",  # no best
    "round: one\nextend: []\nbest: {}\n",  # not a number
    "round: 1\nextend: [3\n",  # not YAML
    "- a list\n",
])
def test_a_corrupt_decision_file_is_a_one_line_error_naming_it(tmp_path, content):
    path = tmp_path / "round1.yaml"
    path.write_text(content)
    with pytest.raises(CorruptProductError) as err:
        read_decision(path)
    assert str(path) in str(err.value) and "\n" not in str(err.value)


def test_a_missing_decision_file_is_an_error_naming_it(tmp_path):
    with pytest.raises(CorruptProductError, match="round9.yaml"):
        read_decision(tmp_path / "round9.yaml")


def test_a_fine_tune_plan_round_trips_and_a_corrupt_one_names_its_file(tmp_path):
    from archi.io.search_files import read_fine_plan, write_fine_plan

    write_fine_plan(tmp_path / "plan.yaml", {0: [13.9, 14.1], 4: [8.0]})
    assert read_fine_plan(tmp_path / "plan.yaml") == {0: [13.9, 14.1], 4: [8.0]}
    (tmp_path / "empty.yaml").write_text("")
    assert read_fine_plan(tmp_path / "empty.yaml") == {}
    (tmp_path / "bad.yaml").write_text("0: [13.9,\n")
    with pytest.raises(CorruptProductError) as err:
        read_fine_plan(tmp_path / "bad.yaml")
    assert "bad.yaml" in str(err.value) and "\n" not in str(err.value)
