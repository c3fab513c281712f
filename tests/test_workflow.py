"""End-to-end runs of the Snakemake workflow on small simulated visits."""

from __future__ import annotations

import fcntl
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from matplotlib import pyplot as plt

from archi import search
from archi.io.lightcurves import read_lightcurves_fits
from archi.io.lightcurves_text import read_lightcurves_text
from archi.factors import factor_grid, format_factor
from archi.io.prepared import read_prepared
from archi.io.search_files import read_cdpp_tables
from archi.options import Options
from archi.simulate import read_truth

ROOT = Path(__file__).parents[1]
SNAKEFILE = ROOT / "workflow" / "Snakefile"

pytestmark = pytest.mark.slow

SMALL_PHOTOMETRY = {"val_range": [12, 20], "step": 4, "optimization_extensions": 1}


def snakemake(workdir: Path, *args: str, env: dict | None = None,
              timeout: int = 900) -> subprocess.CompletedProcess:
    """Run Snakemake; its messages (errors included) end up in ``.stdout``."""
    return subprocess.run([sys.executable, "-m", "snakemake", "--snakefile", str(SNAKEFILE),
                           "--directory", str(workdir), *args],
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                          timeout=timeout, env={**os.environ, **(env or {})})


def job_counts(output: str) -> dict[str, int]:
    """Snakemake's "Job stats" table of a run's output."""
    block = output.split("Job stats:", 1)[1].split("\n\n", 1)[0]
    return {m[1]: int(m[2]) for m in re.finditer(r"^(\w+)\s+(\d+)$", block, re.M)}


def make_workdir(path: Path, visits: dict[str, int], photometry: dict | None = None,
                 extra_columns: dict[str, dict[str, str]] | None = None,
                 outputs: dict | None = None) -> Path:
    """A working directory with the default config and small simulated visits (60 frames: the K2 CDPP needs 41)."""
    shutil.copytree(ROOT / "config", path / "config")
    config = yaml.safe_load((path / "config" / "config.yaml").read_text())
    config["photometry"].update(SMALL_PHOTOMETRY)
    config["photometry"].update(photometry or {})
    config["outputs"].update(outputs or {"save_gif": False})
    (path / "config" / "config.yaml").write_text(yaml.safe_dump(config))
    columns = sorted({c for cols in (extra_columns or {}).values() for c in cols})
    lines = ["\t".join(["visit", "path", "data_type", "simulation", *columns])]
    for name, seed in visits.items():
        (path / "config" / f"{name}.yaml").write_text(
            f"seed: {seed}\nn_frames: 60\nlayouts: [drp]\n")
        extra = [(extra_columns or {}).get(name, {}).get(c, "") for c in columns]
        lines.append("\t".join([name, "", "simulated", f"config/{name}.yaml", *extra]))
    (path / "config" / "visits.tsv").write_text("\n".join(lines) + "\n")
    return path


def results_of(workdir: Path, visit: str) -> tuple[np.ndarray, pd.DataFrame]:
    curves = read_lightcurves_fits(workdir / "results" / visit / "lightcurves.fits")
    table = pd.read_csv(workdir / "results" / visit / "optimization" / "all_cdpp.tsv", sep="\t")
    return curves.flux, table


def stored_factors(workdir: Path, visit: str) -> dict[int, float]:
    """Star -> factor of a visit's optimized_factors.yaml."""
    path = workdir / "results" / visit / "optimization" / "optimized_factors.yaml"
    (entry,) = yaml.safe_load(path.read_text())["visits"].values()
    return {star: s["factor"] for star, s in entry["stars"].items()}


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """Two visits in one invocation with -j4."""
    work = make_workdir(tmp_path_factory.mktemp("ref"), {"small_a": 3, "small_b": 4})
    dry = snakemake(work, "-n")
    assert dry.returncode == 0, dry.stdout
    run = snakemake(work, "-j4")
    assert run.returncode == 0, run.stdout[-3000:]
    return work, dry.stdout, run.stdout


