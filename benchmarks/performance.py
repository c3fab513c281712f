"""Performance benchmark: our pipeline against the original archi (pyarchi 1.2.1), and scaling.

    python benchmarks/performance.py [--sizes 300 1000 3000] [--archi-sizes 300 1000]
        [--star-counts 5 9 20] [--cache benchmarks/cache] [--output benchmarks/performance.md]
        [--no-archi]

Run it from the project's environment (``snakemake`` and ``archi`` importable). It prints a
Markdown report and writes it to ``--output``; every number and ratio in it comes from the
same run on the same machine.

What it measures
----------------
Simulated visits (:mod:`archi.simulate`, fixed seed, "drp" layout only) of a target and eight
companions are made once and cached under ``<cache>/visits/<frames>f_<stars>s/`` (outside
git: ``benchmarks/cache/`` is ignored). For each size in ``--sizes`` (9-star field):

* compute alone, in this process after a warm-up run on a 60-frame visit, each step the
  best of three runs: ``load_visit`` + ``prepare``; one photometry job's compute
  (``cdpp_table`` of every star at one factor, 14 px); ``extract`` with the factors the
  workflow chose; the export (FITS and text);
* the whole Snakemake workflow with ``-j2`` in a fresh working directory (optimisation with
  one extension round and the circle fine tune, then extraction and the exports): its wall
  time, and from the workflow's own benchmark files each job as a whole process (interpreter
  start and imports included): time [s] and peak RSS [MB], against the cube's size in
  memory (frames x 200 x 200 x 8 bytes); four runs: one job per factor (the default) and
  one job per visit, each with exact circles (the default), then one job per visit with
  binary circles (re-drawn at each position) and with archi's own circles
  (``aperture_mode: archi``: the first frame's binary mask moved by whole pixels);
* for sizes in ``--archi-sizes``: archi (pyarchi 1.2.1, in its own virtual environment made
  under ``<cache>/pyarchi-venv`` when missing, driven by ``benchmarks/pyarchi_runner.py``)
  on the same visit with the same settings: wall time and peak RSS of its process, and the
  CDPP of every star both tools find (matched by first-frame position within 3 px), both
  computed with :func:`archi.noise.k2_cdpp` on the same time array, plus each tool's own
  reported best CDPP.

For ``--star-counts`` (5, 9, 20 stars, 1000 frames, our pipeline only) it measures the
in-process ``load_visit`` + ``prepare`` and one photometry job's compute. Growth with frames
and with stars is reported as least-squares exponents of log(time) against log(frames) or
log(stars found). The report checks issue 17's targets at 1000 frames: the whole search
(every round, fine tune included) <= 0.5 s in process; one photometry job <= 0.5 s as a
whole process; the GIF <= 2 s and <= 2 MB; peak RSS <= 2x the cube; the workflow >= 25x
faster than archi with one job per factor and >= 40x with one job per visit; linear growth;
CDPP same or better than archi on every star both find.

Every measurement also records the CPU that other processes used meanwhile (in cores, from
/proc/stat minus the benchmark's own getrusage): the machine has two cores, and other work
on it slows the numbers. Run folders (workflow, archi, in-process outputs) are kept under
``<cache>/runs/<frames>f_<stars>s/`` for inspection.

Settings compared
-----------------
Circle masks, image-based (``dynam``) detection and tracking, radii 8-16 px in 2-px steps,
one range-extension round, the circle fine tune (best +/- 1 px in 0.1-px steps). Ours:
``optimization_extensions: 1`` (at most one extension round); archi's
``optimization_extensions: 0`` runs exactly one extension pass: both do one extension round,
each with its own rule for which stars are extended and how far. archi runs its
optimisation with two processes (``optim_processes: 2``), we run Snakemake with ``-j2``.

Why the simulated visits have no orbit gaps (``gap_minutes: 0``)
----------------------------------------------------------------
archi's ``dynam`` tracker predicts the field rotating the opposite way to the PIPE
convention the simulator follows (the roll angle decreases with time). It still keeps its
stars from frame to frame, because it re-detects every star within 30 px of the prediction
in every frame, but across an orbit gap the field turns too far and it loses them. The
benchmark therefore uses gap-free visits; it does not work around the tracker otherwise.

The field
---------
The target and eight companions 55-76 px from it, 0.5-2.0 mag fainter, every pair at least
50 px apart: archi associates each detection with the first prediction within a +/-30 px
box (up to 42 px on the diagonal) and swaps stars that come closer; in a field with pairs
42 px apart it lost 9 of 10 companions. Nine stars is as many as fit within 76 px at that
spacing (76 px plus a 20-px circle stays inside the 100-px field). Checked by
:func:`check_field`. The 5-star field is the target and the inner four companions; the
20-star field adds eleven fainter stars (2.5-4.0 mag fainter), each at least 20 px from
every other star and within 80 px of the target.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import importlib.metadata
import json
import math
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import yaml

from archi import api, plots
from archi.io.lightcurves import read_lightcurves_fits, write_lightcurves_fits
from archi.io.lightcurves_text import write_lightcurves_text
from archi.noise import k2_cdpp
from archi.io.factors_file import optimized_factors_for
from archi.options import Options
from archi.simulate import SimulationConfig, simulate_visit
from archi.simulate.config import StarSpec
from archi.stars import FLAG_NOT_MEASURED

ROOT = Path(__file__).resolve().parents[1]
SNAKEFILE = ROOT / "workflow" / "Snakefile"
PYARCHI_RUNNER = Path(__file__).resolve().parent / "pyarchi_runner.py"
PYARCHI_VERSION = "1.2.1"
PYARCHI_DEPENDENCIES = ("numpy", "astropy", "opencv-python-headless", "pyyaml", "matplotlib",
                        "imageio", "scipy")

SEED = 2024
FRAME_SHAPE = (200, 200)
BYTES_PER_PIXEL = 8  # the cube is float64 in memory
PHOTOMETRY_FACTOR = 14.0  # radius [px] of the single photometry job measured in process
STAR_SCALING_FRAMES = 1000
MAIN_STARS = 9  # stars of the field measured at every size, target included
WARM_UP_FRAMES = 60  # the K2 CDPP needs 41 frames
REPEATS = 3  # in-process steps: best of this many runs (other work may share the machine)
JUMP_THRESHOLD = 0.05  # a frame-to-frame flux change above this fraction of the median
MATCH_TOLERANCE_PX = 3.0
VISIT_NAME = "v1000"  # the visit's name in the workflow's visits.tsv

# minimum separations of the field [pixel]
BRIGHT_SEPARATION = 50.0
FAINT_SEPARATION = 20.0
FAINT_MAX_DISTANCE = 80.0

# the targets
TARGET_FRAMES = 1000
TARGET_SEARCH_S = 0.5  # the whole search in process (issue 17)
TARGET_PHOTOMETRY_PROCESS_S = 0.5
TARGET_GIF_S = 2.0
TARGET_GIF_MB = 2.0
TARGET_RSS_OVER_CUBE = 2.0
TARGET_PLOTS_S = 0.5  # "plots and summary <= 0.5 s"
TARGET_SPEEDUP = {"search_jobs: factor": 25.0}  # every other mode: one job per visit
TARGET_SPEEDUP_VISIT = 40.0
LINEAR_EXPONENT_MAX = 1.1  # "linear": measured exponent at most this

# (distance [px], position angle [deg], dmag): an inner ring of four at 55 px and an outer
# ring of four at 76 px staggered by 45 deg, every pair >= 53 px apart: archi's tracker
# associates detections within a +/-30 px box (up to 42 px on the diagonal) and swaps stars
# that come closer, and at most 76 + 20 px keeps the best circles inside the field.
COMPANIONS: tuple[StarSpec, ...] = (
    StarSpec(55.0, 0.0, 0.5),
    StarSpec(55.0, 90.0, 1.0),
    StarSpec(55.0, 180.0, 1.5),
    StarSpec(55.0, 270.0, 2.0),
    StarSpec(76.0, 45.0, 0.8),
    StarSpec(76.0, 135.0, 1.2),
    StarSpec(76.0, 225.0, 1.8),
    StarSpec(76.0, 315.0, 1.4),
)
# fainter stars of the 20-star field: close to the target, between the rings, and outside
FAINT_STARS: tuple[StarSpec, ...] = (
    StarSpec(24.0, 0.0, 3.0),
    StarSpec(24.0, 90.0, 3.5),
    StarSpec(24.0, 180.0, 2.5),
    StarSpec(24.0, 270.0, 4.0),
    StarSpec(40.0, 45.0, 2.8),
    StarSpec(40.0, 135.0, 3.8),
    StarSpec(40.0, 225.0, 2.6),
    StarSpec(40.0, 315.0, 3.4),
    StarSpec(80.0, 0.0, 3.0),
    StarSpec(80.0, 90.0, 3.2),
    StarSpec(80.0, 180.0, 3.6),
)

# the photometry settings of both our workflow and the in-process measurements
PHOTOMETRY = {
    "method": "circle",
    "initial_detect": "dynam",
    "detect_mode": "dynam",
    "repeat_removal": 1,
    "optimization_extensions": 1,
    "fine_tune_circle": True,
    "val_range": [8, 16],
    "step": 2,
}
# the workflow runs with one job per visit and other circles than our exact default:
# binary (pixel centre within the radius, re-drawn at each position) and archi's own (the
# first frame's binary mask moved by whole pixels: the same masks as archi)
BINARY_LABEL = "search_jobs: visit, aperture_mode: binary"
ARCHI_MASK_LABEL = "search_jobs: visit, aperture_mode: archi"
# archi's (pyarchi_runner.py) options for the same search
ARCHI_OPTIONS = {
    "method": "circle",
    "initial_detect": "dynam",
    "detect_mode": "dynam",
    "val_range": [8, 16],
    "step": 2,
    "optimization_extensions": 0,
    "fine_tune_circle": 1,
    "optim_processes": 2,
    "repeat_removal": 0,
}


# --------------------------------------------------------------------------------------------
# Results
# --------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class InProcessTimes:
    """Compute alone, in this process [s]."""

    n_frames: int
    n_stars: int  # stars found
    load_s: float
    prepare_s: float
    photometry_s: float  # one cdpp_table of every star at PHOTOMETRY_FACTOR (best of REPEATS)
    extract_s: float  # best of REPEATS
    export_s: float  # FITS + text, best of REPEATS
    other_cores: float = math.nan  # other processes' CPU during the measurement [cores]
    search_s: float = math.nan  # the whole search (optimize_factors), best of REPEATS
    gif_s: float = math.nan  # the tracking GIF (plots.save_gif), best of REPEATS
    gif_mb: float = math.nan  # its size [MB]
    figures_s: float = math.nan  # the slowest figure (every star's plot in one call)

    @property
    def load_prepare_s(self) -> float:
        return self.load_s + self.prepare_s


@dataclass(frozen=True)
class JobStats:
    """Time [s] and peak memory [MB] of workflow jobs of one kind (whole processes): RSS
    summed over a job's processes (a page a forked child shares with its parent counts
    twice) and PSS (each shared page split among the processes that share it)."""

    n_jobs: int
    median_s: float
    max_s: float
    max_rss_mb: float
    max_pss_mb: float = math.nan


@dataclass(frozen=True)
class WorkflowRun:
    wall_s: float
    jobs: dict[str, JobStats]  # prepare, photometry, ..., figures, summary
    max_rss_mb: float  # over every job with a benchmark file
    results: Path
    other_cores: float = math.nan  # other processes' CPU during the run [cores]
    # from the start until archi's products (factors, light curves FITS and text) were all
    # written; the rest of the run makes our extra products (plots, summary tables)
    products_s: float = math.nan
    max_pss_mb: float = math.nan  # over every job with a benchmark file


@dataclass(frozen=True)
class ArchiRun:
    wall_s: float  # its whole process, interpreter start included
    peak_rss_mb: float
    rss_source: str
    total_s: float  # archi's own optimisation + extraction + export time
    result: dict
    flux: np.ndarray  # (n_stars, n_frames)
    xy0: np.ndarray  # (n_stars, 2) first-frame (x, y) [pixel]
    mjd_time: np.ndarray
    other_cores: float = math.nan  # other processes' CPU during the run [cores]


@dataclass(frozen=True)
class StarComparison:
    ours: int
    archi: int
    x: float
    y: float
    distance_px: float
    our_factor: float
    archi_factor: float
    our_cdpp: float  # k2_cdpp of our light curve [ppm]
    archi_cdpp: float  # k2_cdpp of archi's light curve, same time array [ppm]
    our_reported: float  # best CDPP in our optimised-factors file [ppm]
    archi_reported: float  # archi's own CDPP of its curve [ppm]
    our_jumps: int  # frame-to-frame flux changes > JUMP_THRESHOLD of the median
    archi_jumps: int
    our_untracked: int  # frames where our tracker fell back to the predicted position

    @property
    def ours_not_worse(self) -> bool:
        return bool(self.our_cdpp <= self.archi_cdpp)


@dataclass(frozen=True)
class CdppComparison:
    matched: list[StarComparison]
    only_ours: list[tuple[int, float, float]]  # (star, x, y)
    only_archi: list[tuple[int, float, float]]


@dataclass
class SizeResult:
    n_frames: int
    in_process: InProcessTimes
    workflow: WorkflowRun  # search_jobs: factor (the default: one job per factor)
    workflow_visit: WorkflowRun | None = None  # search_jobs: visit (one job per visit)
    workflow_binary: WorkflowRun | None = None  # search_jobs: visit, binary circles
    # search_jobs: visit with archi's own circles (aperture_mode: archi): the same masks
    workflow_archi: WorkflowRun | None = None
    archi: ArchiRun | None = None
    comparison: CdppComparison | None = None  # archi against the default (exact) run
    comparison_binary: CdppComparison | None = None  # archi against workflow_binary
    comparison_archi: CdppComparison | None = None  # archi against workflow_archi

    @property
    def cube_mb(self) -> float:
        return cube_bytes(self.n_frames) / 1e6


@dataclass(frozen=True)
class StarCountResult:
    n_field: int  # stars simulated
    times: InProcessTimes


@dataclass
class Benchmark:
    command: str
    machine: dict[str, str]
    sizes: list[SizeResult] = field(default_factory=list)
    star_counts: list[StarCountResult] = field(default_factory=list)
    archi_skipped: str = ""


# --------------------------------------------------------------------------------------------
# Other work on the machine
# --------------------------------------------------------------------------------------------

def _busy_cpu_s() -> float:
    """CPU time [s] every process has used since boot (/proc/stat), NaN if unknown."""
    try:
        fields = Path("/proc/stat").read_text().splitlines()[0].split()
    except (OSError, IndexError):
        return math.nan
    user, nice, system, _idle, _iowait, irq, softirq, steal = (int(v) for v in fields[1:9])
    return (user + nice + system + irq + softirq + steal) / os.sysconf("SC_CLK_TCK")


def _own_cpu_s() -> float:
    """CPU time [s] of this process and of its finished (waited-for) descendants."""
    import resource
    own = resource.getrusage(resource.RUSAGE_SELF)
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


class CpuMeter:
    """CPU used by other processes while the block runs, in cores (CPU s / wall s): the
    machine's busy time minus the benchmark's own. Above ~0.1, other work slowed the
    numbers measured in the block."""

    def __enter__(self) -> CpuMeter:
        self.other_cores = math.nan
        self._start = (time.perf_counter(), _busy_cpu_s(), _own_cpu_s())
        return self

    def __exit__(self, *exc) -> None:
        wall0, busy0, own0 = self._start
        wall = time.perf_counter() - wall0
        other = (_busy_cpu_s() - busy0) - (_own_cpu_s() - own0)
        self.other_cores = max(other, 0.0) / wall if wall > 0 else math.nan


# --------------------------------------------------------------------------------------------
# The field and the cached visits
# --------------------------------------------------------------------------------------------

def offsets(specs: Sequence[StarSpec]) -> np.ndarray:
    """(dx, dy) [pixel] of each star from the target at roll 0 (the field turns rigidly)."""
    angle = np.radians([s.position_angle for s in specs])
    distance = np.array([s.distance for s in specs], dtype=float)
    return np.column_stack([distance * np.cos(angle), distance * np.sin(angle)])


def pairwise_distances(xy: np.ndarray) -> np.ndarray:
    d = np.hypot(xy[:, None, 0] - xy[None, :, 0], xy[:, None, 1] - xy[None, :, 1])
    np.fill_diagonal(d, np.inf)
    return d


def check_field(companions: Sequence[StarSpec] = COMPANIONS,
                faint: Sequence[StarSpec] = FAINT_STARS) -> None:
    """Assert the field's layout (see the module docstring); raise AssertionError if not."""
    for s in companions:
        assert 45.0 <= s.distance <= 76.0, f"companion {s} not 45-76 px from the target"
        assert 0.5 <= s.dmag <= 2.0, f"companion {s} not 0.5-2.0 mag fainter"
    bright = np.vstack([[0.0, 0.0], offsets(companions)])
    closest = pairwise_distances(bright).min()
    assert closest >= BRIGHT_SEPARATION, \
        f"two bright stars {closest:.1f} px apart (< {BRIGHT_SEPARATION} px)"
    for s in faint:
        assert s.distance <= FAINT_MAX_DISTANCE, f"faint star {s} beyond {FAINT_MAX_DISTANCE} px"
        assert 2.5 <= s.dmag <= 4.0, f"faint star {s} not 2.5-4.0 mag fainter"
    if faint:
        everything = np.vstack([bright, offsets(faint)])
        d = pairwise_distances(everything)[len(bright):]
        assert d.min() >= FAINT_SEPARATION, \
            f"a faint star {d.min():.1f} px from another (< {FAINT_SEPARATION} px)"


