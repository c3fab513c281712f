"""Bad inputs through the workflow: every run ends with one clear last line, exit status
non-zero, and leaves no result of the bad visit that a later run would trust; checks that
can run at start do (``snakemake -n``); a product replaced in place reruns its visit."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from astropy.io import fits

from archi.io import read_visit
from archi.io.lightcurves import read_lightcurves_fits
from archi.simulate.cli import main as simulate_main

ROOT = Path(__file__).parents[1]
SNAKEFILE = ROOT / "workflow" / "Snakefile"

pytestmark = pytest.mark.slow

# a cheap search (the failures are what is tested, not the photometry): 10-15 s a visit
CHEAP_PHOTOMETRY = {"val_range": [12, 16], "step": 4, "optimization_extensions": 0,
                    "fine_tune_circle": False, "decontaminate": False, "clean_cosmics": False}
NO_FIGURES = {"save_gif": False, "show_results": False, "debug": False, "export_text": False}
TABLE = "config/visits.tsv"
TRUSTED = ("prepared.fits", "lightcurves.fits", "run_info.yaml",
           "optimization/optimized_factors.yaml")


def snakemake(workdir: Path, *args: str) -> subprocess.CompletedProcess:
    """Snakemake in ``workdir``; its console (stdout and stderr) in ``.stdout``."""
    return subprocess.run([sys.executable, "-m", "snakemake", "--snakefile", str(SNAKEFILE),
                           "--directory", str(workdir), *args], stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, text=True, timeout=600)


def last_line(run: subprocess.CompletedProcess) -> str:
    return run.stdout.rstrip("\n").splitlines()[-1]


def make_workdir(path: Path, rows: list[dict[str, str]], photometry: dict | None = None) -> Path:
    """A working directory with the default config made cheap and a visits table."""
    shutil.copytree(ROOT / "config", path / "config")
    config = yaml.safe_load((path / "config" / "config.yaml").read_text())
    config["photometry"].update({**CHEAP_PHOTOMETRY, **(photometry or {})})
    config["outputs"].update(NO_FIGURES)
    config["fine_tune_jobs"] = 1
    (path / "config" / "config.yaml").write_text(yaml.safe_dump(config))
    write_table(path / "config" / "visits.tsv", rows)
    return path


def write_table(path: Path, rows: list[dict[str, str]]) -> None:
    columns = list(dict.fromkeys(c for row in rows for c in row))
    lines = ["\t".join(columns)] + ["\t".join(row.get(c, "") for c in columns) for row in rows]
    path.write_text("\n".join(lines) + "\n")


def real(visit: str, folder: Path, **overrides: str) -> dict[str, str]:
    return {"visit": visit, "path": str(folder), "data_type": "real", "simulation": "",
            **overrides}


def one(folder: Path, pattern: str) -> Path:
    (path,) = folder.glob(pattern)
    return path


def nothing_trusted_left(work: Path, visit: str) -> None:
    """No file of the visit that a later run would take as done."""
    for name in TRUSTED:
        assert not (work / "results" / visit / name).exists(), name
    summary = work / "results" / "summary.tsv"
    if summary.exists() and summary.read_text().strip():
        assert visit not in set(pd.read_csv(summary, sep="\t").visit)


# --- damaged copies of the small simulated visit --------------------------------------------

def truncate(folder: Path) -> str:
    cube = one(folder, "*SCI_COR_SubArray*")
    with fits.open(cube) as hdul:
        info = hdul[1].fileinfo()
    needs, size = info["datLoc"] + info["datSpan"], cube.stat().st_size // 2
    os.truncate(cube, size)
    return f"{cube}: truncated: HDU 1 needs {needs} bytes, file has {size}"


def remove_lightcurves(folder: Path) -> str:
    for path in folder.glob("*Lightcurve*"):
        path.unlink()
    key = "_".join(one(folder, "*SCI_COR_SubArray*").name.split("_")[1:3])  # PR.._TG..
    return (f"{folder}: no SCI_COR_Lightcurve product of visit {key}; its roll angles and "
            f"centroids are needed")


def not_fits(folder: Path) -> str:
    lc = one(folder, "*Lightcurve-RINF*")
    lc.write_text("<html>404 not found</html>\n")
    return (f"{lc}: not a readable FITS file (No SIMPLE card found, this file does not appear "
            f"to be a valid FITS file)")


def wrong_shape(folder: Path) -> str:
    cube = one(folder, "*SCI_COR_SubArray*")
    with fits.open(cube) as hdul:
        hdus = [h.copy() for h in hdul]
    hdus[1] = fits.ImageHDU(np.zeros((60, 100, 100), np.float32), name="SCI_COR_SubArray")
    fits.HDUList(hdus).writeto(cube, overwrite=True)
    return f"{cube}: SCI_COR_SubArray is not a cube of 200x200 frames (NAXIS = 3, frames 100x100)"


def keep_rows(path: Path, n: int) -> None:
    """Cut the table in HDU 1 of ``path`` to its first ``n`` rows, in place."""
    with fits.open(path) as hdul:
        hdul[1] = fits.BinTableHDU(hdul[1].data[:n], header=hdul[1].header)
        hdul.writeto(path, overwrite=True)


def short_lightcurve(folder: Path) -> str:
    lc = one(folder, "*Lightcurve-RSUP*")
    keep_rows(lc, 50)
    cube = one(folder, "*SCI_COR_SubArray*")
    return f"{lc}: light curve has 50 rows but the subarray {cube.name} has 60 frames"


def empty_catalogue(folder: Path) -> str:
    cat = one(folder, "*StarCatalogue*")
    keep_rows(cat, 0)
    return f"{cat}: star catalogue is empty: initial_detect 'fits' needs its stars (use dynam)"


def remove_catalogue(folder: Path) -> str:
    one(folder, "*StarCatalogue*").unlink()
    return (f"{folder}: initial_detect 'fits' needs the star catalogue (EXT_PRE_StarCatalogue), "
            f"which this visit lacks")


def set_roll(folder: Path, frames, curves: str = "*Lightcurve*") -> None:
    for lc in folder.glob(curves):
        with fits.open(lc, mode="update") as hdul:
            hdul[1].data["ROLL_ANGLE"][frames] = np.nan


@pytest.fixture(scope="module")
def damaged(small_visit, tmp_path_factory):
    """A factory: a copy of the small visit's DRP folder, damaged by ``how`` (returns the
    folder and the expected end of the error line)."""
    root = tmp_path_factory.mktemp("damaged")

    def make(name: str, how=None) -> tuple[Path, str]:
        folder = root / name
        shutil.copytree(small_visit.drp_folder, folder)
        return folder, (how(folder) if how else "")

    return make


# --- checks at start: snakemake -n ends with the one line, before any job ------------------

@pytest.mark.parametrize("name, how, detect", [
    ("truncated", truncate, "fits"),
    ("no_lightcurves", remove_lightcurves, "fits"),
    ("not_fits", not_fits, "fits"),
    ("wrong_shape", wrong_shape, "fits"),
    ("short_lightcurve", short_lightcurve, "dynam"),
    ("empty_catalogue_fits", empty_catalogue, "fits"),
    ("no_catalogue_fits", remove_catalogue, "fits"),
])
def test_bad_products_stop_the_run_at_start(tmp_path, damaged, name, how, detect):
    folder, problem = damaged(name, how)
    work = make_workdir(tmp_path, [real(name, folder, initial_detect=detect)])
    run = snakemake(work, "-n")
    assert run.returncode == 1
    assert last_line(run) == f"Error: {TABLE}: visit {name}: {problem}"
    assert "ignore_missing_simple" not in run.stdout and "Traceback" not in run.stdout
    assert "truncated" not in run.stdout.replace(last_line(run), "")  # no astropy warning
    nothing_trusted_left(work, name)


@pytest.mark.parametrize("table, message", [
    ("visit\tpath\tdata_type\tsimulation\nmine\t\treal\t\n",
     f"{TABLE}: visit mine: empty path cell (the folder of the visit's products)"),
    ("visit path data_type simulation\nmine /data/v real\n",
     f"{TABLE}: columns must be separated by tabs, not spaces (header "
     f"'visit path data_type simulation')"),
    ("visit\tpath\nmine\t/data/v\n",
     f"{TABLE}: missing column(s) data_type (columns: visit, path; expected visit, data_type, "
     f"path, simulation)"),
    ("visit\tpath\tdata_type\nmine\t/no/such/visit\treal\n",
     f"{TABLE}: visit mine: folder /no/such/visit does not exist"),
    ("visit\tpath\tdata_type\nmine\t/tmp\treel\n",
     f"{TABLE}: visit mine: data_type 'reel' is not one of real, simulated"),
    ("visit\tpath\tdata_type\n", f"{TABLE}: no visit (the table has a header only)"),
    ("visit\tpath\tdata_type\tval_range\nmine\t/tmp\treal\t[12,\n",
     f"{TABLE}: visit mine: column val_range: '[12,' is not a YAML value"),
])
def test_bad_visits_table_stops_the_run_at_start(tmp_path, table, message):
    work = make_workdir(tmp_path, [])
    (work / TABLE).write_text(table)
    run = snakemake(work, "-n")
    assert run.returncode == 1
    assert last_line(run) == f"Error: {message}"
    assert not (work / "results").exists()


CONFIG = "config/config.yaml"


@pytest.mark.parametrize("change, message", [
    ({"bogus": 1}, f"{CONFIG}: unknown option 'bogus'"),
    ({"photometry": {"stpe": 3}}, f"{CONFIG}: unknown option 'photometry.stpe' (did you mean "
                                  f"'step'?)"),
    ({"outputs": {"save_giff": True}}, f"{CONFIG}: unknown option 'outputs.save_giff' (did you "
                                       f"mean 'save_gif'?)"),
    ({"layout": "flat"}, f"{CONFIG}: layout: 'flat' is not one of ['auto', 'drp', 'cheopsim']"),
    ({"fine_tune_jobs": 0}, f"{CONFIG}: fine_tune_jobs: 0 is less than the minimum of 1"),
    ({"photometry": {"method": "oval"}}, f"{CONFIG}: method 'oval' is not one of circle, shape, "
                                         f"psf or a 'primary+secondary' pair of them"),
    ({"photometry": {"step": "two"}}, f"{CONFIG}: photometry.step: 'two' is not of type "
                                      f"'number'"),
    ({"photometry": {"val_range": [12]}}, f"{CONFIG}: photometry.val_range: [12] is too short"),
    ({"photometry": {"step": 40}}, f"{CONFIG}: step 40 is larger than val_range [12.0, 16.0]: "
                                   f"the first round needs two factors or more"),
    ({"optimize": False, "optimized_factors": "nothing.yaml"},
     f"{CONFIG}: optimize is false but optimized_factors 'nothing.yaml' is not a file"),
])
def test_config_typos_stop_the_run_at_start(tmp_path, change, message):
    work = make_workdir(tmp_path, [{"visit": "sim", "data_type": "simulated",
                                    "simulation": "config/simulation_demo.yaml"}])
    config = yaml.safe_load((work / CONFIG).read_text())
    for key, value in change.items():
        if isinstance(value, dict):
            config[key].update(value)
        else:
            config[key] = value
    (work / CONFIG).write_text(yaml.safe_dump(config))
    run = snakemake(work, "-n")
    assert run.returncode == 1
    assert last_line(run) == f"Error: {message}"
    assert not (work / "results").exists() and not (work / "resources").exists()


def test_config_that_is_not_yaml_is_named_with_the_place(tmp_path):
    work = make_workdir(tmp_path, [])
    with open(work / CONFIG, "a") as fh:
        fh.write("extra: [1, 2\n")
    run = snakemake(work, "-n")
    assert run.returncode == 1
    n_lines = len((work / CONFIG).read_text().splitlines())
    assert last_line(run) == (f"Error: {CONFIG}: line {n_lines + 1}, column 1: expected ',' or "
                              f"']', but got '<stream end>' (not valid YAML)")


def test_step_larger_than_the_range_of_one_visit_is_named(tmp_path, damaged):
    folder, _ = damaged("steps")
    work = make_workdir(tmp_path, [real("steps", folder, step="6")])
    run = snakemake(work, "-n")
    assert run.returncode == 1
    assert last_line(run) == (f"Error: {TABLE}: visit steps: step 6 is larger than val_range "
                              f"[12.0, 16.0]: the first round needs two factors or more")


# --- real runs: a failed job's one line last, the others done, warnings once ---------------

@pytest.fixture(scope="module")
def keep_going_run(tmp_path_factory, damaged):
    """Five visits with --keep-going: all roll angles NaN (its jobs fail), 20 % NaN roll,
    NaN roll in the DEFAULT curve only, an empty and a missing catalogue with dynam
    detection (fine)."""
    nan_roll, _ = damaged("nan_roll")
    set_roll(nan_roll, slice(None))
    roll20, _ = damaged("roll20")
    set_roll(roll20, np.arange(0, 60, 5))  # 12 of 60 frames
    nan_default, _ = damaged("nan_default")
    set_roll(nan_default, np.arange(0, 60, 5), "*Lightcurve-DEFAULT*")
    empty, _ = damaged("empty_dynam", empty_catalogue)
    missing, _ = damaged("missing_dynam", remove_catalogue)
    work = make_workdir(tmp_path_factory.mktemp("keepgoing"), [
        real("nan_roll", nan_roll), real("roll20", roll20), real("nan_default", nan_default),
        real("empty_dynam", empty, initial_detect="dynam"),
        real("missing_dynam", missing, initial_detect="dynam")])
    (work / "results").mkdir()
    (work / "results" / "summary.tsv").write_text("visit\tstar\nnan_roll\t0\n")  # stale
    run = snakemake(work, "-j2", "--keep-going")
    return work, run, {"nan_roll": nan_roll, "roll20": roll20, "nan_default": nan_default}


def test_a_failed_job_ends_the_run_with_its_one_line(keep_going_run):
    work, run, folders = keep_going_run
    assert run.returncode == 1
    lc = one(folders["nan_roll"], "*Lightcurve-DEFAULT*")
    line = last_line(run)
    assert line.startswith("Error: visit nan_roll (")  # the job that read the visit first
    assert line.endswith(f"): {lc}: every roll angle is NaN: the roll cannot be estimated")
    assert "Traceback" not in run.stdout
    nothing_trusted_left(work, "nan_roll")
    failed = pd.read_csv(work / "results" / "failed_visits.tsv", sep="\t")
    assert list(failed.visit) == ["nan_roll"]
    again = snakemake(work, "-n")  # a later run tries the failed visit again, only it
    assert again.returncode == 0
    assert "results/nan_roll/prepared.fits" in again.stdout
    assert "results/roll20/prepared.fits" not in again.stdout


def test_the_run_ends_with_a_summary_and_summary_tsv_has_the_visits_done(keep_going_run):
    work, run, _ = keep_going_run
    lines = run.stdout.rstrip("\n").splitlines()
    (summary,) = [line for line in lines if line.startswith("archi: ")]
    assert summary.startswith("archi: 4 visit(s) done (") and ", 1 failed;" in summary
    assert lines.index(summary) > len(lines) - 6  # at the end, before warnings and the error
    table = pd.read_csv(work / "results" / "summary.tsv", sep="\t")
    assert set(table.visit) == {"roll20", "nan_default", "empty_dynam",
                                "missing_dynam"}  # not the stale row
    n_stars = int(summary.split("done (")[1].split(" stars")[0])
    assert n_stars == len(table)


def test_nan_roll_warning_is_said_once_on_the_console_and_in_run_info(keep_going_run):
    work, run, folders = keep_going_run
    lc = one(folders["roll20"], "*Lightcurve-DEFAULT*").name
    warning = f"{lc}: 12 NaN roll angle(s) estimated from time"
    assert run.stdout.count(warning) == 1
    assert f"Warning: visit roll20: {warning}" in run.stdout
    info = yaml.safe_load((work / "results" / "roll20" / "run_info.yaml").read_text())
    assert info["inputs"]["warnings"] == [warning]
    logs = [p for p in (work / "logs" / "roll20").rglob("*.log") if warning in p.read_text()]
    assert [p.name for p in logs] == ["prepare.log"]


def test_nan_roll_of_the_default_curve_only_comes_from_the_other_curves(keep_going_run,
                                                                         small_visit):
    work, run, folders = keep_going_run
    lc = one(folders["nan_default"], "*Lightcurve-DEFAULT*").name
    warning = f"{lc}: NaN roll angle(s) taken from the other DRP light curves (12 from OPTIMAL)"
    assert f"Warning: visit nan_default: {warning}" in run.stdout
    info = yaml.safe_load((work / "results" / "nan_default" / "run_info.yaml").read_text())
    assert info["inputs"]["warnings"] == [warning]  # none estimated from time
    # the roll angles of the light curves: those of the intact visit, exactly
    curves = read_lightcurves_fits(work / "results" / "nan_default" / "lightcurves.fits")
    assert np.array_equal(curves.roll_angle, read_visit(small_visit.drp_folder).roll_angle)


@pytest.mark.parametrize("visit", ["empty_dynam", "missing_dynam"])
def test_no_catalogue_star_is_fine_for_dynam_detection(keep_going_run, visit):
    work, run, _ = keep_going_run
    info = yaml.safe_load((work / "results" / visit / "run_info.yaml").read_text())
    assert len(info["stars"]) >= 3  # the small visit's bright stars, found in the images
    assert all(star["catalogue"] is None for star in info["stars"])


def test_a_subarray_replaced_in_place_reruns_its_visit(keep_going_run):
    work, _, folders = keep_going_run
    assert "results/roll20/prepared.fits" not in snakemake(work, "-n").stdout
    cube = one(folders["roll20"], "*SCI_COR_SubArray*")
    old = cube.stat()
    replacement = cube.with_suffix(".new")
    shutil.copyfile(cube, replacement)
    with fits.open(replacement, mode="update") as hdul:
        hdul["SCI_COR_SubArray"].data[0] *= 1.01
    os.utime(replacement, ns=(old.st_atime_ns, old.st_mtime_ns - 10**9))  # even older
    os.replace(replacement, cube)
    plan = snakemake(work, "-n")
    assert plan.returncode == 0
    assert "results/roll20/prepared.fits" in plan.stdout
    assert "results/empty_dynam/prepared.fits" not in plan.stdout


# --- archi-simulate never deletes a user's files unasked -----------------------------------

def test_archi_simulate_refuses_a_non_empty_folder_without_force(tmp_path, capsys):
    out = tmp_path / "visit"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    assert simulate_main([str(out), "--n-frames", "3"]) == 1
    assert "use --force" in capsys.readouterr().err
    assert (out / "notes.txt").read_text() == "mine"
    assert simulate_main([str(out), "--n-frames", "3", "--force"]) == 0
    assert not (out / "notes.txt").exists() and (out / "truth.fits").exists()
    assert yaml.safe_load((out / "simulation.yaml").read_text())["n_frames"] == 3


def test_readme_commands_for_your_own_visits_name_the_table():
    """Typed as written, a resume without --config visits=... runs the demo table instead
    and "succeeds" without resuming anything."""
    text = (ROOT / "README.md").read_text()
    section = text.split("## Your own DRP visits", 1)[1].split("\n## ", 1)[0]
    commands = [c for c in re.findall(r"`([^`]*snakemake [^`]*)`", section)]
    assert len(commands) >= 3  # the run, a rerun after a failure, a resume after a kill
    for command in commands:
        for part in command.split("&&"):
            assert "--config visits=my_visits.tsv" in part, command
