"""Home of the runs that write a visit's files: one visit in one call (:func:`run`, like
archi's controller), the workflow's whole-visit job (:func:`process_visit`) and its
extraction job (:func:`extract_job`), and the search's plot. The steps themselves are
:mod:`archi.api`'s.

    from archi.pipeline import run
    outputs = run("PR140063_TG002401_V0300", Options(), "out")  # files under out/
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import Path

from archi.api import extract, load_visit, optimize_factors, prepare, visit_warnings
from archi.cdpp_table import CdppTable
from archi.framequality import paged
from archi.io.archive import visit_folder
from archi.io.factors_file import (
    read_optimized_factors,
    stored_factors,
    write_search_factors,
)
from archi.io.lightcurves import write_lightcurves_fits
from archi.io.lightcurves_text import write_lightcurves_text
from archi.io.pipe_files import write_pipe_files
from archi.io.prepared import read_model_images, read_prepared, write_prepared
from archi.io.run_info import write_run_info
from archi.io.search_files import read_cdpp_tables, write_cdpp_table
from archi.metrics import NoiseMetric
from archi.options import Options
from archi.prepared import Prepared
from archi.runs import metric_for
from archi.stars import StarLightCurves
from archi.visit import Visit

__all__ = ["ProcessedVisit", "RunOutputs", "VisitFiles", "extract_job", "plot_search",
           "plot_search_files", "process_visit", "run"]


@dataclass(frozen=True)
class VisitFiles:
    """Where :func:`process_visit` writes a visit's files (``None``: not written)."""

    factors: Path  # optimised factors (read, not written, when the search is not run)
    table: Path  # CDPP table of every run (header only when the search is not run)
    fits: Path  # light curves
    info: Path  # run info
    text: Path | None = None  # light curves in archi's text layout
    prepared: Path | None = None  # stars and tracks


@dataclass(frozen=True)
class ProcessedVisit:
    """What :func:`process_visit` computed."""

    visit: Visit
    prepared: Prepared
    curves: StarLightCurves
    table: CdppTable  # every run of the search (empty when it was not run)
    factors: dict[int, float]


def process_visit(folder: str | Path, options: Options, files: VisitFiles, *,
                  layout: str = "auto", optimize: bool = True,
                  metric: NoiseMetric | None = None, workers: int = 1) -> ProcessedVisit:
    """A whole visit: prepare, optimise the factors (or take them from ``files.factors``
    when ``optimize`` is False), extract, and write ``files``. ``workers``: processes that
    share the frames of the costly passes (tracking, the factor search, extraction)."""
    visit = load_visit(folder, options, layout)
    prepared = prepare(visit, options, layout, workers)
    if files.prepared is not None:
        write_prepared(files.prepared, prepared)
        prepared = _model_images_from(files.prepared, prepared)
    result, table = None, CdppTable.empty()
    measured = replace(visit, cube=paged(visit.cube))  # one chunk held at a time
    if optimize:
        result = optimize_factors(measured, prepared, metric, workers)
        table = result.table
        write_search_factors(files.factors, options, prepared.visit_key, result.factors,
                             result.cdpp, result.valid)
    # the factors as the file stores them, as rule extract reads them; the search's sums
    # of those runs are the curves (no new pass when the file keeps them exactly)
    factors = stored_factors(files.factors, prepared.visit_key, prepared.stars.n_stars)
    curves = extract(measured, prepared, factors, metric, workers, search_result=result)
    write_cdpp_table(table, files.table)
    write_lightcurves_fits(curves, files.fits)
    write_run_info(files.info, visit_folder=visit.folder, options=options.to_dict(), lc=curves,
                   astrometry=_astrometry_record(prepared),
                   input_warnings=visit.input_warnings,
                   warnings=visit_warnings(prepared, files.factors))
    if files.text is not None:
        write_lightcurves_text(curves, files.text)
    return ProcessedVisit(visit, prepared, curves, table, factors)


def _model_images_from(path: Path, prepared: Prepared) -> Prepared:
    """``prepared`` with its rendered model read from the file it was written to, a chunk
    at a time (the same numbers: float32 both): the job then holds one chunk of it, not
    the whole (160 MB for 1000 frames, and again in each forked process's count)."""
    model = prepared.model
    if model is None or model.images is None:
        return prepared
    return replace(prepared, model=replace(model, images=read_model_images(path)))


def _astrometry_record(prepared: Prepared) -> dict | None:
    """The run-info record of the prepare step's astrometry (None: not measured)."""
    return None if prepared.astrometry is None else prepared.astrometry.to_dict()