def test_two_visits_run_end_to_end(reference):
    """Both visits' products agree with each other and with the simulator's truth."""
    work, _, _ = reference
    summary = pd.read_csv(work / "results" / "summary.tsv", sep="\t")
    assert sorted(summary.visit.unique()) == ["small_a", "small_b"]
    for visit in ("small_a", "small_b"):
        out = work / "results" / visit
        curves = read_lightcurves_fits(out / "lightcurves.fits")
        assert curves.n_frames == 60 and curves.n_stars >= 6
        text = read_lightcurves_text(out / "lightcurves.txt")
        np.testing.assert_allclose(text.flux, curves.flux, rtol=1e-6, equal_nan=True)
        rows = summary[summary.visit == visit].set_index("star")
        assert list(rows.index) == list(range(curves.n_stars))
        stored = yaml.safe_load((out / "optimization" / "optimized_factors.yaml").read_text())
        (entry,) = stored["visits"].values()
        assert entry["stars"][0]["valid"]  # the target's factor comes from valid runs
        for star, chosen in entry["stars"].items():
            assert rows.loc[star, "factor"] == pytest.approx(chosen["factor"])
        _assert_positions_are_true(work / "resources" / visit / "truth.fits", rows)
        for name in ("plots/target_vs_drp.png", "plots/cdpp_vs_factor.png",
                     "plots/stars/star_0.png"):
            image = plt.imread(out / name)  # a readable PNG with something drawn on it
            assert image.shape[0] > 300 and np.ptp(image[..., :3]) > 0.5, name
        assert (work / "logs" / visit / "prepare.log").exists()
    again = snakemake(work, "-n")
    assert "Nothing to be done" in again.stdout


def _assert_positions_are_true(truth_path: Path, rows: pd.DataFrame) -> None:
    """Every star of the summary sits on a simulated star at frame 0 (x0, y0 within 0.05 px;
    the trackers achieve 0.02 px), the target (star 0) on the simulated target."""
    truth = read_truth(truth_path)
    tx, ty = truth.x[:, 0], truth.y[:, 0]
    for star, row in rows.iterrows():
        distance = np.hypot(tx - row.x0, ty - row.y0)
        assert distance.min() < 0.05, (star, distance.min())
    assert np.hypot(tx[0] - rows.loc[0, "x0"], ty[0] - rows.loc[0, "y0"]) < 0.05


def test_dry_run_lists_one_photometry_job_per_factor(reference):
    _, dry, _ = reference
    n_factors = len(factor_grid(tuple(SMALL_PHOTOMETRY["val_range"]), SMALL_PHOTOMETRY["step"]))
    assert job_counts(dry)["photometry"] == 2 * n_factors  # two visits
    for f in factor_grid(tuple(SMALL_PHOTOMETRY["val_range"]), SMALL_PHOTOMETRY["step"]):
        assert f"round0/f{format_factor(f)}.tsv" in dry


EDGE_PHOTOMETRY = {"val_range": [4, 8], "step": 2}


@pytest.fixture(scope="module")
def edge_run(tmp_path_factory):
    """A visit whose best factors sit at the top of a grid of too small radii: an extension
    round, then the fine tune."""
    work = make_workdir(tmp_path_factory.mktemp("edge"), {"edge": 5}, photometry=EDGE_PHOTOMETRY)
    run = snakemake(work, "-j4")
    assert run.returncode == 0, run.stdout[-3000:]
    return work


def test_best_factor_at_the_top_triggers_an_extension_round_and_fine_tune(edge_run):
    work = edge_run
    opt_dir = work / "results" / "edge" / "optimization"
    decision = search.read_decision(opt_dir / "round0.yaml")
    assert decision.extend  # radii of 4-8 px are far too small for the CHEOPS PSF
    options = Options.from_mapping({**SMALL_PHOTOMETRY, **EDGE_PHOTOMETRY})
    round1 = search.round_factors(options, 1)
    assert round1 == [10.0, 12.0, 14.0, 16.0]
    for f in round1:
        table = read_cdpp_tables(opt_dir / "round1" / f"f{format_factor(f)}.tsv")
        assert sorted(table.star) == decision.extend
    plan = yaml.safe_load((opt_dir / "fine_plan.yaml").read_text())
    fine = sorted(opt_dir.glob("fine/part*.tsv"))
    assert 1 <= len(fine) <= 4  # fine_tune_jobs (default 4) jobs share the stars
    table = read_cdpp_tables(fine)
    assert sorted(set(table.star)) == sorted(plan)
    everything = read_cdpp_tables(opt_dir / "all_cdpp.tsv")
    for star in plan:
        # best grid radius +/- 1 px in 0.1-px steps, the grid's own points not run twice
        fine_runs = set(np.round(table.factor[table.star == star], 1))
        grid_runs = set(np.round(everything.factor[everything.star == star], 1)) - fine_runs
        best = [g for g in grid_runs if fine_runs <= set(np.round(g + np.arange(-10, 11) / 10, 1))]
        assert len(best) == 1
        assert fine_runs == set(np.round(best[0] + np.arange(-10, 11) / 10, 1)) - grid_runs
        assert len(fine_runs) < 21


