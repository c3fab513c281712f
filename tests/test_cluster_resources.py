"""The SLURM profile's resources, read from dry runs (no cluster needed): memory and runtime
grow with the visit's frames and with the retry attempt, the partition is left to the user,
and the profile names a plugin version that accepts it."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).parents[1]
PROFILE = ROOT / "profiles" / "slurm"
FRAMES = {"short": 1000, "long": 3000}


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    """Two simulated visits of 1000 and 3000 frames (a dry run never simulates them)."""
    path = tmp_path_factory.mktemp("slurm")
    shutil.copytree(ROOT / "config", path / "config")
    rows = ["visit\tpath\tdata_type\tsimulation"]
    for name, frames in FRAMES.items():
        (path / "config" / f"{name}.yaml").write_text(f"n_frames: {frames}\n")
        rows.append(f"{name}\t\tsimulated\tconfig/{name}.yaml")
    (path / "config" / "visits.tsv").write_text("\n".join(rows) + "\n")
    return path


def planned_resources(workdir: Path, attempt: int) -> dict[tuple[str, str], dict[str, str]]:
    """(rule, visit) -> the resources a dry run with the profile gives its first job, at
    retry ``attempt`` (Snakemake's --attempt sets the attempt its resources see)."""
    run = subprocess.run([sys.executable, "-m", "snakemake", "-n", "--profile", str(PROFILE),
                          "--snakefile", str(ROOT / "workflow" / "Snakefile"), "--directory",
                          str(workdir), "--attempt", str(attempt)],
                         capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr
    found = {}
    for block in re.split(r"\n(?=\s*rule \w+:)", run.stdout):
        rule = re.search(r"rule (\w+):", block)
        visit = re.search(r"wildcards: .*visit=(\w+)", block)
        res = re.search(r"resources: (.*)", block)
        if rule and visit and res:
            found.setdefault((rule[1], visit[1]), dict(re.findall(r"(\w+)=([^,]+)", res[1])))
    return found


def test_memory_and_runtime_grow_with_the_frames_and_the_attempt(workdir):
    first, third = planned_resources(workdir, 1), planned_resources(workdir, 3)
    for rule, mb, mb_per_1000, minutes, minutes_per_1000 in (
            ("prepare", 800, 400, 10, 3), ("photometry", 600, 350, 4, 1),
            ("simulate_visit", 1000, 400, 10, 10)):
        for visit, frames in FRAMES.items():
            k = frames / 1000
            once, thrice = first[rule, visit], third[rule, visit]
            assert int(once["mem_mb"]) == mb + mb_per_1000 * k, (rule, visit)
            assert int(thrice["mem_mb"]) == 3 * (mb + mb_per_1000 * k), (rule, visit)
            assert int(once["runtime"]) == minutes + minutes_per_1000 * k, (rule, visit)
            assert int(thrice["runtime"]) == 3 * (minutes + minutes_per_1000 * k), (rule, visit)
            assert "slurm_partition" not in once  # the cluster's default unless set
    assert first["prepare", "short"]["cpus_per_task"] == "2"
    # a group member at its last attempt (retries + 1) must fit the profile's cap
    profile = yaml.safe_load((PROFILE / "config.v8+.yaml").read_text())
    last = planned_resources(workdir, profile["retries"] + 1)
    assert max(int(last["photometry", v]["mem_mb"]) for v in FRAMES) \
        <= profile["resources"]["mem_mb"]


def test_the_plugin_version_accepts_the_profile():
    """Plugin 2.0.0 rejects ``slurm-status-command``; 2.1-2.3 accept it but their ``squeue``
    status query loses its quotes (``--format=%i|%T`` runs as a shell pipe, so the run
    never sees a job finish) and they stop when ``USER`` is unset: the extra asks for 2.4
    or later (2.4.0 and 2.8.0 pass this project's SLURM tests)."""
    profile = yaml.safe_load((PROFILE / "config.v8+.yaml").read_text())
    assert "slurm-status-command" in profile
    extras = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert extras["optional-dependencies"]["slurm"] == ["snakemake-executor-plugin-slurm>=2.4"]
    assert not (ROOT / "workflow" / "envs").exists()  # no untested conda route
