"""Snakemake script: one table of every star of every visit."""

from _common import finish, start_log

from archi.io.summary import write_summary

start_log(snakemake)
write_summary(snakemake.input, snakemake.output[0])
finish()
