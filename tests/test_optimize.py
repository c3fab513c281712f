"""Tests of the factor search: factors and grids (archi.factors), CDPP tables
(archi.cdpp_table, archi.io.search_files), best factors, extension rule and fine tune
(archi.optimize), factors file (archi.io.factors_file)."""

from __future__ import annotations

import math
import os
from pathlib import Path

import numpy as np
import pandas as pd  # only to check that the files are byte for byte what pandas wrote
import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from archi.cdpp_table import COLUMNS as CDPP_TABLE_COLUMNS
from archi.cdpp_table import CdppTable
from archi.errors import (
    ArchiError,
    ConfigError,
    CorruptProductError,
    ProductNotFoundError,
)
from archi.factors import (
    factor_grid,
    format_factor,
    parse_factor,
    range_for_round,
    round_factor,
)
from archi.io import search_files
from archi.io.factors_file import (
    optimized_factors_for,
    read_optimized_factors,
    write_optimized_factors,
)
from archi.io.search_files import read_cdpp_tables, write_cdpp_table
from archi.noise import INVALID_CDPP
from archi.optimize import fine_tune_grid, fine_tune_plan, plan_extension
from archi.options import Options


def table(rows):
    return CdppTable.from_rows(rows)


def leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.endswith(".tmp"))


# ---------------------------------------------------------------------------- grid and names

def test_grid_has_no_float_drift_and_includes_both_ends():
    grid = factor_grid((0.1, 1.0), 0.1)
    assert grid == [0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0]
    assert [format_factor(f) for f in grid][:3] == ["0.1", "0.2", "0.3"]
    assert factor_grid([1, 10], 1) == [float(i) for i in range(1, 11)]
    assert factor_grid((2.5, 3.0), 0.25) == [2.5, 2.75, 3.0]


def test_grid_stops_below_an_upper_end_off_the_grid():
    assert factor_grid((1, 10), 2) == [1, 3, 5, 7, 9]
    assert factor_grid((4, 4), 1) == [4.0]


@pytest.mark.parametrize("val_range, step", [((5, 1), 1), ((-1, 3), 1), ((1, 3), 0), ((1, 3), -1),
                                             ((1, float("nan")), 1), ((1, 3), "a"), ((0, 1e6), 1e-6)])
def test_grid_rejects_bad_options(val_range, step):
    with pytest.raises(ConfigError):
        factor_grid(val_range, step)


def test_format_and_parse_factor():
    assert format_factor(3.0) == "3"
    assert format_factor(3) == "3"
    assert format_factor(3.1) == "3.1"
    assert format_factor(0.1 + 0.2) == "0.3"
    assert format_factor(0.0) == "0"
    assert format_factor(10.25) == "10.25"
    assert parse_factor("3") == 3.0
    assert parse_factor("3.1") == 3.1
    assert parse_factor("0.3") == 0.3
    for bad in ["3.10", "03", "3.", ".5", "1e3", "-1", "+1", " 3", "3 ", "", "abc", "0.0"]:
        with pytest.raises(ValueError):
            parse_factor(bad)
    for bad in [-1, float("nan"), float("inf"), "x", None]:
        with pytest.raises(ValueError):
            format_factor(bad)


def test_every_grid_value_round_trips_through_its_name():
    for val_range, step in [((0.1, 5), 0.1), ((1, 40), 1), ((0.05, 2), 0.05), ((1, 3), 1 / 3)]:
        grid = factor_grid(val_range, step)
        names = [format_factor(f) for f in grid]
        assert len(set(names)) == len(grid)
        assert [parse_factor(n) for n in names] == grid


@settings(max_examples=200, deadline=None)
@given(st.floats(min_value=0, max_value=1e6, allow_nan=False))
def test_format_parse_round_trip_property(x):
    assert parse_factor(format_factor(x)) == round_factor(x)
    assert format_factor(parse_factor(format_factor(x))) == format_factor(x)


def test_range_for_round_doubles_the_maximum():
    assert range_for_round((1, 10), 0) == (1, 10)
    assert range_for_round((1, 10), 1) == (10, 20)
    assert range_for_round((1, 10), 2) == (20, 40)
    assert range_for_round((1, 10), 3) == (40, 80)
    with pytest.raises(ConfigError):
        range_for_round((1, 10), -1)


