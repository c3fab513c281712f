"""Snakemake script: choose every star's factor from all runs; write the factors file."""

from _common import finish, start_log

from archi import search
from archi.options import Options

log = start_log(snakemake)
factors, cdpp, valid = search.choose_factors_job(
    list(snakemake.input.search) + list(snakemake.input.fine), snakemake.input.prepared,
    Options.from_mapping(snakemake.params.options), snakemake.output.factors,
    snakemake.output.table)
log.info("factors %s; cdpp %s; valid %s", factors, cdpp, valid)
finish()
