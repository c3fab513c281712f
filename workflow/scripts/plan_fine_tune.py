"""Snakemake script: the stars of the circle fine tune and the radii of each."""

from _common import finish, start_log

from archi import search_decisions
from archi.options import Options

log = start_log(snakemake)
plan = search_decisions.plan_fine_tune_job(
    snakemake.input, Options.from_mapping(snakemake.params.options), snakemake.output[0])
log.info("fine tune of stars %s", sorted(plan))
finish()