def star_methods(method, stars):
    return {j: Options(method=method).star_method(j) for j in stars}


def test_star_methods():
    assert star_methods("circle", [0, 1, 2]) == {0: "circle", 1: "circle", 2: "circle"}
    assert star_methods("circle+shape", [2, 0, 1]) == {2: "shape", 0: "circle", 1: "shape"}
    assert star_methods("shape+circle", [0, 1]) == {0: "shape", 1: "circle"}
    for bad in ["circles", "circle+square", "circle+shape+circle", "", 3]:
        with pytest.raises(ConfigError):
            star_methods(bad, [0])


# ---------------------------------------------------------------------------- CDPP tables

def test_make_cdpp_table_penalises_invalid_runs():
    cdpp = {1: 250.0, 0: 100.0, 2: float("nan"), 3: 80.0}
    valid = {0: True, 1: False, 2: True, 3: True}
    t = CdppTable.from_runs([(j, 3.1, cdpp[j], valid[j]) for j in cdpp]).sorted()
    assert t["star"].tolist() == [0, 1, 2, 3]
    assert t["factor"].tolist() == [3.1] * 4
    assert t["cdpp"].tolist() == [100.0, INVALID_CDPP, INVALID_CDPP, 80.0]
    assert t["valid"].tolist() == [True, False, False, True]
    per_star = CdppTable.from_runs([(0, 9.9, 1.0, True), (1, 4.2, 2.0, True)])
    assert per_star["factor"].tolist() == [9.9, 4.2]
    assert per_star["valid"].all()


def test_cdpp_table_round_trip(tmp_path):
    t = table([(1, 0.1 + 0.2, 123.456789012345, True), (0, 0.3, INVALID_CDPP, False),
               (0, 10.0, 1e-3, True)])
    path = tmp_path / "sub" / "cdpp_0.3.tsv"
    write_cdpp_table(t, path)
    text = path.read_text().splitlines()
    assert text[0] == "star\tfactor\tcdpp\tvalid"
    assert text[1].split("\t")[:2] == ["0", "0.3"]
    back = read_cdpp_tables([path])
    assert list(back.columns) == list(CDPP_TABLE_COLUMNS)
    assert back["star"].tolist() == [0, 0, 1]
    assert back["factor"].tolist() == [0.3, 10.0, 0.3]
    assert back["cdpp"].tolist() == [INVALID_CDPP, 1e-3, 123.456789012345]
    assert back["valid"].tolist() == [False, True, True]
    assert back["valid"].dtype == bool and back["star"].dtype == np.int64
    assert leftovers(path.parent) == []


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 30), st.sampled_from([0.1, 2.0, 21.3, 16.75, 8]),
                          st.floats(allow_nan=True, allow_infinity=True), st.booleans()),
                max_size=8, unique_by=lambda run: (run[0], run[1])))
def test_runs_are_written_without_pandas_as_pandas_wrote_them(tmp_path_factory, runs):
    """The tables are written without pandas: byte for byte the file pandas wrote
    (sorted rows, canonical factors, CDPP at full precision)."""
    folder = tmp_path_factory.mktemp("runs")
    table = CdppTable.from_runs(runs)
    write_cdpp_table(table, folder / "plain.tsv")
    frame = pd.DataFrame({c: table[c] for c in CDPP_TABLE_COLUMNS})
    frame = frame.sort_values(["star", "factor"], kind="mergesort")
    frame["factor"] = frame["factor"].map(format_factor)
    frame.to_csv(folder / "pandas.tsv", sep="\t", index=False, lineterminator="\n")
    assert (folder / "plain.tsv").read_bytes() == (folder / "pandas.tsv").read_bytes()
    assert leftovers(folder) == []


