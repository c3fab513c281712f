"""Snakemake script: archi's text layout of the light curves."""

from _common import finish, start_log

from archi.io.lightcurves import read_lightcurves_fits
from archi.io.lightcurves_text import write_lightcurves_text

start_log(snakemake)
write_lightcurves_text(read_lightcurves_fits(snakemake.input[0]), snakemake.output[0])
finish()