def field_for(n_stars: int) -> tuple[StarSpec, ...]:
    """The field of ``n_stars`` stars, target included: 5, 9 or 20."""
    fields = {5: COMPANIONS[:4], 9: COMPANIONS, 20: COMPANIONS + FAINT_STARS}
    if n_stars not in fields:
        raise ValueError(f"star count must be one of {sorted(fields)}, got {n_stars}")
    return fields[n_stars]


def simulation_config(n_frames: int, n_stars: int) -> SimulationConfig:
    return SimulationConfig(seed=SEED, n_frames=n_frames, gap_minutes=0, layouts=("drp",),
                            field=field_for(n_stars))


def _matches_cache(root: Path, cfg: SimulationConfig) -> bool:
    """Whether the visit cached in ``root`` was simulated with ``cfg``'s frames, seed, field."""
    try:
        stored = yaml.safe_load((root / "simulation.yaml").read_text())
    except (OSError, yaml.YAMLError):
        return False
    wanted = [(s.distance, s.position_angle, s.dmag) for s in cfg.field]
    got = [(float(s["distance"]), float(s["position_angle"]), float(s["dmag"]))
           for s in stored.get("field", [])]
    return (stored.get("n_frames") == cfg.n_frames and stored.get("seed") == cfg.seed
            and float(stored.get("gap_minutes", -1)) == cfg.gap_minutes and got == wanted)


