"""Snakemake script: animated GIF of the frames with every star's aperture."""

from _common import finish, start_log

from archi import api, plots
from archi.io.lightcurves import read_lightcurves_fits
from archi.options import Options

start_log(snakemake)
curves = read_lightcurves_fits(snakemake.input.curves)
visit = api.load_visit(snakemake.input.visit, Options())
plots.save_gif(visit, curves, snakemake.output[0])
finish()
