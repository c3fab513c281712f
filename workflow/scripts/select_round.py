"""Snakemake script: after a search round, decide which stars go on to a higher range."""

from _common import finish, start_log

from archi import search_decisions
from archi.options import Options

log = start_log(snakemake)
decision = search_decisions.select_round_job(snakemake.input.tables,
                                             Options.from_mapping(snakemake.params.options),
                                             int(snakemake.wildcards.round), snakemake.output[0])
log.info("round %d: best %s; extend %s", decision.round_index, decision.best, decision.extend)
finish()