def test_job_modules_do_not_import_pandas():
    """What a per-factor job imports leaves pandas out (0.15 s a job), and so do the
    tables it makes, writes and reads."""
    import subprocess
    import sys

    code = ("import sys, tempfile; import archi.api, archi.search, archi.optimize, "
            "archi.prepared, archi.runs, archi.io.search_files as files; "
            "assert 'pandas' not in sys.modules, 'pandas imported'; "
            "t = archi.cdpp_table.CdppTable.from_runs([(0, 1.0, 5.0, True)]); "
            "p = tempfile.mkdtemp() + '/t.tsv'; files.write_cdpp_table(t.best(), p); "
            "files.read_cdpp_tables(p); "
            "assert 'pandas' not in sys.modules, 'pandas imported by the tables'")
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert run.returncode == 0, run.stderr


def test_read_several_tables_and_duplicates(tmp_path):
    a, b, c = tmp_path / "a.tsv", tmp_path / "b.tsv", tmp_path / "c.tsv"
    write_cdpp_table(table([(0, 1, 5.0, True), (1, 1, 6.0, True)]), a)
    write_cdpp_table(table([(0, 2, 4.0, True), (1, 1, 6.0, True)]), b)  # (1, 1) repeated, same
    write_cdpp_table(table([(1, 1, 7.0, True)]), c)  # (1, 1) repeated, different
    both = read_cdpp_tables([a, b, a])
    assert list(zip(both["star"], both["factor"])) == [(0, 1.0), (0, 2.0), (1, 1.0)]
    with pytest.raises(CorruptProductError, match="c.tsv.*star 1 factor 1"):
        read_cdpp_tables([a, c])
    assert len(read_cdpp_tables([])) == 0
    assert read_cdpp_tables(str(a))["star"].tolist() == [0, 1]


def test_read_cdpp_table_errors_name_the_file(tmp_path):
    missing_col = tmp_path / "missing_col.tsv"
    missing_col.write_text("star\tfactor\tcdpp\n0\t1\t5.0\n")
    with pytest.raises(CorruptProductError, match=r"missing_col\.tsv.*valid"):
        read_cdpp_tables([missing_col])

    empty = tmp_path / "empty.tsv"
    empty.write_text("")
    with pytest.raises(CorruptProductError, match="empty.tsv"):
        read_cdpp_tables([empty])

    binary = tmp_path / "binary.tsv"
    binary.write_bytes(b"\xff\xfe\x00\x81garbage\x00\n")
    with pytest.raises(CorruptProductError, match="binary.tsv"):
        read_cdpp_tables([binary])

    for name, line in [("badstar", "x\t1\t5\tTrue"), ("badfactor", "0\t1.50\t5\tTrue"),
                       ("badvalid", "0\t1\t5\tmaybe"), ("badcdpp", "0\t1\tfive\tTrue")]:
        f = tmp_path / f"{name}.tsv"
        f.write_text("star\tfactor\tcdpp\tvalid\n" + line + "\n")
        with pytest.raises(CorruptProductError, match=rf"{name}\.tsv: line 2"):
            read_cdpp_tables([f])

    with pytest.raises(ProductNotFoundError, match="nope.tsv"):
        read_cdpp_tables([tmp_path / "nope.tsv"])
    assert issubclass(CorruptProductError, ArchiError)


def test_write_cdpp_table_rejects_a_table_without_columns(tmp_path):
    with pytest.raises(ValueError, match="valid"):
        write_cdpp_table(CdppTable.from_columns({"star": [0], "factor": [1.0], "cdpp": [1.0]}),
                         tmp_path / "t.tsv")
    assert not (tmp_path / "t.tsv").exists()


def test_write_cdpp_table_is_atomic(tmp_path, monkeypatch):
    path = tmp_path / "t.tsv"
    write_cdpp_table(table([(0, 1, 5.0, True)]), path)
    before = path.read_text()

    def broken(factor):  # the header is written, then the first row fails
        raise RuntimeError("disk full")

    monkeypatch.setattr(search_files, "format_factor", broken)
    with pytest.raises(RuntimeError, match="disk full"):
        write_cdpp_table(table([(0, 2, 4.0, True)]), path)
    assert path.read_text() == before
    with pytest.raises(RuntimeError):
        write_cdpp_table(table([(0, 2, 4.0, True)]), tmp_path / "new.tsv")
    assert not (tmp_path / "new.tsv").exists()
    assert leftovers(tmp_path) == []


