"""Snakemake script: the fine-tune CDPP table of one part of the stars (one cube pass, no
pandas: a light job)."""

from _common import finish, start_log

from archi import search

log = start_log(snakemake)
table = search.fine_tune_job(snakemake.input.prepared, snakemake.input.plan,
                             snakemake.params.jobs, int(snakemake.wildcards.part),
                             snakemake.output[0])
log.info("part %s: (star, factor, cdpp, valid) %s", snakemake.wildcards.part,
         list(table.rows()))
finish()