@dataclass(frozen=True)
class VisitPaths:
    root: Path  # archi's base folder: holds the DRP folder one level down
    drp_folder: Path


def cached_visit(cache: Path, n_frames: int, n_stars: int) -> VisitPaths:
    """The simulated visit of ``n_frames`` frames and ``n_stars`` stars (made if missing)."""
    root = cache / "visits" / f"{n_frames}f_{n_stars}s"
    cfg = simulation_config(n_frames, n_stars)
    if not ((root / "truth.fits").is_file() and _matches_cache(root, cfg)):
        print(f"simulating {n_frames} frames, {n_stars} stars -> {root}", flush=True)
        simulate_visit(cfg, root)
    folders = [p for p in root.iterdir() if p.is_dir()]
    if len(folders) != 1:
        raise RuntimeError(f"{root}: expected one DRP folder, found {folders}")
    return VisitPaths(root, folders[0])


def cube_bytes(n_frames: int) -> int:
    return n_frames * FRAME_SHAPE[0] * FRAME_SHAPE[1] * BYTES_PER_PIXEL


# --------------------------------------------------------------------------------------------
# Our pipeline: in process, and the workflow
# --------------------------------------------------------------------------------------------

def our_options() -> Options:
    return Options.from_mapping(PHOTOMETRY, source="benchmark")


def _timed(fn: Callable, *args, repeats: int = 1, **kwargs):
    """(result of the last call, shortest of ``repeats`` wall times [s])."""
    best = math.inf
    for _ in range(repeats):
        t0 = time.perf_counter()
        out = fn(*args, **kwargs)
        best = min(best, time.perf_counter() - t0)
    return out, best


def _export(curves, out_dir: Path) -> None:
    write_lightcurves_fits(curves, out_dir / "lightcurves.fits")
    write_lightcurves_text(curves, out_dir / "lightcurves.txt")


def measure_in_process(drp_folder: Path, out_dir: Path,
                       factors: dict[int, float] | None = None,
                       repeats: int = REPEATS) -> InProcessTimes:
    """Time each step of our pipeline in this process, each the best of ``repeats`` runs.
    ``factors``: the extraction's mask radii (every star at PHOTOMETRY_FACTOR when None or
    not one per star found)."""
    options = our_options()
    with CpuMeter() as meter:
        visit, load_s = _timed(api.load_visit, drp_folder, options, repeats=repeats)
        prepared, prepare_s = _timed(api.prepare, visit, options, repeats=repeats)
        _, photometry_s = _timed(api.cdpp_table, visit, prepared, PHOTOMETRY_FACTOR,
                                 repeats=repeats)
        n = prepared.stars.n_stars
        if factors is None or set(factors) != set(range(n)):
            factors = {j: PHOTOMETRY_FACTOR for j in range(n)}
        curves, extract_s = _timed(api.extract, visit, prepared, factors, repeats=repeats)
        _, search_s = _timed(api.optimize_factors, visit, prepared, repeats=repeats)
        out_dir.mkdir(parents=True, exist_ok=True)
        _, export_s = _timed(_export, curves, out_dir, repeats=repeats)
        gif = out_dir / "star_tracking.gif"
        _, gif_s = _timed(plots.save_gif, visit, curves, gif, repeats=repeats)
        figures_s = max(_timed(draw, repeats=repeats)[1] for draw in (
            lambda: plots.plot_star_lightcurves(curves, out_dir / "plots"),
            lambda: plots.plot_field(visit, curves, out_dir / "field.png"),
            lambda: plots.plot_target_vs_drp(curves, visit, out_dir / "target_vs_drp.png"),
            lambda: plots.plot_drp_lightcurves(visit, out_dir / "drp.png")))
    return InProcessTimes(visit.n_frames, n, load_s, prepare_s, photometry_s, extract_s,
                          export_s, meter.other_cores, search_s, gif_s,
                          gif.stat().st_size / 1e6, figures_s)


def warm_up(cache: Path) -> None:
    """Import and run every step once on a small visit, so that lazy imports and first
    calls are not timed."""
    paths = cached_visit(cache, WARM_UP_FRAMES, MAIN_STARS)
    with tempfile.TemporaryDirectory() as tmp:
        measure_in_process(paths.drp_folder, Path(tmp), repeats=1)


def write_workflow_inputs(work: Path, drp_folder: Path, search_jobs: str = "factor",
                          aperture_mode: str = "exact") -> None:
    (work / "visits.tsv").write_text("visit\tpath\tdata_type\tsimulation\n"
                                     f"{VISIT_NAME}\t{drp_folder.resolve()}\treal\t\n")
    config = {
        "visits": "visits.tsv",
        "layout": "auto",
        "optimize": True,
        "optimized_factors": "",
        "search_jobs": search_jobs,
        "photometry": {**PHOTOMETRY, "aperture_mode": aperture_mode},
        "outputs": {"export_text": True, "show_results": False, "debug": False,
                    "save_gif": False},
    }
    (work / "config.yaml").write_text(yaml.safe_dump(config, sort_keys=False))