# ---------------------------------------------------------------------------- best factor

def test_best_factor_ties_invalid_runs_and_all_invalid_star():
    t = table([
        # star 0: tie between 3 and 5 -> 3; factor 4 is invalid with a lower (penalty-free) cdpp
        (0, 5, 100.0, True), (0, 3, 100.0, True), (0, 4, 50.0, False), (0, 6, 120.0, True),
        # star 1: best is the only valid one even though invalid rows have lower cdpp
        (1, 2, 1.0, False), (1, 7, 300.0, True), (1, 8, 5.0, False),
        # star 2: never valid
        (2, 1, INVALID_CDPP, False), (2, 2, INVALID_CDPP, False),
        # star 3: NaN cdpp marked valid is not usable
        (3, 1, float("nan"), True), (3, 2, 9.0, True),
    ])
    best = t.best()
    assert list(best.columns) == list(CDPP_TABLE_COLUMNS)
    assert best["star"].tolist() == [0, 1, 2, 3]
    assert best["factor"].tolist()[:2] == [3.0, 7.0]
    assert math.isnan(best["factor"][2])
    assert best["factor"][3] == 2.0
    assert best["cdpp"].tolist() == [100.0, 300.0, INVALID_CDPP, 9.0]
    assert best["valid"].tolist() == [True, True, False, True]


def test_best_factor_uses_fractional_factors_without_truncation():
    t = table([(0, 10.0, 5.0, True), (0, 10.3, 4.0, True), (0, 10.7, 4.5, True)])
    assert t.best()["factor"].tolist() == [10.3]


def test_best_factors_rejects_a_table_without_columns():
    with pytest.raises(ValueError, match="cdpp"):
        CdppTable.from_columns({"star": [0], "factor": [1.0], "valid": [True]}).best()


# ---------------------------------------------------------------------------- extension rule

def grid_table(stars_best: dict[int, float], val_range, step, invalid=()):
    """CDPP = |factor - optimum| + 1 per star, i.e. minimum at the star's optimum."""
    rows = []
    for f in factor_grid(val_range, step):
        for star, optimum in stars_best.items():
            ok = star not in invalid
            rows.append((star, f, abs(f - optimum) + 1.0 if ok else INVALID_CDPP, ok))
    return table(rows)


def test_extension_for_stars_at_the_top_edge_only():
    # grid 1..10: top three values are 8, 9, 10
    t = grid_table({0: 5, 1: 10, 2: 9, 3: 8, 4: 7, 5: 50}, (1, 10), 1, invalid={5})
    plan = plan_extension(t, (1, 10), 1, round_index=0, max_extensions=3)
    assert plan.extend == [1, 2, 3]
    assert plan.converged == [0, 4]
    assert plan.invalid == [5]
    assert plan.at_limit == []
    assert plan.new_range == (10.0, 20.0)
    assert factor_grid(plan.new_range, 1) == [float(i) for i in range(10, 21)]
    assert plan.next_round == 1 and not plan.done


def test_extension_edge_tolerates_float_drift():
    # grid 0.1..1.0 step 0.1: 1.0 - 2*0.1 = 0.8 (0.7999999999999999 in floats) must trigger
    t = grid_table({0: 0.8, 1: 0.7}, (0.1, 1.0), 0.1)
    plan = plan_extension(t, (0.1, 1.0), 0.1, 0, 2)
    assert plan.extend == [0]
    assert plan.converged == [1]
    assert plan.new_range == (1.0, 2.0)


def test_extension_edge_uses_the_last_grid_value_when_the_range_end_is_off_grid():
    # grid 1, 3, 5, 7, 9 (10 not on the grid): the top three are 5, 7, 9
    t = grid_table({0: 5, 1: 3}, (1, 10), 2)
    plan = plan_extension(t, (1, 10), 2, 0, 1)
    assert plan.extend == [0] and plan.converged == [1]
    assert plan.new_range == (10.0, 20.0)


def test_no_extension_when_nothing_is_at_the_edge():
    plan = plan_extension(grid_table({0: 2, 1: 4}, (1, 10), 1), (1, 10), 1, 0, 5)
    assert plan.done and plan.new_range is None and plan.next_round is None
    assert plan.converged == [0, 1]


