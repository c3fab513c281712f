"""Snakemake script: CDPP against factor for every star."""

from _common import finish, start_log

from archi import plots
from archi.optimize import read_cdpp_tables, read_optimized_factors

start_log(snakemake)
table = read_cdpp_tables(snakemake.input.table)
(visit_factors,) = read_optimized_factors(snakemake.input.factors).values()
chosen = {s: f for s, f in visit_factors.factors.items() if f is not None}
plots.plot_cdpp_vs_factor(table, snakemake.output[0], chosen=chosen)
finish()