def run_workflow(drp_folder: Path, work: Path, search_jobs: str = "factor",
                 aperture_mode: str = "exact") -> WorkflowRun:
    """The whole workflow with -j2 in the fresh working directory ``work``; ``search_jobs``
    and ``aperture_mode``: the workflow's options (one job per factor or one job per visit;
    exact, binary or archi's own circles)."""
    if work.exists():
        shutil.rmtree(work)
    work.mkdir(parents=True)
    write_workflow_inputs(work, drp_folder, search_jobs, aperture_mode)
    command = [sys.executable, "-m", "snakemake", "-s", str(SNAKEFILE),
               "--configfile", "config.yaml", "-j2", "--quiet"]
    env = {**os.environ,
           "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"}
    with open(work / "snakemake.out", "w") as log, CpuMeter() as meter:
        started = time.time()  # the clock of file times
        t0 = time.perf_counter()
        proc = subprocess.run(command, cwd=work, env=env, stdout=log, stderr=subprocess.STDOUT)
        wall = time.perf_counter() - t0
    if proc.returncode != 0:
        tail = (work / "snakemake.out").read_text()[-3000:]
        raise RuntimeError(f"workflow failed in {work} (exit {proc.returncode}):\n{tail}")
    results = work / "results" / VISIT_NAME
    products = max(p.stat().st_mtime for p in archi_products(results)) - started
    return WorkflowRun(wall, workflow_job_stats(results / "benchmarks"),
                       _max_rss(sorted((results / "benchmarks").rglob("*.tsv"))), results,
                       meter.other_cores, products,
                       _max_rss(sorted((results / "benchmarks").rglob("*.tsv")), column=2))


def archi_products(results: Path) -> list[Path]:
    """Our files for what archi's run makes: the chosen factors, the light curves (FITS and
    text)."""
    return [results / "optimization" / "optimized_factors.yaml",
            results / "lightcurves.fits", results / "lightcurves.txt"]


def read_benchmark_tsv(path: Path) -> tuple[float, float, float]:
    """(s, max_rss, max_pss [MB]) of one Snakemake benchmark file (NaN when not recorded)."""
    row = pd.read_csv(path, sep="\t", na_values=["NA", "-"]).iloc[0]
    return (float(row["s"]),
            *(float(pd.to_numeric(row.get(name, np.nan), errors="coerce"))
              for name in ("max_rss", "max_pss")))


def _max_rss(paths: Sequence[Path], column: int = 1) -> float:
    """The largest max_rss (``column`` 1) or max_pss (2) [MB] of benchmark files."""
    values = [read_benchmark_tsv(p)[column] for p in paths]
    finite = [v for v in values if math.isfinite(v)]
    return max(finite) if finite else math.nan


def job_stats(paths: Sequence[Path]) -> JobStats | None:
    if not paths:
        return None
    rows = np.array([read_benchmark_tsv(p) for p in paths])
    rss, pss = (rows[:, k][np.isfinite(rows[:, k])] for k in (1, 2))
    return JobStats(len(paths), float(np.median(rows[:, 0])), float(rows[:, 0].max()),
                    float(rss.max()) if rss.size else math.nan,
                    float(pss.max()) if pss.size else math.nan)


def workflow_job_stats(bench: Path) -> dict[str, JobStats]:
    groups = {
        "prepare": [bench / "prepare.tsv"],
        "photometry": sorted(bench.glob("optimization/round*/f*.tsv")),
        "fine_tune": sorted(bench.glob("optimization/fine/part*.tsv")),
        "whole_visit": [bench / "whole_visit.tsv"],
        "extract": [bench / "extract.tsv"],
        "export_text": [bench / "export_text.tsv"],
        # the search's light decisions between rounds, on the run's critical path
        "decisions": [p for p in sorted(bench.glob("optimization/*.tsv"))],
        "figures": sorted(bench.glob("plot_*.tsv")) + [bench / "gif.tsv"],
        "summary": [bench.parents[1] / "benchmarks" / "summary.tsv"],
    }
    stats = {name: job_stats([p for p in paths if p.is_file()]) for name, paths in groups.items()}
    return {name: s for name, s in stats.items() if s is not None}


def workflow_factors(results: Path) -> dict[int, float]:
    """The factors the workflow chose ({} if some star has none)."""
    path = results / "optimization" / "optimized_factors.yaml"
    curves = read_lightcurves_fits(results / "lightcurves.fits")
    stored = optimized_factors_for(path, curves.visit_key)
    factors = stored.factors
    if any(f is None for f in factors.values()):
        return {}
    return {int(j): float(f) for j, f in factors.items()}


# --------------------------------------------------------------------------------------------
# archi (pyarchi 1.2.1)
# --------------------------------------------------------------------------------------------

def pyarchi_python(venv: Path) -> Path:
    return venv / "bin" / "python"


def ensure_pyarchi_venv(venv: Path) -> Path:
    """pyarchi's own virtual environment (made when missing); returns its python."""
    python = pyarchi_python(venv)
    # importing pyarchi creates my_app.log in the working directory: run it in the venv
    if python.is_file() and subprocess.run([str(python), "-c", "import pyarchi"], cwd=venv,
                                           capture_output=True).returncode == 0:
        return python
    print(f"making pyarchi's virtual environment in {venv}", flush=True)
    if venv.exists():
        shutil.rmtree(venv)
    base = shutil.which("python3") or sys.executable
    pip = [str(python), "-m", "pip", "install", "-q", "--disable-pip-version-check"]
    for command in ([base, "-m", "venv", str(venv)],
                    [*pip, *PYARCHI_DEPENDENCIES],
                    [*pip, "--no-deps", f"pyarchi=={PYARCHI_VERSION}"]):
        subprocess.run(command, check=True, stdin=subprocess.DEVNULL)
    return python


def run_archi(python: Path, base_folder: Path, work: Path) -> ArchiRun:
    """archi's optimisation, extraction and export on the visit under ``base_folder``."""
    if work.exists():
        shutil.rmtree(work)
    work.mkdir(parents=True)
    options_path = work / "options.json"
    options_path.write_text(json.dumps(ARCHI_OPTIONS))
    command = [str(python), str(PYARCHI_RUNNER), str(base_folder.resolve()), str(work.resolve()),
               str(options_path.resolve())]
    gnu_time = Path("/usr/bin/time")
    rss_file = work / "max_rss_kb.txt"
    if gnu_time.is_file():
        command = [str(gnu_time), "-f", "%M", "-o", str(rss_file), *command]
    with open(work / "archi.out", "w") as log, CpuMeter() as meter:
        t0 = time.perf_counter()
        proc = subprocess.run(command, stdout=log, stderr=subprocess.STDOUT,
                              stdin=subprocess.DEVNULL)
        wall = time.perf_counter() - t0
    if proc.returncode != 0:
        tail = (work / "archi.out").read_text()[-3000:]
        raise RuntimeError(f"archi failed in {work} (exit {proc.returncode}):\n{tail}")
    if rss_file.is_file():
        peak_mb, source = float(rss_file.read_text().split()[-1]) * 1024 / 1e6, "/usr/bin/time"
    else:  # maximum over every child process so far: an upper bound
        import resource
        peak_mb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * 1024 / 1e6
        source = "getrusage(RUSAGE_CHILDREN), max over all children"
    result = json.loads((work / "result.json").read_text())
    with np.load(work / "curves.npz") as curves:
        flux = np.array(curves["flux"], dtype=float)
        xy0 = np.array(curves["position0"], dtype=float)[:, ::-1]  # [row, col] -> (x, y)
        mjd = np.array(curves["mjd_time"], dtype=float)
    return ArchiRun(wall, peak_mb, source, float(result["timings"]["total_s"]), result,
                    flux, xy0, mjd, meter.other_cores)


# --------------------------------------------------------------------------------------------
# CDPP comparison
# --------------------------------------------------------------------------------------------

