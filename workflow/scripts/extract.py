"""Snakemake script: light curves of every star with the chosen factors."""

from _common import finish, start_log

from archi import pipeline
from archi.options import Options

log = start_log(snakemake)
curves = pipeline.extract_job(snakemake.input.prepared, snakemake.input.factors,
                         Options.from_mapping(snakemake.params.options),
                         snakemake.output.fits, snakemake.output.info)
log.info("%d stars, factors %s", curves.n_stars, curves.factors.tolist())
finish()
