"""Snakemake script: read a visit, write its summary row and a plot of its DRP light curves."""

import logging

import pandas as pd

from archi.io import read_visit
from archi.plots import plot_drp_lightcurves
from archi.visit import visit_summary

logging.basicConfig(filename=snakemake.log[0], level=logging.INFO)
logging.captureWarnings(True)
visit = read_visit(snakemake.input[0], layout=snakemake.params.layout,
                   aperture=snakemake.params.aperture)
summary = visit_summary(visit)
logging.info("%s", summary)
pd.DataFrame([summary]).to_csv(snakemake.output.summary, sep="\t", index=False)
plot_drp_lightcurves(visit, snakemake.output.plot)