def match_stars(ours: np.ndarray, theirs: np.ndarray, tolerance: float = MATCH_TOLERANCE_PX
                ) -> tuple[list[tuple[int, int, float]], list[int], list[int]]:
    """One-to-one matches of (x, y) positions within ``tolerance``, closest pairs first.

    Returns ([(our index, their index, distance)], unmatched ours, unmatched theirs)."""
    ours = np.asarray(ours, dtype=float).reshape(-1, 2)
    theirs = np.asarray(theirs, dtype=float).reshape(-1, 2)
    d = np.hypot(ours[:, None, 0] - theirs[None, :, 0], ours[:, None, 1] - theirs[None, :, 1])
    pairs, used_ours, used_theirs = [], set(), set()
    for flat in np.argsort(d, axis=None, kind="stable"):
        i, j = np.unravel_index(flat, d.shape)
        if d[i, j] > tolerance:
            break
        if i in used_ours or j in used_theirs:
            continue
        pairs.append((int(i), int(j), float(d[i, j])))
        used_ours.add(i)
        used_theirs.add(j)
    return (sorted(pairs),
            [i for i in range(len(ours)) if i not in used_ours],
            [j for j in range(len(theirs)) if j not in used_theirs])


def jump_count(flux: np.ndarray, threshold: float = JUMP_THRESHOLD) -> int:
    """Frame-to-frame flux changes larger than ``threshold`` x the median flux (a star
    lost or swapped by the tracker shows as jumps)."""
    flux = np.asarray(flux, dtype=float)
    flux = flux[np.isfinite(flux)]
    if flux.size < 2 or not np.median(flux) > 0:
        return 0
    return int(np.sum(np.abs(np.diff(flux)) > threshold * np.median(flux)))


def compare_cdpp(results: Path, archi: ArchiRun) -> CdppComparison:
    curves = read_lightcurves_fits(results / "lightcurves.fits")
    stored = optimized_factors_for(results / "optimization" / "optimized_factors.yaml",
                                   curves.visit_key)
    time_mjd = curves.mjd_time
    if archi.flux.shape[1] != len(time_mjd):
        raise RuntimeError(f"archi has {archi.flux.shape[1]} frames, we have {len(time_mjd)}")
    ours_xy = np.column_stack([curves.stars.x0, curves.stars.y0])
    pairs, only_ours, only_archi = match_stars(ours_xy, archi.xy0)
    archi_factors = archi.result.get("mask_factors", [math.nan] * len(archi.xy0))
    archi_reported = archi.result.get("archi_cdpp", [math.nan] * len(archi.xy0))
    matched = []
    for i, j, dist in pairs:
        reported = stored.stars[i].cdpp if i in stored.stars else None
        matched.append(StarComparison(
            ours=i, archi=j, x=float(ours_xy[i, 0]), y=float(ours_xy[i, 1]), distance_px=dist,
            our_factor=float(curves.factors[i]), archi_factor=float(archi_factors[j]),
            our_cdpp=float(k2_cdpp(curves.flux[i], time_mjd)),
            archi_cdpp=float(k2_cdpp(archi.flux[j], time_mjd)),
            our_reported=math.nan if reported is None else float(reported),
            archi_reported=float(archi_reported[j]),
            our_jumps=jump_count(curves.flux[i]), archi_jumps=jump_count(archi.flux[j]),
            our_untracked=int(np.sum((curves.flag[i] & FLAG_NOT_MEASURED) != 0))))
    return CdppComparison(
        matched,
        [(i, float(ours_xy[i, 0]), float(ours_xy[i, 1])) for i in only_ours],
        [(j, float(archi.xy0[j, 0]), float(archi.xy0[j, 1])) for j in only_archi])


# --------------------------------------------------------------------------------------------
# Growth
# --------------------------------------------------------------------------------------------

def fit_exponent(x: Sequence[float], t: Sequence[float]) -> float:
    """Least-squares slope of log(t) against log(x): t ~ x**exponent (NaN: < 2 points)."""
    x, t = np.asarray(x, dtype=float), np.asarray(t, dtype=float)
    good = np.isfinite(x) & np.isfinite(t) & (x > 0) & (t > 0)
    if len(np.unique(x[good])) < 2:
        return math.nan
    return float(np.polyfit(np.log(x[good]), np.log(t[good]), 1)[0])


def frame_growth(sizes: Sequence[SizeResult]) -> list[tuple[str, list[float], float]]:
    """(quantity, time at each size [s], exponent) for the quantities measured per size."""
    def job(s: SizeResult, name: str) -> float:
        stats = s.workflow.jobs.get(name)
        return stats.median_s if stats else math.nan

    rows = {
        "photometry compute (cdpp_table, 1 factor)": [s.in_process.photometry_s for s in sizes],
        "load_visit + prepare compute": [s.in_process.load_prepare_s for s in sizes],
        "extract compute": [s.in_process.extract_s for s in sizes],
        "export compute (FITS + text)": [s.in_process.export_s for s in sizes],
        "photometry job, whole process (median)": [job(s, "photometry") for s in sizes],
        "prepare job, whole process": [job(s, "prepare") for s in sizes],
        "extract job, whole process": [job(s, "extract") for s in sizes],
        "workflow -j2 wall": [s.workflow.wall_s for s in sizes],
        "workflow -j2 wall (search_jobs: visit)": [
            s.workflow_visit.wall_s if s.workflow_visit else math.nan for s in sizes],
        f"workflow -j2 wall ({BINARY_LABEL})": [
            s.workflow_binary.wall_s if s.workflow_binary else math.nan for s in sizes],
        f"workflow -j2 wall ({ARCHI_MASK_LABEL})": [
            s.workflow_archi.wall_s if s.workflow_archi else math.nan for s in sizes],
    }
    frames = [s.n_frames for s in sizes]
    return [(name, t, fit_exponent(frames, t)) for name, t in rows.items()]


def star_growth(counts: Sequence[StarCountResult]) -> list[tuple[str, list[float], float]]:
    found = [c.times.n_stars for c in counts]
    rows = {
        "photometry compute (cdpp_table, 1 factor)": [c.times.photometry_s for c in counts],
        "load_visit + prepare compute": [c.times.load_prepare_s for c in counts],
    }
    return [(name, t, fit_exponent(found, t)) for name, t in rows.items()]


# --------------------------------------------------------------------------------------------
# The report
# --------------------------------------------------------------------------------------------

def machine_info() -> dict[str, str]:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    ram = "unknown"
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal"):
                ram = f"{int(line.split()[1]) / 1024**2:.1f} GiB"
    except OSError:
        pass

    def version(name: str) -> str:
        try:
            return importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            return "not installed"

    return {
        "CPU": cpu,
        "cores (os.cpu_count)": str(os.cpu_count()),
        "RAM": ram,
        "OS": platform.platform(),
        "Python": platform.python_version(),
        "numpy": np.__version__,
        "snakemake": version("snakemake"),
        "archi (ours)": f"{version('archi-cheops')}, {code_version()}",
        "date (UTC)": _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M"),
    }


def code_version() -> str:
    """The commit of this checkout and whether src/ or workflow/ differ from it (read-only
    git commands; the code may change while the benchmark runs)."""
    def git(*args: str) -> str:
        return subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True,
                              check=True).stdout.strip()
    try:
        commit = git("rev-parse", "--short", "HEAD")
        dirty = git("status", "--porcelain", "--", "src", "workflow")
    except (OSError, subprocess.CalledProcessError):
        return "commit unknown"
    return f"commit {commit}" + (" + uncommitted changes in src/ or workflow/" if dirty else "")




def fmt(value: float | None, digits: int = 2) -> str:
    if value is None or not math.isfinite(value):
        return "-"
    return f"{value:.{digits}f}"


def table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def _at(bench: Benchmark, n_frames: int) -> SizeResult | None:
    return next((s for s in bench.sizes if s.n_frames == n_frames), None)


def _verdict(ok: bool | None) -> str:
    return "n/a" if ok is None else ("yes" if ok else "**NO**")


