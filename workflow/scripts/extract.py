"""Snakemake script: light curves of every star with the chosen factors."""

from _common import finish, start_log

from archi import api, export
from archi.errors import ConfigError
from archi.io.prepared import read_prepared
from archi.optimize import optimized_factors_for
from archi.options import Options

log = start_log(snakemake)
options = Options.from_mapping(snakemake.params.options)
prepared = read_prepared(snakemake.input.prepared)
stored = optimized_factors_for(snakemake.input.factors, prepared.visit_key)
missing = [j for j in range(prepared.stars.n_stars) if stored.factors.get(j) is None]
if missing:
    raise ConfigError(f"{snakemake.input.factors}: no factor for star(s) {missing} of "
                      f"{prepared.visit_key}")
visit = api.load_visit(prepared.visit_folder, options, prepared.layout)
curves = api.extract(visit, prepared, {j: float(stored.factors[j])
                                       for j in range(prepared.stars.n_stars)})
export.write_lightcurves_fits(curves, snakemake.output.fits)
export.write_run_info(snakemake.output.info, visit_folder=visit.folder,
                      options=options.to_dict(), lc=curves)
log.info("%d stars, factors %s", curves.n_stars, curves.factors.tolist())
finish()
