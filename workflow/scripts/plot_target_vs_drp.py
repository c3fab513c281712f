"""Snakemake script: the target against the DRP light curve (archi's debug plot)."""

from _common import finish, start_log

from archi import api, plots
from archi.io.lightcurves import read_lightcurves_fits
from archi.metrics import load_metric
from archi.options import Options

start_log(snakemake)
options = Options.from_mapping(snakemake.params.options)
curves = read_lightcurves_fits(snakemake.input.curves)
visit = api.load_visit(snakemake.input.visit, options)
plots.plot_target_vs_drp(curves, visit, snakemake.output[0],
                         official_curve=visit.reference_aperture,
                         metric=load_metric(options.CDPP_type))
finish()