def targets_section(bench: Benchmark) -> str:
    rows = []
    at = _at(bench, TARGET_FRAMES)
    if at is not None:
        t = at.in_process
        rows.append([f"the whole search in process ({TARGET_FRAMES} frames, {t.n_stars} stars, "
                     "every round and the fine tune)", f"<= {TARGET_SEARCH_S:g} s",
                     f"{fmt(t.search_s)} s", _verdict(t.search_s <= TARGET_SEARCH_S)])
        rows.append([f"the tracking GIF in process ({TARGET_FRAMES} frames)",
                     f"<= {TARGET_GIF_S:g} s, <= {TARGET_GIF_MB:g} MB",
                     f"{fmt(t.gif_s)} s, {fmt(t.gif_mb)} MB",
                     _verdict(t.gif_s <= TARGET_GIF_S and t.gif_mb <= TARGET_GIF_MB)])
        job = at.workflow.jobs.get("photometry")
        js = job.median_s if job else math.nan
        rows.append([f"one photometry job, whole process (median of {job.n_jobs if job else 0})",
                     f"<= {TARGET_PHOTOMETRY_PROCESS_S:g} s", f"{fmt(js)} s",
                     _verdict(js <= TARGET_PHOTOMETRY_PROCESS_S if job else None)])
        for run_label, run in _workflow_modes(at)[:2]:
            ratio = run.max_rss_mb / at.cube_mb
            rows.append([f"peak RSS (summed over the job's processes) of any workflow job / "
                         f"cube in memory ({fmt(at.cube_mb, 0)} MB), {run_label}",
                         f"<= {TARGET_RSS_OVER_CUBE:g}",
                         f"{fmt(ratio)} ({fmt(run.max_rss_mb, 0)} MB)",
                         _verdict(ratio <= TARGET_RSS_OVER_CUBE)])
            ratio = run.max_pss_mb / at.cube_mb
            rows.append([f"peak PSS (pages shared by forked processes counted once) of any "
                         f"workflow job / cube, {run_label}", f"<= {TARGET_RSS_OVER_CUBE:g}",
                         f"{fmt(ratio)} ({fmt(run.max_pss_mb, 0)} MB)",
                         _verdict(ratio <= TARGET_RSS_OVER_CUBE if math.isfinite(ratio)
                                  else None)])
        for name, label in (("figures", "the slowest figure job (plots, GIF)"),
                            ("summary", "the summary job")):
            job = at.workflow.jobs.get(name)
            slowest = job.max_s if job else math.nan
            rows.append([f"{label}, whole process", f"<= {TARGET_PLOTS_S:g} s",
                         f"{fmt(slowest)} s", _verdict(slowest <= TARGET_PLOTS_S if job
                                                       else None)])
        rows.append([f"the slowest figure in process ({t.n_stars} stars' light curves in one "
                     "call)", f"<= {TARGET_PLOTS_S:g} s", f"{fmt(t.figures_s)} s",
                     _verdict(t.figures_s <= TARGET_PLOTS_S)])
    else:
        rows.append([f"photometry job and RSS targets ({TARGET_FRAMES} frames)", "", "not run",
                     "n/a"])
    for s in bench.sizes:
        if s.archi is None:
            continue
        judged = s.n_frames == TARGET_FRAMES
        for mode, run in _workflow_modes(s):
            speedup = s.archi.wall_s / run.wall_s
            wanted = TARGET_SPEEDUP.get(mode, TARGET_SPEEDUP_VISIT)
            rows.append([f"workflow -j2 ({mode}) speed-up over archi, {s.n_frames} frames"
                         + ("" if judged else f" (target is for {TARGET_FRAMES})"),
                         f">= {wanted:g}x", f"{fmt(speedup, 1)}x",
                         _verdict(speedup >= wanted) if judged else "info"])
    if not any(s.n_frames == TARGET_FRAMES and s.archi for s in bench.sizes):
        rows.append([f"workflow -j2 speed-up over archi, {TARGET_FRAMES} frames",
                     f">= {TARGET_SPEEDUP_VISIT:g}x (per visit), "
                     f">= {TARGET_SPEEDUP['search_jobs: factor']:g}x (per factor)",
                     "archi not run at this size", "n/a"])
    for label, growth in (("frames", frame_growth(bench.sizes) if len(bench.sizes) > 1 else []),
                          ("stars", star_growth(bench.star_counts)
                           if len(bench.star_counts) > 1 else [])):
        for name, _, exponent in growth:
            if name.startswith(("photometry compute", "load_visit", "extract compute",
                                "workflow")):
                rows.append([f"growth of {name} with {label}",
                             f"exponent <= {LINEAR_EXPONENT_MAX:g}", fmt(exponent),
                             _verdict(exponent <= LINEAR_EXPONENT_MAX
                                      if math.isfinite(exponent) else None)])
    for attribute, label in (("comparison", "exact circles (default)"),
                             ("comparison_binary", "binary circles"),
                             ("comparison_archi", "archi's own circles")):
        matched = [m for s in bench.sizes if getattr(s, attribute)
                   for m in getattr(s, attribute).matched]
        if matched:
            worse = [m for m in matched if not m.ours_not_worse]
            rows.append([f"CDPP same or better than archi on every star both find, ours with "
                         f"{label} (K2 CDPP of each light curve)", "every star",
                         f"{len(matched) - len(worse)} of {len(matched)} stars",
                         _verdict(not worse)])
    return table(["target", "wanted", "measured", "met"], rows)


def in_process_section(bench: Benchmark) -> str:
    rows = [[s.n_frames, s.in_process.n_stars, fmt(s.cube_mb, 0), fmt(s.in_process.load_s),
             fmt(s.in_process.prepare_s), fmt(s.in_process.photometry_s),
             fmt(s.in_process.search_s), fmt(s.in_process.extract_s),
             fmt(s.in_process.export_s), fmt(s.in_process.gif_s), fmt(s.in_process.gif_mb),
             fmt(s.in_process.figures_s), fmt(s.in_process.other_cores)] for s in bench.sizes]
    return table(["frames", "stars found", "cube [MB]", "load_visit [s]", "prepare [s]",
                  "photometry, 1 factor [s]", "whole search [s]", "extract [s]",
                  "export FITS+text [s]", "GIF [s]", "GIF [MB]", "slowest figure [s]",
                  "other processes [cores]"],
                 rows)


def _workflow_modes(s: SizeResult) -> list[tuple[str, WorkflowRun]]:
    """(label, run) of the workflow runs of one size: per-factor jobs, then per-visit with
    exact, binary and archi's own circles."""
    modes = [("search_jobs: factor", s.workflow)]
    if s.workflow_visit is not None:
        modes.append(("search_jobs: visit", s.workflow_visit))
    if s.workflow_binary is not None:
        modes.append((BINARY_LABEL, s.workflow_binary))
    if s.workflow_archi is not None:
        modes.append((ARCHI_MASK_LABEL, s.workflow_archi))
    return modes


def workflow_section(bench: Benchmark) -> str:
    rows = []
    for s in bench.sizes:
        for mode, run in _workflow_modes(s):
            for name in ("prepare", "photometry", "decisions", "fine_tune", "whole_visit",
                         "extract", "export_text", "figures", "summary"):
                stats = run.jobs.get(name)
                if stats is None:
                    continue
                rows.append([s.n_frames, mode, name, stats.n_jobs, fmt(stats.median_s),
                             fmt(stats.max_s), fmt(stats.max_rss_mb, 0),
                             fmt(stats.max_rss_mb / s.cube_mb), fmt(stats.max_pss_mb, 0),
                             fmt(stats.max_pss_mb / s.cube_mb)])
            rows.append([s.n_frames, mode, "**whole workflow -j2 (wall)**", "",
                         fmt(run.wall_s), "", fmt(run.max_rss_mb, 0) + " (any job)",
                         fmt(run.max_rss_mb / s.cube_mb), fmt(run.max_pss_mb, 0),
                         fmt(run.max_pss_mb / s.cube_mb)])
    text = table(["frames", "search", "job", "jobs", "median [s]", "max [s]", "peak RSS [MB]",
                  "RSS / cube", "peak PSS [MB]", "PSS / cube"], rows)
    return text + "\n\nOther processes during the workflow runs [cores]: " + ", ".join(
        f"{fmt(run.other_cores)} ({s.n_frames} frames, {mode})"
        for s in bench.sizes for mode, run in _workflow_modes(s)) + "."