def test_extension_stops_after_max_extensions():
    """A star whose CDPP keeps falling is searched exactly max_extensions more times."""
    optima = {0: 4, 1: 15, 2: 10_000}
    val_range, step, max_ext = (1, 10), 1, 3
    current, measured, round_index = val_range, [], 0
    active = list(optima)
    ranges = []
    while True:
        ranges.append(current)
        measured.append(grid_table({s: optima[s] for s in active}, current, step))
        plan = plan_extension(CdppTable.concat(measured), current, step,
                              round_index, max_ext)
        if plan.done:
            break
        assert plan.new_range == range_for_round(val_range, round_index + 1)
        active, current, round_index = list(plan.extend), plan.new_range, plan.next_round
    assert ranges == [(1, 10), (10, 20), (20, 40), (40, 80)]  # 1 + max_ext rounds
    assert round_index == max_ext
    assert plan.at_limit == [2]
    assert plan.converged == [0, 1]
    best = CdppTable.concat(measured).best()
    assert best["factor"].tolist() == [4.0, 15.0, 80.0]


def test_converged_star_is_not_extended_again_even_if_later_rounds_are_worse():
    # round 0 best of star 0 is at the edge (9); over 10..20 its cdpp is worse everywhere, so its
    # overall best stays 9, below the new edge: converged
    r0 = table([(0, f, 10.0 - f if f <= 9 else 5.0, True) for f in factor_grid((1, 10), 1)])
    r1 = table([(0, f, 2.0 + f, True) for f in factor_grid((10, 20), 1)])
    assert plan_extension(r0, (1, 10), 1, 0, 3).extend == [0]
    plan = plan_extension(CdppTable.concat([r0, r1]), (10, 20), 1, 1, 3)
    assert plan.converged == [0] and plan.done


def test_max_extensions_zero_means_no_extension():
    plan = plan_extension(grid_table({0: 10}, (1, 10), 1), (1, 10), 1, 0, 0)
    assert plan.done and plan.at_limit == [0]


@pytest.mark.parametrize("round_index, max_ext", [(4, 3), (-1, 3), (0, -1), (0, True), (0, 1.5)])
def test_extension_rejects_bad_round_numbers(round_index, max_ext):
    with pytest.raises(ConfigError):
        plan_extension(grid_table({0: 10}, (1, 10), 1), (1, 10), 1, round_index, max_ext)


def test_extension_rejects_a_range_that_cannot_grow():
    t = table([(0, 0.2, 1.0, True), (0, 0.5, 0.5, True)])
    with pytest.raises(ConfigError, match="cannot extend"):
        plan_extension(t, (0.2, 0.5), 1, 0, 2)


# ---------------------------------------------------------------------------- fine tune

def test_fine_tune_grid_values():
    grid = fine_tune_grid(10)
    assert len(grid) == 21
    assert grid[0] == 9.0 and grid[10] == 10.0 and grid[-1] == 11.0
    assert grid == [round(9 + i / 10, 6) for i in range(21)]
    assert [format_factor(v) for v in grid[:3]] == ["9", "9.1", "9.2"]
    # centred on a fractional best (archi truncated it to int)
    assert fine_tune_grid(10.3)[0] == 9.3 and fine_tune_grid(10.3)[-1] == 11.3
    # never below the minimum radius
    assert fine_tune_grid(1.3) == [round(1.0 + i / 10, 6) for i in range(14)]
    assert fine_tune_grid(1.0)[0] == 1.0
    assert fine_tune_grid(2, step=0.5, halfwidth=1.0, minimum=1.5) == [1.5, 2.0, 2.5, 3.0]
    with pytest.raises(ValueError):
        fine_tune_grid(0.5)
    with pytest.raises(ConfigError):
        fine_tune_grid(5, step=0)