def test_one_search_job_per_visit_finds_the_same_factors_and_curves(tmp_path, edge_run):
    work = make_workdir(tmp_path, {"edge": 5}, photometry=EDGE_PHOTOMETRY)
    run = snakemake(work, "-j2", "--config", "search_jobs=visit")
    assert run.returncode == 0, run.stdout[-3000:]
    counts = job_counts(run.stdout)
    assert counts["whole_visit"] == 1  # detection to text export, one job
    assert not {"prepare", "photometry", "select_round", "fine_tune", "choose_factors",
                "extract", "export_text"} & set(counts)
    flux, table = results_of(work, "edge")
    ref_flux, ref_table = results_of(edge_run, "edge")
    assert len(table) > len(ref_table.star.unique()) * 21  # grid, extension and fine tune
    # the same runs; CDPPs equal to rounding (one pass sums the pixels in another order)
    pd.testing.assert_frame_equal(table, ref_table, check_exact=False, rtol=1e-9)
    assert stored_factors(work, "edge") == stored_factors(edge_run, "edge")
    # the curves are the search's sums of the chosen runs: equal to rounding
    np.testing.assert_allclose(flux, ref_flux, rtol=1e-12, equal_nan=True)
    # the job's other outputs: the same tracks, the same text
    tracks, ref_tracks = (read_prepared(w / "results" / "edge" / "prepared.fits").tracks
                          for w in (work, edge_run))
    assert np.array_equal(tracks.x, ref_tracks.x) and np.array_equal(tracks.y, ref_tracks.y)
    text, ref_text = (read_lightcurves_text(w / "results" / "edge" / "lightcurves.txt")
                      for w in (work, edge_run))
    assert text.columns == ref_text.columns and text.options == ref_text.options
    assert [(s.factor, s.method) for s in text.stars] == [(s.factor, s.method)
                                                          for s in ref_text.stars]
    for name in ("mjd_time", "roll_angle"):
        assert np.array_equal(getattr(text, name), getattr(ref_text, name))
    for name in ("flux", "flux_err"):
        np.testing.assert_allclose(getattr(text, name), getattr(ref_text, name), rtol=1e-12)


def test_a_failed_factor_is_the_only_one_rerun(tmp_path):
    work = make_workdir(tmp_path, {"small_a": 3}, outputs={"save_gif": False,
                                                           "show_results": False})
    failing = "small_a/optimization/round0/f16.tsv"
    first = snakemake(work, "-j2", "--keep-going", env={"ARCHI_FAIL_OUTPUTS": failing})
    assert first.returncode != 0
    assert "failure injected" in (work / "logs" / "small_a" / "optimization" / "round0"
                                  / "f16.log").read_text()
    done = work / "results" / "small_a" / "optimization" / "round0"
    assert (done / "f12.tsv").exists() and (done / "f20.tsv").exists()
    assert not (done / "f16.tsv").exists()
    second = snakemake(work, "-j2")
    assert second.returncode == 0, second.stdout[-3000:]
    counts = job_counts(second.stdout)
    assert counts["photometry"] == 1 and "prepare" not in counts
    assert "simulate_visit" not in counts


def test_killed_run_finishes_identically_with_rerun_incomplete(tmp_path, reference):
    work = make_workdir(tmp_path, {"small_a": 3})
    proc = subprocess.Popen([sys.executable, "-m", "snakemake", "--snakefile", str(SNAKEFILE),
                             "--directory", str(work), "-j2"], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True)
    tables = work / "results" / "small_a" / "optimization" / "round0"
    deadline = time.time() + 300
    while time.time() < deadline and not list(tables.glob("f*.tsv")):
        time.sleep(0.2)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    assert not (work / "results" / "summary.tsv").exists()
    assert snakemake(work, "--unlock").returncode == 0
    rerun = snakemake(work, "-j2", "--rerun-incomplete")
    assert rerun.returncode == 0, rerun.stdout[-3000:]
    flux, table = results_of(work, "small_a")
    ref_flux, ref_table = results_of(reference[0], "small_a")
    assert np.array_equal(flux, ref_flux, equal_nan=True)
    pd.testing.assert_frame_equal(table, ref_table)


def test_results_do_not_depend_on_the_number_of_cores(tmp_path, reference):
    work = make_workdir(tmp_path, {"small_a": 3})
    run = snakemake(work, "-j1")
    assert run.returncode == 0, run.stdout[-3000:]
    flux, table = results_of(work, "small_a")
    ref_flux, ref_table = results_of(reference[0], "small_a")
    assert np.array_equal(flux, ref_flux, equal_nan=True)
    pd.testing.assert_frame_equal(table, ref_table)


