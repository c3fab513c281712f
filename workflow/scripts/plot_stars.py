"""Snakemake script: one plot per star, and the field with every aperture."""

from pathlib import Path

from _common import finish, start_log

from archi import plots
from archi.io import read_visit
from archi.io.lightcurves import read_lightcurves_fits

start_log(snakemake)
curves = read_lightcurves_fits(snakemake.input.curves)
visit = read_visit(snakemake.input.visit)  # archi.io, not archi.api: 0.9 s fewer imports
out = Path(snakemake.output[0])
out.mkdir(parents=True, exist_ok=True)
plots.plot_star_lightcurves(curves, out)
plots.plot_field(visit, curves, out / "field.png")
finish()
