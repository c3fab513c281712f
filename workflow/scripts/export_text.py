"""Snakemake script: archi's text layout of the light curves."""

from _common import finish, start_log

from archi import export

start_log(snakemake)
export.write_lightcurves_text(export.read_lightcurves_fits(snakemake.input[0]),
                              snakemake.output[0])
finish()
