"""Snakemake script: after a search round, decide which stars go on to a higher range."""

from _common import finish, start_log

from archi import search
from archi.optimize import read_cdpp_tables
from archi.options import Options

log = start_log(snakemake)
options = Options.from_mapping(snakemake.params.options)
table = read_cdpp_tables(snakemake.input.tables)
decision = search.decide_round(table, options, int(snakemake.wildcards.round))
log.info("round %d: best %s; extend %s", decision.round_index, decision.best, decision.extend)
search.write_decision(snakemake.output[0], decision)
finish()
