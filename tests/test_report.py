"""``snakemake --report``: every figure of a visit is in it (each star's light curve, the
field, the GIF), with its caption."""

from __future__ import annotations

import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).parents[1]
SNAKEFILE = ROOT / "workflow" / "Snakefile"

pytestmark = pytest.mark.slow


def snakemake(workdir: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "snakemake", "--snakefile", str(SNAKEFILE),
                           "--directory", str(workdir), *args], capture_output=True,
                          text=True, timeout=900)


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory):
    """One small simulated visit (60 frames) run to the end, GIF included."""
    work = tmp_path_factory.mktemp("report")
    shutil.copytree(ROOT / "config", work / "config")
    config = yaml.safe_load((work / "config" / "config.yaml").read_text())
    config["photometry"].update({"val_range": [12, 20], "step": 4,
                                 "optimization_extensions": 1})
    config["outputs"]["save_gif"] = True
    (work / "config" / "config.yaml").write_text(yaml.safe_dump(config))
    (work / "config" / "small.yaml").write_text("seed: 3\nn_frames: 60\nlayouts: [drp]\n")
    (work / "config" / "visits.tsv").write_text(
        "visit\tpath\tdata_type\tsimulation\nsmall\t\tsimulated\tconfig/small.yaml\n")
    run = snakemake(work, "-j2")
    assert run.returncode == 0, run.stderr[-3000:]
    return work


def test_the_report_holds_every_star_the_field_and_the_gif(finished_run):
    run = snakemake(finished_run, "--report", "report.zip")
    assert run.returncode == 0, run.stderr[-3000:]
    stars = sorted(p.name for p in (finished_run / "results/small/plots/stars").glob("*.png"))
    assert "field.png" in stars and len(stars) >= 8  # the field and >= 7 stars
    with zipfile.ZipFile(finished_run / "report.zip") as archive:
        names = archive.namelist()
        html = "".join(archive.read(n).decode(errors="replace") for n in names
                       if n.endswith((".html", ".js")))
    files = {Path(n).name for n in names if "/data/raw/" in n or n.endswith((".png", ".gif"))}
    for figure in [*stars, "star_tracking.gif", "target_vs_drp.png", "field_model.png",
                   "cdpp_vs_factor.png", "drp_lightcurves.png"]:
        assert figure in files, figure
    assert "the light curve of star n" in html and "An outline that drifts off its star" in html
    assert "the same flux against the spacecraft's roll angle" in html
