"""The pure pieces of benchmarks/performance.py, fast: no workflow and no archi run."""

from __future__ import annotations

import importlib.util
import math
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from archi.simulate import simulate_visit
from archi.simulate.config import StarSpec

BENCHMARK = Path(__file__).resolve().parents[1] / "benchmarks" / "performance.py"


@pytest.fixture(scope="module")
def perf():
    name = "archi_performance_benchmark"
    spec = importlib.util.spec_from_file_location(name, BENCHMARK)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses look their module up while the class is built
    try:
        spec.loader.exec_module(module)
        yield module
    finally:
        sys.modules.pop(name, None)


def test_field_keeps_stars_apart(perf):
    perf.check_field()
    bright = np.vstack([[0.0, 0.0], perf.offsets(perf.COMPANIONS)])
    assert len(perf.COMPANIONS) == 8
    assert perf.pairwise_distances(bright).min() >= 50.0
    everything = np.vstack([bright, perf.offsets(perf.FAINT_STARS)])
    assert perf.pairwise_distances(everything).min() >= 20.0
    assert [len(perf.field_for(n)) + 1 for n in (5, 9, 20)] == [5, 9, 20]
    assert perf.field_for(5) == perf.COMPANIONS[:4]


def test_field_check_rejects_close_stars(perf):
    # a companion 23 px from the first one (55 px at PA 0 and 55 px at PA 24)
    with pytest.raises(AssertionError, match="apart"):
        perf.check_field(perf.COMPANIONS + (StarSpec(55.0, 24.0, 1.0),), ())
    with pytest.raises(AssertionError, match="45-76"):
        perf.check_field((StarSpec(30.0, 0.0, 1.0),), ())
    with pytest.raises(AssertionError, match="faint star"):
        perf.check_field(perf.COMPANIONS, (StarSpec(50.0, 10.0, 3.0),))  # 10.4 px from one


def test_offsets_follow_position_angle(perf):
    xy = perf.offsets([StarSpec(10.0, 0.0, 1.0), StarSpec(10.0, 90.0, 1.0)])
    np.testing.assert_allclose(xy, [[10.0, 0.0], [0.0, 10.0]], atol=1e-12)


def test_exponent_fit(perf):
    n = np.array([300.0, 1000.0, 3000.0])
    assert perf.fit_exponent(n, 2 * n**1.0) == pytest.approx(1.0, abs=1e-9)
    assert perf.fit_exponent(n, 0.5 * n**2) == pytest.approx(2.0, abs=1e-9)
    assert perf.fit_exponent(n, np.full(3, 7.0)) == pytest.approx(0.0, abs=1e-9)
    assert math.isnan(perf.fit_exponent([1000.0], [1.0]))
    # non-finite or non-positive times are left out
    assert perf.fit_exponent([10, 100, 1000], [1.0, 10.0, math.nan]) == pytest.approx(1.0)


def test_star_matching(perf):
    ours = np.array([[100.0, 100.0], [150.0, 60.0], [40.0, 40.0], [101.0, 101.5]])
    # archi's order differs; one star of ours is missing there, one of archi's is extra
    theirs = np.array([[150.5, 61.0], [100.2, 99.9], [170.0, 170.0], [104.5, 101.0]])
    pairs, only_ours, only_theirs = perf.match_stars(ours, theirs, tolerance=3.0)
    assert [(i, j) for i, j, _ in pairs] == [(0, 1), (1, 0)]
    assert pairs[0][2] == pytest.approx(np.hypot(0.2, 0.1))
    assert only_ours == [2, 3]  # star 3 is 3.5 px from archi's star 3
    assert only_theirs == [2, 3]
    # each star is used once: the closer of two candidates wins
    pairs, only_ours, _ = perf.match_stars([[0.0, 0.0], [1.0, 0.0]], [[0.9, 0.0]])
    assert [(i, j) for i, j, _ in pairs] == [(1, 0)] and only_ours == [0]
    assert perf.match_stars(np.empty((0, 2)), theirs)[2] == [0, 1, 2, 3]


