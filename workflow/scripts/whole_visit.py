"""Snakemake script: a whole visit in one job, from detection to the text export."""

from _common import finish, start_log

from archi import api, export
from archi.io.prepared import write_prepared
from archi.optimize import optimized_factors_for, write_cdpp_table, write_optimized_factors
from archi.options import Options

log = start_log(snakemake)
workers = snakemake.threads
options = Options.from_mapping(snakemake.params.options)
visit = api.load_visit(snakemake.input[0], options, snakemake.params.layout)
prepared = api.prepare(visit, options, snakemake.params.layout, workers=workers)
log.info("%s: %d stars, %d frames, %d processes", prepared.visit_key,
         prepared.stars.n_stars, visit.n_frames, workers)
write_prepared(snakemake.output.prepared, prepared)

result = api.optimize_factors(visit, prepared, workers=workers)
log.info("factors %s; cdpp %s; valid %s", result.factors, result.cdpp, result.valid)
write_cdpp_table(result.table, snakemake.output.table)
write_optimized_factors(snakemake.output.factors, result.factors, methods=options.method,
                        visit_id=prepared.visit_key, cdpp=result.cdpp,
                        settings={"initial_detect": options.initial_detect,
                                  "detect_mode": options.detect_mode,
                                  "grid_bg": options.grid_bg})

# the factors as the file stores them, as rule extract reads them; the search's sums of
# those runs are the curves (no new pass over the cube when the file keeps them exactly)
stored = optimized_factors_for(snakemake.output.factors, prepared.visit_key)
curves = api.extract(visit, prepared, {j: float(stored.factors[j])
                                       for j in range(prepared.stars.n_stars)},
                     workers=workers, search_result=result)
export.write_lightcurves_fits(curves, snakemake.output.fits)
export.write_run_info(snakemake.output.info, visit_folder=visit.folder,
                      options=options.to_dict(), lc=curves)
if "text" in snakemake.output.keys():
    export.write_lightcurves_text(curves, snakemake.output.text)
log.info("%d stars, factors %s", curves.n_stars, curves.factors.tolist())
finish()
