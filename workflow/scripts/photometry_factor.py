"""Snakemake script: the CDPP table of one factor of a search round."""

from _common import start_log

from archi import api, search
from archi.optimize import parse_factor, write_cdpp_table
from archi.prepared import read_prepared

log = start_log(snakemake)
prepared = read_prepared(snakemake.input.prepared)
factor = parse_factor(snakemake.wildcards.factor)
if snakemake.input.decision:  # extension round: the stars the last decision extended
    stars = search.read_decision(snakemake.input.decision[0]).extend
else:
    stars = list(range(prepared.stars.n_stars))
visit = api.load_visit(prepared.visit_folder, prepared.options, prepared.layout)
table = api.cdpp_table(visit, prepared, factor, stars=stars)
log.info("factor %s, stars %s:\n%s", factor, stars, table.to_string(index=False))
write_cdpp_table(table, snakemake.output[0])
