"""Snakemake script: a frame, its field model and the residual."""

from _common import finish, start_log

from archi import api, plots
from archi.io.prepared import read_prepared

start_log(snakemake)
prepared = read_prepared(snakemake.input.prepared)
visit = api.load_visit(snakemake.input.visit, prepared.options, prepared.layout)
plots.plot_field_model(visit, prepared.model, snakemake.output[0])
finish()
