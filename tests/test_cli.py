"""The ``archi`` command line and DACE ``.tgz`` visits: the command writes the same light
curves as :func:`archi.pipeline.run`, from the folder or from the archive as DACE delivers it;
bad options and unsafe archives are one line."""

from __future__ import annotations

import io
import re
import shutil
import subprocess
import sys
import tarfile
import tomllib
from pathlib import Path

import numpy as np
import pytest
import yaml

from archi import __version__, cli, pipeline
from archi.errors import ProductNotFoundError
from archi.io.archive import unpack_visit
from archi.io.find import find_visit_products
from archi.io.lightcurves import read_lightcurves_fits
from archi.options import Options

ROOT = Path(__file__).parents[1]
SEARCH = {"val_range": (10, 24), "step": 2, "optimization_extensions": 1}


def archi_command(*args: str) -> subprocess.CompletedProcess:
    """``python -m archi ARGS`` (the installed ``archi`` script calls the same main)."""
    return subprocess.run([sys.executable, "-m", "archi", *args], capture_output=True,
                          text=True, cwd=ROOT)


@pytest.fixture(scope="module")
def visit(tmp_path_factory):
    from archi.simulate import SimulationConfig, simulate_visit
    return simulate_visit(SimulationConfig(n_frames=60, seed=11, layouts=("drp",)),
                          tmp_path_factory.mktemp("sim") / "visit").drp_folder


@pytest.fixture(scope="module")
def dace_archive(visit, tmp_path_factory):
    """The visit packed as DACE delivers it: one folder named after the visit, in a .tgz."""
    path = tmp_path_factory.mktemp("dace") / f"{visit.name}.tgz"
    with tarfile.open(path, "w:gz") as tar:
        tar.add(visit, arcname=visit.name)
    return path


@pytest.fixture(scope="module")
def reference(visit, tmp_path_factory):
    """The light curves of the library's run on the folder."""
    out = tmp_path_factory.mktemp("api")
    pipeline.run(visit, Options(method="shape", **{**SEARCH, "val_range": (1, 6), "step": 1}),
            out, show_results=False, debug=False)
    return read_lightcurves_fits(out / "lightcurves.fits")


def test_archi_run_on_the_dace_archive_writes_the_api_light_curves(reference, dace_archive,
                                                                  tmp_path):
    code = cli.main(["run", str(dace_archive), str(tmp_path), "--method", "shape",
                     "--val-range", "[1, 6]", "--step", "1", "--optimization_extensions",
                     "1", "--show_results", "false", "--debug", "false"])
    assert code == 0
    curves = read_lightcurves_fits(tmp_path / "lightcurves.fits")
    assert set(curves.methods) == {"shape"}  # the options reached the run
    assert curves.visit_key == reference.visit_key and curves.n_stars == reference.n_stars
    for name in ("flux", "flux_err", "flag", "factors", "mjd_time"):
        np.testing.assert_array_equal(getattr(curves, name), getattr(reference, name),
                                      err_msg=name)
    assert (tmp_path / "dace" / dace_archive.stem / reference_subarray(tmp_path)).is_file()


def reference_subarray(out: Path) -> str:
    """The name of the SubArray file unpacked into ``out/dace``."""
    (path,) = (out / "dace").glob("*/*SCI_COR_SubArray*.fits")
    return path.name


def test_version_and_bad_options_are_one_line(visit, tmp_path):
    done = archi_command("--version")
    assert done.returncode == 0 and done.stdout.strip() == f"archi {__version__}"
    for bad, named in ((["--method", "square"], "method 'square'"),
                       (["--val_range", "[1,"], "--val_range '[1,'"),
                       (["--no-such-option", "1"], "--no-such-option"),
                       (["--optimize", "maybe"], "--optimize 'maybe'")):
        done = archi_command("run", str(visit), str(tmp_path / "out"), *bad)
        assert done.returncode == 2, bad
        assert len(done.stderr.strip().splitlines()) == 1 and named in done.stderr, done.stderr
    assert not (tmp_path / "out").exists()  # nothing run


def test_an_options_file_is_read_as_config_yaml_and_the_command_line_wins(tmp_path):
    config = yaml.safe_load((ROOT / "config" / "config.yaml").read_text())
    config["photometry"]["magnitude_limit"] = 11.5
    config["outputs"]["save_gif"] = True
    (tmp_path / "mine.yaml").write_text(yaml.safe_dump(config))
    args = cli.build_parser().parse_args(["run", "v", "out", "--options",
                                          str(tmp_path / "mine.yaml"), "--method", "shape",
                                          "--step", "1", "--debug", "false"])
    options, settings = cli.run_arguments(args)
    expected = {**config["photometry"], "method": "shape", "step": 1}
    assert options.to_dict() == Options.from_mapping(expected).to_dict()
    assert options.magnitude_limit == 11.5 and options.method == "shape"
    assert settings["save_gif"] is True and settings["debug"] is False
    assert settings["export_text"] is True and settings["workers"] == 1  # defaults


def test_archi_simulate_is_the_archi_simulate_command(tmp_path):
    done = archi_command("simulate", str(tmp_path / "sim"), "--n-frames", "5",
                         "--layouts", "drp")
    assert done.returncode == 0, done.stderr
    assert len(list((tmp_path / "sim").glob("*/*SCI_COR_SubArray*.fits"))) == 1
    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    assert scripts == {"archi": "archi.cli:main", "archi-simulate": "archi.simulate.cli:main"}