def archi_section(bench: Benchmark) -> str:
    rows = []
    for s in bench.sizes:
        if s.archi is None:
            continue
        for mode, run in _workflow_modes(s):
            rows.append([s.n_frames, mode, fmt(run.wall_s, 1), fmt(run.products_s, 1),
                         fmt(s.archi.wall_s, 1),
                         fmt(s.archi.total_s, 1), fmt(s.archi.peak_rss_mb, 0),
                         fmt(run.max_rss_mb, 0), f"**{fmt(s.archi.wall_s / run.wall_s, 1)}x**",
                         f"{fmt(s.archi.wall_s / run.products_s, 1)}x",
                         f"{fmt(run.other_cores)} / {fmt(s.archi.other_cores)}"])
    if not rows:
        return bench.archi_skipped or "archi was not run."
    return (table(["frames", "our search", "ours: workflow -j2 wall [s]",
                   "ours: archi's products written [s]", "archi: process wall [s]",
                   "archi: own timer, optimisation+extraction+export [s]",
                   "archi: peak RSS [MB]", "ours: peak RSS of any job [MB]",
                   "speed-up (archi wall / our wall)",
                   "speed-up to archi's products (archi wall / ours)",
                   "other processes, ours / archi [cores]"], rows)
            + "\n\nThe speed-up is judged on our whole run, which also makes products archi "
            "does not (the visit's DRP plot and summary, the CDPP plot, the summary table of "
            "all visits); 'archi's products written' is the time from our start until the "
            "chosen factors and the light curves (FITS and text) were all on disk.")


def growth_section(bench: Benchmark) -> str:
    parts = []
    if len(bench.sizes) > 1:
        frames = [s.n_frames for s in bench.sizes]
        rows = [[name, *[fmt(v) for v in t], fmt(e)] for name, t, e in frame_growth(bench.sizes)]
        parts.append("With frames (9-star field), times [s]:\n\n"
                     + table(["quantity", *[f"{n} frames" for n in frames], "exponent"], rows))
    if len(bench.star_counts) > 1:
        rows = [[c.n_field, c.times.n_stars, fmt(c.times.load_prepare_s),
                 fmt(c.times.photometry_s), fmt(c.times.other_cores)]
                for c in bench.star_counts]
        parts.append(f"With stars ({STAR_SCALING_FRAMES} frames, compute alone), times [s]:\n\n"
                     + table(["stars simulated", "stars found", "load_visit + prepare [s]",
                              "photometry, 1 factor [s]", "other processes [cores]"], rows))
        missed = [c for c in bench.star_counts if c.times.n_stars != c.n_field]
        if missed:
            parts.append("Our detection did not find every simulated star: "
                         + "; ".join(f"{c.times.n_stars} of {c.n_field}" for c in missed)
                         + ". The exponents use the stars found (the stars measured).")
        rows = [[name, fmt(e)] for name, _, e in star_growth(bench.star_counts)]
        parts.append("Exponents against the number of stars found:\n\n"
                     + table(["quantity", "exponent"], rows))
    return "\n\n".join(parts) if parts else "Only one size: no exponents."


def cdpp_section(bench: Benchmark) -> str:
    parts = []
    for s, c, label in [(s, c, label) for s in bench.sizes
                        for c, label in ((s.comparison, "exact circles (default), one job "
                                          "per factor"),
                                         (s.comparison_binary, "binary circles (re-drawn "
                                          "at each position), one job per visit"),
                                         (s.comparison_archi, "archi's own circles (the "
                                          "first frame's binary mask moved by whole "
                                          "pixels), one job per visit"))]:
        if c is None:
            continue
        rows = [[m.ours, m.archi, fmt(m.x, 1), fmt(m.y, 1), fmt(m.distance_px), fmt(m.our_factor),
                 fmt(m.archi_factor), fmt(m.our_cdpp, 1), fmt(m.archi_cdpp, 1),
                 fmt(m.archi_cdpp / m.our_cdpp), fmt(m.our_reported, 1), fmt(m.archi_reported, 1),
                 m.our_jumps, m.archi_jumps, m.our_untracked,
                 "yes" if m.ours_not_worse else "**NO**"] for m in c.matched]
        text = (f"### {s.n_frames} frames, ours with {label}\n\n"
                + table(["our star", "archi star", "x [px]", "y [px]", "match dist [px]",
                         "our radius [px]", "archi radius [px]", "our CDPP [ppm]",
                         "archi CDPP [ppm]", "archi / ours", "our reported best [ppm]",
                         "archi reported [ppm]", "our jumps", "archi jumps",
                         "our frames not tracked", "ours <= archi"], rows))
        only = [f"only ours: star {i} at ({x:.1f}, {y:.1f})" for i, x, y in c.only_ours]
        only += [f"only archi: star {j} at ({x:.1f}, {y:.1f})" for j, x, y in c.only_archi]
        text += "\n\nStars only one tool found: " + ("; ".join(only) if only else "none") + "."
        lost = [m for m in c.matched if m.archi_jumps > 0 and m.our_jumps == 0]
        if lost:
            text += (f"\n\narchi's light curves of {len(lost)} of the {len(c.matched)} "
                     "matched stars jump while ours do not (its tracker loses or swaps "
                     "stars). The K2 CDPP's high-pass filter and outlier clipping partly hide "
                     "such steps, so a jumpy curve can still score well.")
        untracked = [m for m in c.matched if m.our_untracked > 0]
        if untracked:
            text += ("\n\nOur tracker fell back to predicted positions in some frames of "
                     + ", ".join(f"star {m.ours} ({m.our_untracked} of {s.n_frames})"
                                 for m in untracked) + ".")
        parts.append(text)
    return "\n\n".join(parts) if parts else "archi was not run: no CDPP comparison."


def _span(values: Sequence[float], unit: str = "") -> str:
    return f"{min(values):g}-{max(values):g}{unit}"


def setup_section() -> str:
    bright = np.vstack([[0.0, 0.0], offsets(COMPANIONS)])
    everything = np.vstack([bright, offsets(FAINT_STARS)])
    lines = [
        f"- Visits: simulated (`archi.simulate`, seed {SEED}), DRP layout, 200 x 200 px "
        "subarrays, no orbit gaps (`gap_minutes: 0`). Why: archi's dynam tracker predicts the "
        "field turning the opposite way to the PIPE convention the simulator follows; it keeps "
        "its stars from frame to frame by re-detecting each within 30 px of the prediction, "
        "but loses them across an orbit gap. Nothing else works around it.",
        f"- Field: the target and {len(COMPANIONS)} companions "
        f"{_span([c.distance for c in COMPANIONS], ' px')} from it, "
        f"{_span([c.dmag for c in COMPANIONS], ' mag')} fainter, closest pair "
        f"{pairwise_distances(bright).min():.1f} px apart (archi merges stars closer than about "
        f"30 px). 5 stars: the first 4 companions; 20 stars: {len(FAINT_STARS)} more, "
        f"{_span([c.dmag for c in FAINT_STARS], ' mag')} fainter, "
        f"{_span([c.distance for c in FAINT_STARS], ' px')} from the target, each at least "
        f"{pairwise_distances(everything)[len(bright):].min():.1f} px from any other star.",
        "- Settings of both tools: circle masks, image-based (dynam) detection and tracking, "
        f"radii {PHOTOMETRY['val_range'][0]}-{PHOTOMETRY['val_range'][1]} px in "
        f"{PHOTOMETRY['step']}-px steps, one range-extension round, circle fine tune (best "
        "+/- 1 px in 0.1-px steps). Ours `optimization_extensions: 1` (at most one round) and "
        f"archi's `optimization_extensions: 0` (exactly one extension pass) both do one "
        "extension round, each with its own rule for which stars go on and how far. Ours: "
        f"Snakemake `-j2`, `repeat_removal: {PHOTOMETRY['repeat_removal']}`. archi "
        f"{PYARCHI_VERSION}: `optim_processes: {ARCHI_OPTIONS['optim_processes']}`, "
        f"`repeat_removal: {ARCHI_OPTIONS['repeat_removal']}`.",
        "- Masks: archi's circle is the binary mask (pixel centre within the radius) of the "
        "first frame, moved by whole pixels (its `np.roll` of the rounded offset). Ours run "
        "three ways: exact pixel-overlap circles that follow the star to the sub-pixel (the "
        "default), binary circles re-drawn at each position (`aperture_mode: binary`), and "
        "archi's own circles (`aperture_mode: archi`): the same masks as archi.",
        "- Compute alone: `time.perf_counter` around each library call in one process, after "
        f"a warm-up run on a {WARM_UP_FRAMES}-frame visit, the cube files in the page cache; "
        f"each step the best of {REPEATS} runs. The photometry job measured alone is one "
        f"factor ({PHOTOMETRY_FACTOR:g} px) for every star.",
        "- Whole process: the workflow's Snakemake benchmark files, one per job (interpreter "
        "start and imports included). The workflow and archi are timed once each.",
        "- Other processes [cores]: CPU time used by processes outside the benchmark during "
        "a measurement (machine busy time from /proc/stat minus the benchmark's own, from "
        "getrusage) over its wall time. Above ~0.1 other work shared the machine's "
        f"{os.cpu_count()} cores and slowed that measurement.",
        "- Units: times in seconds; peak RSS = maximum resident set size in MB (10^6 bytes); "
        "cube in memory = frames x 200 x 200 x 8 bytes; CDPP = K2 CDPP in ppm.",
    ]
    return "\n".join(lines)