@pytest.mark.parametrize("search_jobs", ["factor", "visit"])
def test_stored_factors_are_used_when_optimize_is_false(tmp_path, reference, search_jobs):
    work = make_workdir(tmp_path, {"small_a": 3})
    stored = reference[0] / "results" / "small_a" / "optimization" / "optimized_factors.yaml"
    run = snakemake(work, "-j2", "--config", "optimize=False", f"optimized_factors={stored}",
                    f"search_jobs={search_jobs}")
    assert run.returncode == 0, run.stdout[-3000:]
    counts = job_counts(run.stdout)
    assert counts["extract"] == 1  # no search job of either kind: rule extract
    assert not {"photometry", "choose_factors", "whole_visit"} & set(counts)
    flux = read_lightcurves_fits(work / "results" / "small_a" / "lightcurves.fits").flux
    assert np.array_equal(flux, results_of(reference[0], "small_a")[0], equal_nan=True)


def test_per_visit_overrides_are_validated(tmp_path):
    work = make_workdir(tmp_path, {"small_a": 3}, extra_columns={"small_a": {"method": "oval"}})
    run = snakemake(work, "-n")
    assert run.returncode != 0
    assert "visit small_a: method 'oval' is not one of circle, shape" in run.stdout


def test_a_real_visit_folder_that_does_not_exist_stops_the_run(tmp_path):
    work = make_workdir(tmp_path, {"small_a": 3})
    (work / "config" / "visits.tsv").write_text(
        "visit\tpath\tdata_type\tsimulation\nmine\t/no/such/visit\treal\t\n")
    run = snakemake(work, "-n")
    assert run.returncode != 0
    assert "visit mine: folder /no/such/visit does not exist" in run.stdout


@pytest.mark.parametrize("args, message", [
    (["--config", "bogus=1"], "unknown option 'bogus'"),
    (["--config", "layout=flat"], "'flat' is not one of"),
    (["--config", "optimize=False", "optimized_factors=nothing.yaml"],
     "optimized_factors 'nothing.yaml' is not a file"),
])
def test_bad_config_stops_the_run_before_any_job(tmp_path, args, message):
    work = make_workdir(tmp_path, {"small_a": 3})
    run = snakemake(work, "-n", *args)
    assert run.returncode != 0
    assert message in run.stdout
    assert not (work / "results").exists()


def test_lint_reports_nothing():
    """Nothing but "Specify a conda environment": the rules run in the environment that runs
    Snakemake (a per-rule conda environment was never tested, so there is none)."""
    run = subprocess.run([sys.executable, "-m", "snakemake", "--lint"], cwd=ROOT,
                         stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                         timeout=120)
    lints = set(re.findall(r"^\s+\* (.*):$", run.stdout, re.M))
    assert lints <= {"Specify a conda environment or container for each rule."}, run.stdout
    assert "Lints for snakefile" not in run.stdout, run.stdout


# ---------------------------------------------------------------------------------------
# SLURM: a one-node cluster on this machine (tools/slurm), driven through the profile
# ---------------------------------------------------------------------------------------

SLURM_TOOLS = ROOT / "tools" / "slurm"


def slurm_profile(folder: Path, partition: str) -> Path:
    """The project's profile, adapted to the local test cluster (no accounting, fast polls)."""
    profile = yaml.safe_load((ROOT / "profiles" / "slurm" / "config.v8+.yaml").read_text())
    profile.update({"jobs": 4, "latency-wait": 5, "retries": 0,
                    "seconds-between-status-checks": 2,
                    "slurm-init-seconds-before-status-checks": 2,
                    "slurm-status-command": "squeue"})
    profile["default-resources"]["slurm_partition"] = partition
    profile["default-resources"]["runtime"] = 10
    for rule in profile["set-resources"].values():  # fit the 2-core test node
        if "mem_mb" in rule:  # (the rules' own memory: ~1 GB for 60 frames)
            rule["mem_mb"] = min(rule["mem_mb"], 2000)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "config.v8+.yaml").write_text(yaml.safe_dump(profile))
    return folder


def free_ports(n: int) -> list[int]:
    """``n`` TCP ports on loopback that nothing listens on now (the kernel's choice)."""
    sockets = [socket.socket() for _ in range(n)]
    try:
        for sock in sockets:
            sock.bind(("127.0.0.1", 0))
        return [sock.getsockname()[1] for sock in sockets]
    finally:
        for sock in sockets:
            sock.close()