def extract_job(prepared_path: str | Path, factors_path: str | Path, options: Options,
                fits_path: str | Path, info_path: str | Path) -> StarLightCurves:
    """The workflow's extraction: the light curves of a prepared visit with its stored
    factors, written as FITS with the run info."""
    prepared = read_prepared(prepared_path)
    factors = stored_factors(factors_path, prepared.visit_key, prepared.stars.n_stars)
    visit = load_visit(prepared.visit_folder, options, prepared.layout)
    visit = replace(visit, cube=paged(visit.cube))  # one chunk held at a time
    curves = extract(visit, prepared, factors)
    write_lightcurves_fits(curves, fits_path)
    write_run_info(info_path, visit_folder=visit.folder, options=options.to_dict(), lc=curves,
                   astrometry=_astrometry_record(prepared),
                   input_warnings=visit.input_warnings,
                   warnings=visit_warnings(prepared, factors_path))
    return curves


def plot_search(table: CdppTable, path: str | Path, chosen: Mapping[int, float]) -> Path:
    """CDPP against factor for every star of ``table``, ``chosen`` factors marked."""
    from archi import plots

    return plots.plot_cdpp_vs_factor(table, path, chosen=chosen)


def plot_search_files(table_path: str | Path, factors_path: str | Path, path: str | Path
                      ) -> Path:
    """:func:`plot_search` of a CDPP table file and the (one visit's) factors file."""
    (visit_factors,) = read_optimized_factors(factors_path).values()
    chosen = {s: f for s, f in visit_factors.factors.items() if f is not None}
    return plot_search(read_cdpp_tables(table_path), path, chosen)


@dataclass(frozen=True)
class RunOutputs:
    """Files written by :func:`run` (under ``out_dir``)."""

    lightcurves_fits: Path
    lightcurves_text: Path | None
    run_info: Path
    cdpp_table: Path
    factors: Path
    plots: list[Path]
    gif: Path | None
    pycheops_files: tuple[Path, ...] = ()  # per star, PIPE-like (io.pipe_files)


def run(folder: str | Path, options: Options, out_dir: str | Path, *, layout: str = "auto",
        optimize: bool = True, factors_file: str | Path | None = None,
        export_text: bool = True, show_results: bool = True, debug: bool = True,
        save_gif: bool = False, metric: NoiseMetric | None = None, workers: int = 1,
        pycheops_files: bool = False) -> RunOutputs:
    """A whole visit in one call, like archi's controller: :func:`process_visit` (prepare,
    optimise the factors or take them from ``factors_file`` when ``optimize`` is False,
    extract; the light curves as FITS and text, the run info, the CDPP table, the
    optimised factors) under ``out_dir``, then the plots (and GIF). ``workers``: processes
    that share the frames of the costly passes (tracking, the factor search, extraction).
    ``folder`` may be a DACE ``.tgz``: it is unpacked once into ``out_dir/dace``.
    ``pycheops_files``: per star, a file pycheops loads as PIPE's output, in
    ``out_dir/pycheops`` (:mod:`archi.io.pipe_files`)."""
    from archi import plots

    out = Path(out_dir)
    (out / "plots").mkdir(parents=True, exist_ok=True)
    folder = visit_folder(folder, out / "dace")
    files = VisitFiles(
        factors=Path(factors_file) if factors_file else out / "optimized_factors.yaml",
        table=out / "cdpp_table.tsv", fits=out / "lightcurves.fits", info=out / "run_info.yaml",
        text=out / "lightcurves.txt" if export_text else None)
    done = process_visit(folder, options, files, layout=layout, optimize=optimize,
                         metric=metric, workers=workers)
    visit, curves = done.visit, done.curves
    figures: list[Path] = []
    if show_results:
        figures += plots.plot_star_lightcurves(curves, out / "plots")
        figures.append(plots.plot_field(visit, curves, out / "plots" / "field.png"))
        figures.append(plots.plot_field_model(visit, done.prepared.model,
                                              out / "plots" / "field_model.png"))
        if len(done.table):
            figures.append(plot_search(done.table, out / "plots" / "cdpp_vs_factor.png",
                                       done.factors))
    if debug:
        figures.append(plots.plot_target_vs_drp(
            curves, visit, out / "plots" / "target_vs_drp.png",
            official_curve=visit.reference_aperture, metric=metric_for(options, metric)))
    gif = plots.save_gif(visit, curves, out / "star_tracking.gif") if save_gif else None
    pipe = tuple(write_pipe_files(curves, out / "pycheops")) if pycheops_files else ()
    return RunOutputs(files.fits, files.text, files.info, files.table, files.factors,
                      figures, gif, pipe)