def render(bench: Benchmark) -> str:
    machine = table(["", ""], [[k, v] for k, v in bench.machine.items()])
    sections = [
        "# Performance benchmark: our pipeline against archi (pyarchi "
        f"{PYARCHI_VERSION})",
        f"Produced by `{bench.command}`; every number and ratio below comes from this one run.",
        "## Machine\n\n" + machine,
        "## Setup\n\n" + setup_section(),
        "## Targets\n\n" + targets_section(bench),
        "## Compute alone, in process (9-star field)\n\n" + in_process_section(bench),
        "## Workflow jobs as whole processes (Snakemake benchmark files)\n\n"
        + workflow_section(bench),
        "## Whole workflow against archi (optimisation + extraction + export)\n\n"
        + archi_section(bench),
        "## Growth\n\nExponent = least-squares slope of log(time) against log(frames) or "
        "log(stars found); 1 = linear. An exponent well below 1 means fixed costs (process "
        "start, imports, Snakemake's scheduling, the PSF model) still dominate at these "
        "sizes.\n\n" + growth_section(bench),
        "## CDPP per star against archi\n\nStars matched by first-frame position within "
        f"{MATCH_TOLERANCE_PX:g} px. Radius = the mask radius each tool chose. Both CDPP "
        "columns are `archi.noise.k2_cdpp` of each tool's light curve with our frame times; "
        "'reported' = each tool's own best CDPP. Jumps = frame-to-frame flux changes larger "
        f"than {JUMP_THRESHOLD:.0%} of the star's median flux: a star lost or swapped by the "
        "tracker shows as jumps, a well-tracked star has none.\n\n" + cdpp_section(bench),
    ]
    return "\n\n".join(sections) + "\n"


# --------------------------------------------------------------------------------------------
# Main
# --------------------------------------------------------------------------------------------

def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[300, 1000, 3000],
                        help="frames of the visits measured (9-star field)")
    parser.add_argument("--archi-sizes", type=int, nargs="+", default=[300, 1000],
                        help="sizes (among --sizes) at which archi runs too")
    parser.add_argument("--star-counts", type=int, nargs="+", default=[5, MAIN_STARS, 20],
                        help=f"stars of the fields of the star scaling ({STAR_SCALING_FRAMES} "
                             "frames)")
    parser.add_argument("--cache", type=Path, default=Path("benchmarks/cache"),
                        help="simulated visits, run folders and pyarchi's environment")
    parser.add_argument("--output", type=Path, default=Path("benchmarks/performance.md"))
    parser.add_argument("--no-archi", action="store_true", help="do not run archi")
    return parser.parse_args(argv)


def measure_size(cache: Path, n_frames: int, archi_python: Path | None) -> SizeResult:
    paths = cached_visit(cache, n_frames, MAIN_STARS)
    runs = cache / "runs" / f"{n_frames}f_{MAIN_STARS}s"
    print(f"[{n_frames} frames] workflow -j2", flush=True)
    workflow = run_workflow(paths.drp_folder, runs / "workflow")
    print(f"[{n_frames} frames] workflow {workflow.wall_s:.1f} s; with search_jobs: visit",
          flush=True)
    workflow_visit = run_workflow(paths.drp_folder, runs / "workflow_visit", "visit")
    print(f"[{n_frames} frames] workflow (search_jobs: visit) {workflow_visit.wall_s:.1f} s; "
          "with binary circles", flush=True)
    workflow_binary = run_workflow(paths.drp_folder, runs / "workflow_binary", "visit",
                                   "binary")
    print(f"[{n_frames} frames] workflow ({BINARY_LABEL}) {workflow_binary.wall_s:.1f} s; "
          "with archi's own circles", flush=True)
    workflow_archi = run_workflow(paths.drp_folder, runs / "workflow_archi", "visit", "archi")
    print(f"[{n_frames} frames] workflow ({ARCHI_MASK_LABEL}) {workflow_archi.wall_s:.1f} s; "
          "compute in process", flush=True)
    in_process = measure_in_process(paths.drp_folder, runs / "in_process",
                                    workflow_factors(workflow.results))
    result = SizeResult(n_frames, in_process, workflow, workflow_visit, workflow_binary,
                        workflow_archi)
    if archi_python is not None:
        print(f"[{n_frames} frames] archi", flush=True)
        result.archi = run_archi(archi_python, paths.root, runs / "archi")
        print(f"[{n_frames} frames] archi {result.archi.wall_s:.1f} s", flush=True)
        result.comparison = compare_cdpp(workflow.results, result.archi)
        result.comparison_binary = compare_cdpp(workflow_binary.results, result.archi)
        result.comparison_archi = compare_cdpp(workflow_archi.results, result.archi)
    return result


def measure_star_count(cache: Path, n_stars: int, sizes: Sequence[SizeResult]
                       ) -> StarCountResult:
    if n_stars == 10:
        known = next((s for s in sizes if s.n_frames == STAR_SCALING_FRAMES), None)
        if known is not None:
            return StarCountResult(10, known.in_process)
    paths = cached_visit(cache, STAR_SCALING_FRAMES, n_stars)
    print(f"[{STAR_SCALING_FRAMES} frames, {n_stars} stars] compute in process", flush=True)
    times = measure_in_process(paths.drp_folder,
                               cache / "runs" / f"{STAR_SCALING_FRAMES}f_{n_stars}s" / "in_process")
    return StarCountResult(n_stars, times)


def main(argv: Sequence[str] | None = None) -> Benchmark:
    args = parse_args(argv)
    check_field()
    cache = args.cache.resolve()
    command = "python benchmarks/performance.py " + " ".join(
        sys.argv[1:] if argv is None else list(argv))
    bench = Benchmark(command=command.strip(), machine=machine_info())
    archi_sizes = set() if args.no_archi else set(args.archi_sizes)
    archi_python = ensure_pyarchi_venv(cache / "pyarchi-venv") if archi_sizes else None
    if args.no_archi:
        bench.archi_skipped = "archi was not run (--no-archi)."
    warm_up(cache)
    for n_frames in sorted(args.sizes):
        bench.sizes.append(measure_size(cache, n_frames,
                                        archi_python if n_frames in archi_sizes else None))
    for n_stars in sorted(args.star_counts):
        bench.star_counts.append(measure_star_count(cache, n_stars, bench.sizes))
    code_at_end = code_version()
    if code_at_end not in bench.machine["archi (ours)"]:
        bench.machine["archi (ours)"] += f"; at the end: {code_at_end} (changed during the run)"
    report = render(bench)
    print(report)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(report)
    print(f"written to {args.output}")
    return bench


if __name__ == "__main__":
    main()