def test_fine_tune_plan_only_for_valid_circle_stars():
    runs = table([(0, 10.0, 5.0, True), (1, 3.0, 6.0, True), (2, 4.0, INVALID_CDPP, False)])
    assert list(fine_tune_plan(runs, Options(method="circle+shape"))) == [0]
    plan = fine_tune_plan(runs, Options(method="circle"))
    assert list(plan) == [0, 1]
    assert plan[1][0] == 2.0
    assert 3.0 not in plan[1] and len(plan[1]) == 20  # the measured best is not run again
    assert fine_tune_plan(runs, Options(method="shape")) == {}
    assert fine_tune_plan(runs, Options(method="circle", fine_tune_circle=False)) == {}


def test_fine_tune_results_combine_with_the_grid():
    grid = table([(0, 9.0, 6.0, True), (0, 10.0, 5.0, True), (1, 3.0, 4.0, True)])
    tune_factors = {0: fine_tune_grid(10.0)}
    rows = []
    for f in tune_factors[0]:
        rows.append((0, f, 4.5 + abs(f - 10.4), True))
    best = CdppTable.concat([grid, table(rows)]).best()
    assert best["factor"].tolist() == [10.4, 3.0]


# ---------------------------------------------------------------------------- factors file

def test_factors_file_round_trip(tmp_path):
    path = tmp_path / "factors" / "optimized_factors.yaml"
    stored = write_optimized_factors(
        path, {0: 10.3, 1: 3.0, 2: float("nan")}, methods="circle+shape", visit_id="V1",
        cdpp={0: 150.5, 1: 800.0, 2: INVALID_CDPP},
        settings={"detect_mode": "dynam", "grid_bg": np.int64(0), "val_range": [1, 10]})
    write_optimized_factors(path, {0: 4, 1: 5}, methods={0: "shape", 1: "shape"}, visit_id="V0")
    visits = read_optimized_factors(path)
    assert sorted(visits) == ["V0", "V1"]
    v1 = visits["V1"]
    assert v1 == stored
    assert v1.factors == {0: 10.3, 1: 3.0, 2: None}
    assert v1.methods == {0: "circle", 1: "shape", 2: "shape"}
    assert v1.stars[0].cdpp == 150.5 and v1.stars[0].valid
    assert v1.stars[2].valid is False and v1.stars[2].cdpp == INVALID_CDPP
    assert v1.settings == {"detect_mode": "dynam", "grid_bg": 0, "val_range": [1, 10]}
    assert visits["V0"].factors == {0: 4.0, 1: 5.0}
    assert visits["V0"].stars[0].cdpp is None

    doc = yaml.safe_load(path.read_text())
    assert doc["format"] == "archi-optimized-factors" and doc["version"] == 1
    assert doc["visits"]["V1"]["stars"][1] == {"method": "shape", "factor": 3, "cdpp": 800.0,
                                               "valid": True}
    assert doc["visits"]["V1"]["stars"][2]["factor"] is None

    # rewriting a visit replaces only that visit
    write_optimized_factors(path, {0: 11.0}, methods="circle", visit_id="V1")
    visits = read_optimized_factors(path)
    assert visits["V1"].factors == {0: 11.0}
    assert visits["V0"].factors == {0: 4.0, 1: 5.0}
    assert optimized_factors_for(path, "V0").methods == {0: "shape", 1: "shape"}
    with pytest.raises(ProductNotFoundError, match="V9"):
        optimized_factors_for(path, "V9")
    assert leftovers(path.parent) == []


def test_factors_file_missing_is_an_error_and_creates_nothing(tmp_path):
    path = tmp_path / "none.yaml"
    with pytest.raises(ProductNotFoundError, match="none.yaml"):
        read_optimized_factors(path)
    assert not path.exists()


GOOD = """format: archi-optimized-factors
version: 1
visits:
  V1:
    stars:
      0: {method: circle, factor: 10.3, cdpp: 1.0, valid: true}
"""


