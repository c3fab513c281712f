# Configuration validation and input functions shared by all rules.
from pathlib import Path

import pandas as pd
from snakemake.utils import validate

validate(config, "../schemas/config.schema.yaml")

VISITS = pd.read_csv(config["visits"], sep="\t", dtype=str, comment="#").fillna("")
validate(VISITS, "../schemas/visits.schema.yaml")
if VISITS["visit"].duplicated().any():
    raise ValueError(
        f"{config['visits']}: duplicate visit ids "
        f"{sorted(VISITS.loc[VISITS['visit'].duplicated(), 'visit'])}"
    )
VISITS = VISITS.set_index("visit", drop=False)

for _visit in VISITS.itertuples():
    if _visit.data_type == "real" and not Path(_visit.path).is_dir():
        raise ValueError(
            f"{config['visits']}: visit {_visit.visit}: folder {_visit.path} does not exist"
        )
    if _visit.data_type == "simulated" and not Path(_visit.simulation).is_file():
        raise ValueError(
            f"{config['visits']}: visit {_visit.visit}: simulation options "
            f"{_visit.simulation!r} not found"
        )


wildcard_constraints:
    visit="|".join(map(str, VISITS.index)),


def visit_folder(wildcards):
    """Folder of a visit's products (simulated visits are made by rule simulate_visit)."""
    row = VISITS.loc[wildcards.visit]
    if row.data_type == "simulated":
        return f"resources/{wildcards.visit}"
    return row.path


def all_outputs():
    return expand(
        ["results/{visit}/visit_summary.tsv", "results/{visit}/plots/drp_lightcurves.png"],
        visit=VISITS.index,
    )
