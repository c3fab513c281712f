"""Snakemake script: the CDPP table of one factor of a search round (no pandas: a light job)."""

from _common import finish, start_log

from archi import search

log = start_log(snakemake)
table = search.photometry_job(snakemake.input.prepared, snakemake.wildcards.factor,
                              snakemake.input.decision, snakemake.output[0])
log.info("factor %s: (star, factor, cdpp, valid) %s", snakemake.wildcards.factor,
         list(table.rows()))
finish()
