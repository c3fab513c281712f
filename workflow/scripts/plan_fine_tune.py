"""Snakemake script: the stars of the circle fine tune and the radii of each."""

import yaml
from _common import finish, start_log

from archi import search
from archi.io.atomic import atomic_path
from archi.optimize import read_cdpp_tables
from archi.options import Options

log = start_log(snakemake)
options = Options.from_mapping(snakemake.params.options)
plan = search.fine_tune_plan(read_cdpp_tables(snakemake.input), options)
log.info("fine tune of stars %s", sorted(plan))
with atomic_path(snakemake.output[0]) as tmp:
    tmp.write_text(yaml.safe_dump(plan))
finish()
