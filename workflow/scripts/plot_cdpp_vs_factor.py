"""Snakemake script: CDPP against factor for every star."""

from _common import finish, start_log

from archi import pipeline

start_log(snakemake)
pipeline.plot_search_files(snakemake.input.table, snakemake.input.factors, snakemake.output[0])
finish()
