"""Snakemake script: the whole factor search of a visit in one job, then its light curves."""

from _common import start_log

from archi import api, export
from archi.optimize import optimized_factors_for, write_cdpp_table, write_optimized_factors
from archi.prepared import read_prepared

log = start_log(snakemake)
prepared = read_prepared(snakemake.input.prepared)
options = prepared.options
visit = api.load_visit(prepared.visit_folder, options, prepared.layout)
result = api.optimize_factors(visit, prepared, workers=snakemake.threads)
log.info("factors %s; cdpp %s; valid %s", result.factors, result.cdpp, result.valid)
write_cdpp_table(result.table, snakemake.output.table)
write_optimized_factors(snakemake.output.factors, result.factors, methods=options.method,
                        visit_id=prepared.visit_key, cdpp=result.cdpp,
                        settings={"initial_detect": options.initial_detect,
                                  "detect_mode": options.detect_mode,
                                  "grid_bg": options.grid_bg})
# the factors as the file stores them, so the curves equal those of rule extract
stored = optimized_factors_for(snakemake.output.factors, prepared.visit_key)
curves = api.extract(visit, prepared, {j: float(stored.factors[j])
                                       for j in range(prepared.stars.n_stars)},
                     workers=snakemake.threads)
export.write_lightcurves_fits(curves, snakemake.output.fits)
export.write_run_info(snakemake.output.info, visit_folder=visit.folder,
                      options=options.to_dict(), lc=curves)
log.info("%d stars, factors %s", curves.n_stars, curves.factors.tolist())
