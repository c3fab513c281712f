"""Snakemake script: the CDPP table of one star over its fine-tune radii (one cube pass)."""

import yaml
from _common import start_log

from archi import api
from archi.optimize import write_cdpp_table
from archi.prepared import read_prepared

log = start_log(snakemake)
prepared = read_prepared(snakemake.input.prepared)
star = int(snakemake.wildcards.star)
radii = (yaml.safe_load(open(snakemake.input.plan)) or {})[star]
visit = api.load_visit(prepared.visit_folder, prepared.options, prepared.layout)
table = api.star_factor_table(visit, prepared, star, radii)
log.info("star %d:\n%s", star, table.to_string(index=False))
write_cdpp_table(table, snakemake.output[0])
