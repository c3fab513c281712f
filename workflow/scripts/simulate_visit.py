"""Snakemake script: simulate one visit."""

from _common import finish, start_log

from archi.simulate import SimulationConfig, simulate_visit

log = start_log(snakemake)
config = SimulationConfig.from_yaml(snakemake.input.options)
paths = simulate_visit(config, snakemake.output[0])
log.info("simulated %d frames into %s", config.n_frames, paths.root)
finish()
