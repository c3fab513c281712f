"""Snakemake script: the fine-tune CDPP table of one part of the stars (one cube pass, no
pandas: a light job)."""

import yaml
from _common import finish, start_log

from archi import api, search
from archi.io.prepared import read_prepared
from archi.optimize import write_runs

log = start_log(snakemake)
prepared = read_prepared(snakemake.input.prepared)
plan = yaml.safe_load(open(snakemake.input.plan)) or {}
stars = search.fine_tune_parts(plan, snakemake.params.jobs)[int(snakemake.wildcards.part)]
visit = api.load_visit(prepared.visit_folder, prepared.options, prepared.layout)
runs = api.factor_runs(visit, prepared, {star: plan[star] for star in stars})
log.info("stars %s: (star, factor, cdpp, valid) %s", stars, runs)
write_runs(runs, snakemake.output[0])
finish()
