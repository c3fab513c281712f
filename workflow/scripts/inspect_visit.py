"""Snakemake script: read a visit, write its summary row and a plot of its DRP light curves."""

from _common import finish, start_log

from archi.io import read_visit
from archi.io.tsv import write_tsv
from archi.plots import plot_drp_lightcurves
from archi.visit import visit_summary

log = start_log(snakemake)
visit = read_visit(snakemake.input[0], layout=snakemake.params.layout,
                   aperture=snakemake.params.aperture)
summary = visit_summary(visit)
log.info("%s", summary)
write_tsv([summary], snakemake.output.summary)
plot_drp_lightcurves(visit, snakemake.output.plot)
finish()
