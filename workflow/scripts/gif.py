"""Snakemake script: animated GIF of the frames with every star's aperture."""

from _common import finish, start_log

from archi import plots
from archi.io import read_visit
from archi.io.lightcurves import read_lightcurves_fits

start_log(snakemake)
curves = read_lightcurves_fits(snakemake.input.curves)
visit = read_visit(snakemake.input.visit)  # archi.io, not archi.api: 0.9 s fewer imports
plots.save_gif(visit, curves, snakemake.output[0])
finish()
