"""Snakemake script: simulate one visit."""

import logging

from archi.simulate import SimulationConfig, simulate_visit

logging.basicConfig(filename=snakemake.log[0], level=logging.INFO)
config = SimulationConfig.from_yaml(snakemake.input.options)
paths = simulate_visit(config, snakemake.output[0])
logging.info("simulated %d frames into %s", config.n_frames, paths.root)