def test_jump_count(perf):
    flat = np.full(50, 1000.0)
    assert perf.jump_count(flat) == 0
    lost = flat.copy()
    lost[20:30] = 400.0
    assert perf.jump_count(lost) == 2


def test_cpu_meter_leaves_out_the_benchmark_itself(perf):
    with perf.CpuMeter() as meter:
        end = time.perf_counter() + 0.3
        while time.perf_counter() < end:  # our own CPU: not "other processes"
            pass
    assert math.isfinite(meter.other_cores) and meter.other_cores >= 0.0


def test_benchmark_tsv_reader(perf, tmp_path):
    header = "s\th:m:s\tmax_rss\tmax_vms\tmax_uss\tmax_pss\tio_in\tio_out\tmean_load\tcpu_time\n"
    (tmp_path / "a.tsv").write_text(header + "1.5\t0:00:01\t250.5\t900\t200\t210\t0\t1\t90\t1.4\n")
    (tmp_path / "b.tsv").write_text(header + "2.5\t0:00:02\tNA\tNA\tNA\tNA\tNA\tNA\tNA\t2.3\n")
    assert perf.read_benchmark_tsv(tmp_path / "a.tsv") == (1.5, 250.5, 210.0)
    stats = perf.job_stats([tmp_path / "a.tsv", tmp_path / "b.tsv"])
    assert (stats.n_jobs, stats.median_s, stats.max_s, stats.max_rss_mb, stats.max_pss_mb) == (
        2, 2.0, 2.5, 250.5, 210.0)


@pytest.fixture(scope="module")
def tiny_run(perf, tmp_path_factory):
    """The in-process measurement of a 60-frame visit (the only simulation of this file)."""
    tmp = tmp_path_factory.mktemp("perf")
    paths = simulate_visit(perf.simulation_config(60, perf.MAIN_STARS), tmp / "visit")
    start = time.perf_counter()
    times = perf.measure_in_process(paths.drp_folder, tmp / "out", repeats=1)
    wall = time.perf_counter() - start
    return times, tmp / "out", wall, paths.drp_folder


def test_in_process_measurement_on_a_tiny_visit(perf, tiny_run, tmp_path):
    """The step times are those of the steps the call ran (together most of its wall time,
    timed here independently), and what it wrote is the pipeline's own light curves."""
    from archi import api
    from archi.io.lightcurves import read_lightcurves_fits
    from archi.io.lightcurves_text import read_lightcurves_text

    times, out, wall, drp_folder = tiny_run
    assert times.n_frames == 60
    assert 8 <= times.n_stars <= 12  # the target and (nearly) all nine companions
    steps = [getattr(times, name) for name in
             ("load_s", "prepare_s", "photometry_s", "extract_s", "export_s", "search_s",
              "gif_s", "figures_s")]
    assert all(value > 0 for value in steps), steps
    # one run of each step (repeats=1): their sum is within the call's wall time, and
    # covers most of it (the rest is the CPU meter's bookkeeping; measured 0.9999)
    assert 0.7 * wall < sum(steps) <= wall, (steps, wall)
    written = read_lightcurves_fits(out / "lightcurves.fits")
    options = perf.our_options()
    visit = api.load_visit(drp_folder, options)
    prepared = api.prepare(visit, options)
    expected = api.extract(visit, prepared, {j: perf.PHOTOMETRY_FACTOR
                                             for j in range(prepared.stars.n_stars)})
    np.testing.assert_array_equal(written.factors, perf.PHOTOMETRY_FACTOR)
    np.testing.assert_allclose(written.flux, expected.flux, rtol=1e-12, equal_nan=True)
    text = read_lightcurves_text(out / "lightcurves.txt")
    np.testing.assert_allclose(text.flux, written.flux, rtol=1e-6, equal_nan=True)
    # the report renders from these numbers alone (no workflow, no archi)
    size = perf.SizeResult(60, times, perf.WorkflowRun(10.0, {}, math.nan, tmp_path))
    bench = perf.Benchmark("test", {"CPU": "test"}, sizes=[size],
                           archi_skipped="archi was not run (--no-archi).")
    report = perf.render(bench)
    assert "| 60 | " in report and "--no-archi" in report


