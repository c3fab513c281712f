"""Snakemake script: per star, a file pycheops loads as PIPE's output."""

from _common import finish, start_log

from archi.io.lightcurves import read_lightcurves_fits
from archi.io.pipe_files import write_pipe_files

start_log(snakemake)
write_pipe_files(read_lightcurves_fits(snakemake.input[0]), snakemake.output[0])
finish()