def tar_with(path: Path, member: tarfile.TarInfo, data: bytes = b"x") -> Path:
    with tarfile.open(path, "w:gz") as tar:
        member.size = len(data) if member.isfile() else 0
        tar.addfile(member, io.BytesIO(data) if member.isfile() else None)
    return path


def test_an_archive_member_outside_its_folder_is_refused(tmp_path):
    evil = tar_with(tmp_path / "evil.tgz", tarfile.TarInfo("visit/../../evil"))
    done = archi_command("run", str(evil), str(tmp_path / "out"))
    assert done.returncode == 1
    assert done.stderr.strip() == (f"archi run: error: {evil}: member 'visit/../../evil' "
                                   f"points outside the archive's folder; refused")
    link = tarfile.TarInfo("visit/link")
    link.type, link.linkname = tarfile.SYMTYPE, "/etc/passwd"
    with pytest.raises(ProductNotFoundError, match="'visit/link' is a link"):
        unpack_visit(tar_with(tmp_path / "link.tgz", link), tmp_path / "cache")
    assert sorted(p.name for p in tmp_path.rglob("*evil*")) == ["evil.tgz"]
    assert not (tmp_path / "cache").exists() and not (tmp_path / "out" / "dace").exists()


def test_an_archive_is_unpacked_once_and_never_over_other_files(dace_archive, tmp_path):
    cache = unpack_visit(dace_archive, tmp_path / "cache")
    stamp = {p: p.stat().st_mtime_ns for p in cache.rglob("*")}
    assert unpack_visit(dace_archive, cache) == cache  # reused, not rewritten
    assert {p: p.stat().st_mtime_ns for p in cache.rglob("*")} == stamp
    other = tmp_path / "other"
    other.mkdir()
    (other / "mine.txt").write_text("keep")
    with pytest.raises(ProductNotFoundError, match="already exists"):
        unpack_visit(dace_archive, other)
    assert [p.name for p in other.iterdir()] == ["mine.txt"]
    # read where it lies: the cache beside the archive
    copy = shutil.copy(dace_archive, tmp_path / "PR1_V0300.tgz")
    products = find_visit_products(copy)
    assert products.folder == tmp_path / "PR1_V0300_unpacked"
    assert products.subarray.parent == products.folder / dace_archive.stem


# -- the workflow: options typed flat on --config, a visit given as its DACE archive ------

def workflow_dir(path: Path, visits: str) -> Path:
    """A working directory with the default configuration and the visits table ``visits``."""
    shutil.copytree(ROOT / "config", path / "config")
    (path / "config" / "visits.tsv").write_text("visit\tpath\tdata_type\tsimulation\n" + visits)
    return path


def snakemake_dry(workdir: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "snakemake", "-n", "--snakefile",
                           str(ROOT / "workflow" / "Snakefile"), "--directory", str(workdir),
                           *args], capture_output=True, text=True, timeout=300)


def planned(run: subprocess.CompletedProcess, rule: str) -> int:
    """How many jobs of ``rule`` a dry run plans (its "Job stats" table)."""
    found = re.search(rf"^{rule}\s+(\d+)$", run.stdout.split("Job stats:")[1], re.M)
    return int(found[1]) if found else 0


def test_options_are_set_with_config_as_users_type_them(dace_archive, tmp_path):
    work = workflow_dir(tmp_path, f"v\t{dace_archive}\treal\t\n")
    # factors 1, 2, 3, 4: one photometry job each (the grid is the options' alone)
    flat = snakemake_dry(work, "--config", "method=shape", "val_range=[1, 4]", "step=1",
                         "save_gif=false")
    assert flat.returncode == 0, flat.stderr
    assert planned(flat, "photometry") == 4 and planned(flat, "gif") == 0
    nested = snakemake_dry(work, "--config", "photometry={magnitude_limit: 12, "
                                             "val_range: [10, 14]}")
    assert nested.returncode == 0, nested.stderr
    assert planned(nested, "photometry") == 3  # 10, 12, 14 (step 2 kept from the file)
    bad = snakemake_dry(work, "--config", "decontaminate=maybe")
    assert bad.returncode != 0 and "photometry.decontaminate: 'maybe' is not of type " \
                                  "'boolean'" in bad.stderr


def test_the_workflow_unpacks_a_dace_archive_once_and_refuses_an_unsafe_one(dace_archive,
                                                                           tmp_path):
    work = workflow_dir(tmp_path / "ok", f"v\t{dace_archive}\treal\t\n")
    run = snakemake_dry(work)
    assert run.returncode == 0, run.stderr
    assert planned(run, "prepare") == 1
    assert len(list((work / "results/v/dace").glob("*/*SCI_COR_SubArray*.fits"))) == 1
    evil = tar_with(tmp_path / "evil.tgz", tarfile.TarInfo("../evil"))
    work = workflow_dir(tmp_path / "bad", f"v\t{evil}\treal\t\n")
    run = snakemake_dry(work)
    assert run.returncode != 0
    assert (f"Error: config/visits.tsv: visit v: {evil}: member '../evil' points outside "
            f"the archive's folder; refused") in run.stderr.splitlines()
    assert not (tmp_path / "evil").exists() and not (work / "results/v/dace").exists()
