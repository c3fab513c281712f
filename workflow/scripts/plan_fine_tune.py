"""Snakemake script: the radii of the circle fine tune and the stars measured at each."""

import yaml
from _common import start_log

from archi import search
from archi.io.fitswrite import atomic_path
from archi.optimize import read_cdpp_tables
from archi.options import Options

log = start_log(snakemake)
options = Options.from_mapping(snakemake.params.options)
jobs = search.fine_tune_jobs(read_cdpp_tables(snakemake.input), options)
log.info("%d fine-tune radii", len(jobs))
with atomic_path(snakemake.output[0]) as tmp:
    tmp.write_text(yaml.safe_dump({float(r): s for r, s in jobs.items()}))
