"""Home of ``results/summary.tsv``: one row per star of every visit of a run."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from archi.io.lightcurves import read_lightcurves_fits
from archi.io.tsv import write_tsv
from archi.stars import FLAG_REJECT

SUMMARY_FLOAT_FORMAT = "%.6g"


def summary_rows(fits_path: str | Path) -> list[dict[str, Any]]:
    """One row per star of a ``lightcurves.fits`` (its folder names the visit);
    ``flagged_fraction``: frames with a :data:`~archi.stars.FLAG_REJECT` bit."""
    curves = read_lightcurves_fits(fits_path)
    s = curves.stars
    contamination = curves.contamination
    return [{"visit": Path(fits_path).parent.name, "file_key": curves.visit_key, "star": j,
             "x0": s.x0[j], "y0": s.y0[j], "distance": s.distance[j],
             "source_id": s.source_id[j], "mag": s.mag[j], "method": curves.methods[j],
             "factor": curves.factors[j], "cdpp_ppm": curves.cdpp[j], "npix": curves.npix[j],
             "contamination": contamination[j],
             "flagged_fraction": float(((curves.flag[j] & FLAG_REJECT) != 0).mean())}
            for j in range(curves.n_stars)]


def write_summary(fits_paths: Iterable[str | Path], path: str | Path) -> None:
    """The summary table of the visits whose light curves are ``fits_paths``."""
    rows = [row for fits_path in fits_paths for row in summary_rows(fits_path)]
    write_tsv(rows, path, float_format=SUMMARY_FLOAT_FORMAT)


def run_report(run_infos: Mapping[str, str | Path], failed: Mapping[str, str],
               results: str | Path, not_run: Iterable[str] = ()) -> list[str]:
    """The lines a workflow run ends with on the console: visits done (``run_infos``: visit
    -> its ``run_info.yaml``) and their stars, visits failed (visit -> the one-line error),
    visits not run, where the results are, then each warning of reading a visit once
    (``inputs.warnings`` of its run info). Failures come last: the last line of a failed
    run is the failure."""
    import yaml

    stars, warnings = 0, []
    for visit, path in run_infos.items():
        info = yaml.safe_load(Path(path).read_text()) or {}
        stars += len(info.get("stars") or [])
        warnings += [f"Warning: visit {visit}: {w}"
                     for w in (info.get("inputs") or {}).get("warnings") or []]
    not_run = sorted(set(not_run) - set(failed) - set(run_infos))
    counts = [f"{len(run_infos)} visit(s) done ({stars} stars)", f"{len(failed)} failed"]
    if not_run:
        counts.append(f"{len(not_run)} not run ({', '.join(not_run)})")
    where = Path(results)
    lines = [f"archi: {', '.join(counts)}; results in {where}/ (summary.tsv"
             + (f", {FAILED_VISITS}" if failed else "") + ")"]
    return lines + warnings + [f"Error: {line}" for line in failed.values()]


FAILED_VISITS = "failed_visits.tsv"
"""Beside ``summary.tsv`` after a run where visits failed: visit and its one-line error."""


def write_failed_visits(failed: Mapping[str, str], path: str | Path) -> None:
    """The visits that failed in a run and why (the file is removed when none failed)."""
    path = Path(path)
    if failed:
        write_tsv([{"visit": v, "error": e} for v, e in failed.items()], path)
    elif path.exists():
        path.unlink()
