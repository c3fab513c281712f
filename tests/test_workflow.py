"""End-to-end runs of the Snakemake workflow on small simulated visits."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

ROOT = Path(__file__).parents[1]
SNAKEFILE = ROOT / "workflow" / "Snakefile"

pytestmark = pytest.mark.slow


def snakemake(workdir: Path, *args: str) -> subprocess.CompletedProcess:
    """Run Snakemake; its messages (errors included) end up in ``.stdout``."""
    return subprocess.run([sys.executable, "-m", "snakemake", "--snakefile", str(SNAKEFILE),
                           "--directory", str(workdir), *args],
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                          timeout=600)


@pytest.fixture
def workdir(tmp_path):
    """A working directory with the default config and two small simulated visits."""
    shutil.copytree(ROOT / "config", tmp_path / "config")
    for name, seed in (("small_a", 3), ("small_b", 4)):
        (tmp_path / "config" / f"{name}.yaml").write_text(
            f"seed: {seed}\nn_frames: 40\nlayouts: [drp]\n")
    (tmp_path / "config" / "visits.tsv").write_text(
        "visit\tpath\tdata_type\tsimulation\n"
        "small_a\t\tsimulated\tconfig/small_a.yaml\n"
        "small_b\t\tsimulated\tconfig/small_b.yaml\n")
    return tmp_path


def test_two_visits_run_end_to_end(workdir):
    dry = snakemake(workdir, "-n")
    assert dry.returncode == 0, dry.stdout
    assert "simulate_visit" in dry.stdout and "inspect_visit" in dry.stdout

    run = snakemake(workdir, "-j2")
    assert run.returncode == 0, run.stdout
    for visit in ("small_a", "small_b"):
        summary = pd.read_csv(workdir / "results" / visit / "visit_summary.tsv", sep="\t")
        assert summary.loc[0, "n_frames"] == 40
        assert summary.loc[0, "apertures"] == "DEFAULT,OPTIMAL,RINF,RSUP"
        assert (workdir / "results" / visit / "plots" / "drp_lightcurves.png").stat().st_size > 0
        assert (workdir / "logs" / visit / "inspect_visit.log").exists()

    again = snakemake(workdir, "-n")
    assert "Nothing to be done" in again.stdout


def test_a_real_visit_folder_that_does_not_exist_stops_the_run(workdir):
    (workdir / "config" / "visits.tsv").write_text(
        "visit\tpath\tdata_type\tsimulation\nmine\t/no/such/visit\treal\t\n")
    run = snakemake(workdir, "-n")
    assert run.returncode != 0
    assert "visit mine: folder /no/such/visit does not exist" in run.stdout


def test_an_unknown_config_key_stops_the_run(workdir):
    run = snakemake(workdir, "-n", "--config", "bogus=1")
    assert run.returncode != 0
    assert "'bogus' was unexpected" in run.stdout


def test_a_bad_config_value_stops_the_run(workdir):
    run = snakemake(workdir, "-n", "--config", "official_curve=BEST")
    assert run.returncode != 0
    assert "'BEST' is not one of" in run.stdout
