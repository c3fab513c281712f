"""Home of ``results/summary.tsv``: one row per star of every visit of a run."""

from __future__ import annotations

from collections.abc import Iterable
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
