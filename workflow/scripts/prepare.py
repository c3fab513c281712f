"""Snakemake script: detect and track the stars of a visit."""

from _common import finish, start_log

from archi import api
from archi.io.prepared import write_prepared
from archi.options import Options

log = start_log(snakemake)
options = Options.from_mapping(snakemake.params.options)
visit = api.load_visit(snakemake.input[0], options, snakemake.params.layout)
prepared = api.prepare(visit, options, snakemake.params.layout, workers=snakemake.threads)
log.info("%s: %d stars, %d frames, %d processes", prepared.visit_key,
         prepared.stars.n_stars, visit.n_frames, snakemake.threads)
write_prepared(snakemake.output[0], prepared)
finish()
