"""Snakemake script: the CDPP table of one factor of a search round (no pandas: a light job)."""

from _common import finish, start_log

from archi import api, search
from archi.io.prepared import read_prepared
from archi.optimize import parse_factor, write_runs

log = start_log(snakemake)
prepared = read_prepared(snakemake.input.prepared)
factor = parse_factor(snakemake.wildcards.factor)
if snakemake.input.decision:  # extension round: the stars the last decision extended
    stars = search.read_decision(snakemake.input.decision[0]).extend
else:
    stars = list(range(prepared.stars.n_stars))
visit = api.load_visit(prepared.visit_folder, prepared.options, prepared.layout)
runs = api.cdpp_runs(visit, prepared, factor, stars=stars)
log.info("factor %s: (star, factor, cdpp, valid) %s", factor, runs)
write_runs(runs, snakemake.output[0])
finish()
