"""Snakemake script: read a visit, write its summary row and a plot of its DRP light curves."""

import pandas as pd
from _common import finish, start_log

from archi.io import read_visit
from archi.io.fitswrite import atomic_path
from archi.plots import plot_drp_lightcurves
from archi.visit import visit_summary

log = start_log(snakemake)
visit = read_visit(snakemake.input[0], layout=snakemake.params.layout,
                   aperture=snakemake.params.aperture)
summary = visit_summary(visit)
log.info("%s", summary)
with atomic_path(snakemake.output.summary) as tmp:
    pd.DataFrame([summary]).to_csv(tmp, sep="\t", index=False)
plot_drp_lightcurves(visit, snakemake.output.plot)
finish()
