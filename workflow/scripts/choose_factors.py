"""Snakemake script: choose every star's factor from all runs; write the factors file."""

from _common import finish, start_log

from archi import api, search
from archi.io.prepared import read_prepared
from archi.optimize import read_cdpp_tables, write_cdpp_table, write_optimized_factors
from archi.options import Options

log = start_log(snakemake)
options = Options.from_mapping(snakemake.params.options)
prepared = read_prepared(snakemake.input.prepared)
table = search.merge_tables([read_cdpp_tables(list(snakemake.input.search) +
                                              list(snakemake.input.fine))])
factors, cdpp, valid = api.choose(table)
log.info("factors %s; cdpp %s; valid %s", factors, cdpp, valid)
write_cdpp_table(table, snakemake.output.table)
write_optimized_factors(snakemake.output.factors, factors, methods=options.method,
                        visit_id=prepared.visit_key, cdpp=cdpp,
                        settings={"initial_detect": options.initial_detect,
                                  "detect_mode": options.detect_mode,
                                  "grid_bg": options.grid_bg})
finish()