@pytest.mark.parametrize("content, message", [
    ("visits: [unclosed\n", "YAML"),
    ("", "not an optimised-factors file"),
    ("- 1\n- 2\n", "not an optimised-factors file"),
    (GOOD.replace("archi-optimized-factors", "other"), "format"),
    (GOOD.replace("version: 1", "version: 2"), "unsupported version 2"),
    (GOOD.replace("version: 1", "version: true"), "unsupported version"),
    (GOOD.replace("method: circle", "method: circel"), r"visits\.V1\.stars\.0.*circel"),
    (GOOD.replace("factor: 10.3", "factor: -1"), r"stars\.0"),
    (GOOD.replace("factor: 10.3", "factor: ten"), r"stars\.0.*factor"),
    (GOOD.replace("valid: true", "valid: yes please"), r"stars\.0.*valid"),
    (GOOD.replace("factor: 10.3", "factor: null"), "valid star needs a factor"),
    (GOOD.replace("method: circle, factor: 10.3", "method: shape, factor: 2.5"), "whole number"),
    (GOOD.replace("0: {", "'0': {"), "star index"),
    (GOOD.replace("    stars:", "    starz:"), "stars"),
    (GOOD + "extra: 1\n", "unknown top-level"),
])
def test_corrupt_factors_file_errors_name_the_file(tmp_path, content, message):
    path = tmp_path / "bad.yaml"
    path.write_text(content)
    with pytest.raises(CorruptProductError, match=r"bad\.yaml: .*" + message):
        read_optimized_factors(path)


def test_good_factors_file_fixture_is_good(tmp_path):
    path = tmp_path / "good.yaml"
    path.write_text(GOOD)
    assert read_optimized_factors(path)["V1"].factors == {0: 10.3}


def test_writing_over_a_corrupt_factors_file_fails_and_keeps_it(tmp_path):
    path = tmp_path / "f.yaml"
    path.write_text("{{{ not yaml")
    with pytest.raises(CorruptProductError, match="f.yaml"):
        write_optimized_factors(path, {0: 3.0}, methods="circle", visit_id="V")
    assert path.read_text() == "{{{ not yaml"


def test_write_factors_rejects_bad_arguments(tmp_path):
    path = tmp_path / "f.yaml"
    with pytest.raises(ValueError, match="whole number"):
        write_optimized_factors(path, {0: 2.5}, methods="shape", visit_id="V")
    with pytest.raises(ValueError, match="star 1"):
        write_optimized_factors(path, {0: 2.0, 1: 3.0}, methods={0: "circle"}, visit_id="V")
    with pytest.raises(ConfigError):
        write_optimized_factors(path, {0: 2.0}, methods="square", visit_id="V")
    with pytest.raises(ValueError, match="visit id"):
        write_optimized_factors(path, {0: 2.0}, methods="circle", visit_id="")
    with pytest.raises(ValueError, match="settings"):
        write_optimized_factors(path, {0: 2.0}, methods="circle", visit_id="V",
                                settings={"obj": object()})
    assert not path.exists()


def test_factors_file_write_is_atomic(tmp_path, monkeypatch):
    path = tmp_path / "f.yaml"
    write_optimized_factors(path, {0: 3.0}, methods="circle", visit_id="V0")
    before = path.read_text()

    def broken(data, stream=None, **kwargs):
        stream.write("format: archi-optimized-factors\nvisits:\n  V0: {sta")
        raise yaml.YAMLError("cannot represent")

    monkeypatch.setattr(yaml, "safe_dump", broken)
    with pytest.raises(yaml.YAMLError):
        write_optimized_factors(path, {0: 4.0}, methods="circle", visit_id="V1")
    assert path.read_text() == before
    with pytest.raises(yaml.YAMLError):
        write_optimized_factors(tmp_path / "new.yaml", {0: 4.0}, methods="circle", visit_id="V1")
    assert not (tmp_path / "new.yaml").exists()
    assert leftovers(tmp_path) == []
    assert sorted(os.listdir(tmp_path)) == ["f.yaml"]


def test_fine_tune_parts_share_the_stars_evenly():
    from archi.optimize import fine_tune_parts

    plan = {j: [10.0] for j in (0, 2, 3, 5, 7, 8, 9)}
    assert fine_tune_parts(plan, 3) == [[0, 2, 3], [5, 7], [8, 9]]
    assert fine_tune_parts(plan, 10) == [[j] for j in sorted(plan)]  # at most one per star
    assert fine_tune_parts({}, 4) == []
    with pytest.raises(ValueError):
        fine_tune_parts(plan, 0)