SLURM_TEST_LOCK = Path("/tmp/archi-slurm-tests.lock")
"""Held while a test cluster is up: one cluster per machine (its config must be at the one
/etc/slurm/slurm.conf, which srun inside the jobs reads), so a second test run waits."""


@pytest.fixture(scope="module")
def slurm_cluster():
    if os.geteuid() != 0 or shutil.which("apt-get") is None:
        pytest.skip("the local SLURM cluster needs root and Debian's apt-get")
    with open(SLURM_TEST_LOCK, "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        # munged wants every parent of its socket world-searchable: not pytest's tmp dirs
        lab = Path(tempfile.mkdtemp(prefix="archi-slurmlab-", dir="/tmp"))
        lab.chmod(0o755)
        ctld_port, slurmd_port = free_ports(2)
        env = {**os.environ, "SLURMLAB": str(lab), "SLURMCTLD_PORT": str(ctld_port),
               "SLURMD_PORT": str(slurmd_port)}
        try:
            start = subprocess.run(["bash", str(SLURM_TOOLS / "start_local_slurm.sh")],
                                   env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                   text=True, timeout=600)
            assert start.returncode == 0, start.stdout[-2000:]
            exports = dict(re.findall(r"^export (\w+)=['\"]?([^'\"\n]*)",
                                      (lab / "env.sh").read_text(), re.M))
            yield {**env, **exports}
        finally:  # the daemons stopped and the lab removed, even when the start failed
            subprocess.run(["bash", str(SLURM_TOOLS / "stop_local_slurm.sh"), "--purge"],
                           env=env, timeout=120)
            shutil.rmtree(lab, ignore_errors=True)


@pytest.mark.parametrize("search_jobs", ["factor", "visit"])
def test_slurm_run_gives_the_same_results_as_a_local_run(tmp_path, reference, slurm_cluster,
                                                         search_jobs):
    work = make_workdir(tmp_path / "work", {"small_a": 3})
    profile = slurm_profile(tmp_path / "profile", slurm_cluster["SLURM_LOCAL_PARTITION"])
    run = subprocess.run([sys.executable, "-m", "snakemake", "--snakefile", str(SNAKEFILE),
                          "--directory", str(work), "--profile", str(profile),
                          "--workflow-profile", "none", "--config",
                          f"search_jobs={search_jobs}"],
                         stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                         timeout=1200, env=slurm_cluster)
    assert run.returncode == 0, run.stdout[-3000:]
    assert "Job stats" in run.stdout and "slurm" in run.stdout.lower()
    submitted = re.findall(r"SLURM run ID|Job \d+ has been submitted with SLURM jobid (\d+)",
                           run.stdout)
    assert submitted, "no job went through SLURM"
    # the 2-process rules got their 2 CPUs
    rule = "whole_visit" if search_jobs == "visit" else "prepare"
    log = (work / "logs" / "small_a" / f"{rule}.log").read_text()
    assert "2 CPUs per task, threads 2" in log and "frames, 2 processes" in log
    flux, table = results_of(work, "small_a")
    ref_flux, ref_table = results_of(reference[0], "small_a")
    # one job per visit sums the pixels of a round in one pass, and its curves are the
    # search's sums: curves and CDPPs equal to rounding
    np.testing.assert_allclose(flux, ref_flux, rtol=0 if search_jobs == "factor" else 1e-12,
                               equal_nan=True)
    pd.testing.assert_frame_equal(table, ref_table, check_exact=search_jobs == "factor",
                                  rtol=1e-9)


def test_installed_profile_is_found_by_its_bare_name(tmp_path):
    env = {**os.environ, "XDG_CONFIG_HOME": str(tmp_path / "xdg")}
    install = subprocess.run(["bash", str(ROOT / "tools" / "install_profile.sh")], env=env,
                             stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    assert install.returncode == 0, install.stdout
    assert (tmp_path / "xdg" / "snakemake" / "slurm" / "config.v8+.yaml").exists()
    again = subprocess.run(["bash", str(ROOT / "tools" / "install_profile.sh")], env=env,
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    assert again.returncode != 0 and "use --force" in again.stdout
    work = make_workdir(tmp_path / "work", {"small_a": 3})
    dry = snakemake(work, "-n", "--profile", "slurm", env=env)
    assert dry.returncode == 0, dry.stdout[-2000:]
    assert "Using profile slurm" in dry.stdout or str(tmp_path / "xdg") in dry.stdout