def test_cdpp_comparison_against_a_fake_archi(perf, tiny_run):
    """Our curves of the tiny visit against an 'archi' that misses our star 1, lists the
    others in reverse order and has one star's flux halved after frame 30."""
    from archi.io.factors_file import write_optimized_factors
    from archi.io.lightcurves import read_lightcurves_fits

    out = tiny_run[1]
    curves = read_lightcurves_fits(out / "lightcurves.fits")
    n = curves.n_stars
    results = out / "results"
    write_optimized_factors(results / "optimization" / "optimized_factors.yaml",
                            {j: float(curves.factors[j]) for j in range(n)}, methods="circle",
                            visit_id=curves.visit_key, cdpp={j: 100.0 + j for j in range(n)})
    (results / "lightcurves.fits").symlink_to(out / "lightcurves.fits")
    kept = [j for j in range(n) if j != 1][::-1]  # archi's star i is our star kept[i]
    flux = curves.flux[kept].copy()
    flux[0, 30:] *= 0.5
    xy0 = np.column_stack([curves.stars.x0, curves.stars.y0])[kept] + 0.5
    archi = perf.ArchiRun(wall_s=100.0, peak_rss_mb=500.0, rss_source="test", total_s=99.0,
                          result={"mask_factors": [12.0] * len(kept),
                                  "archi_cdpp": [1000.0] * len(kept)},
                          flux=flux, xy0=xy0, mjd_time=curves.mjd_time)
    comparison = perf.compare_cdpp(results, archi)
    assert [(m.ours, m.archi) for m in comparison.matched] == \
        [(j, kept.index(j)) for j in sorted(kept)]
    assert [i for i, _, _ in comparison.only_ours] == [1] and comparison.only_archi == []
    by_star = {m.ours: m for m in comparison.matched}
    for j in kept[1:]:  # identical curves: identical CDPP, "not worse"
        m = by_star[j]
        assert m.our_cdpp == pytest.approx(m.archi_cdpp) and m.ours_not_worse
        assert m.our_reported == 100.0 + j and m.archi_reported == 1000.0
        assert m.distance_px == pytest.approx(np.hypot(0.5, 0.5))
    stepped = by_star[kept[0]]
    assert stepped.archi_jumps == 1 and stepped.our_jumps == 0
    size = perf.SizeResult(60, tiny_run[0],
                           perf.WorkflowRun(10.0, {}, math.nan, results, products_s=8.0),
                           perf.WorkflowRun(4.0, {}, math.nan, results, products_s=3.2),
                           perf.WorkflowRun(2.5, {}, math.nan, results, products_s=2.0),
                           perf.WorkflowRun(2.0, {}, math.nan, results, products_s=1.6),
                           archi=archi, comparison=comparison, comparison_binary=comparison,
                           comparison_archi=comparison)
    report = perf.render(perf.Benchmark("test", {"CPU": "test"}, sizes=[size]))
    assert "only ours: star 1" in report
    # per mode: ours wall, our products written, archi wall, its own timer, RSS; speed-ups
    assert "| search_jobs: factor | 10.0 | 8.0 | 100.0 | 99.0 | 500 |" in report
    assert "| search_jobs: visit | 4.0 | 3.2 | 100.0 | 99.0 | 500 |" in report
    assert f"| {perf.BINARY_LABEL} | 2.5 | 2.0 | 100.0 | 99.0 | 500 |" in report
    assert f"| {perf.ARCHI_MASK_LABEL} | 2.0 | 1.6 | 100.0 | 99.0 | 500 |" in report
    assert "**10.0x**" in report and "**25.0x**" in report and "**40.0x**" in report
    assert "**50.0x**" in report
    assert "| 12.5x |" in report and "| 31.2x |" in report and "| 50.0x |" in report
    assert "| 62.5x |" in report
    # the CDPP comparison of each run, its own target row
    assert "### 60 frames, ours with binary circles" in report
    assert "### 60 frames, ours with archi's own circles" in report
    assert report.count("CDPP same or better than archi on every star both find") == 3
