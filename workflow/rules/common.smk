# Configuration validation and input functions shared by all rules.
from pathlib import Path

import pandas as pd
import yaml
from snakemake.utils import validate

from archi.errors import ArchiError
from archi.factors import format_factor
from archi.io.search_files import read_decision, read_fine_plan
from archi.optimize import fine_tune_parts, round_factors
from archi.options import Options

validate(config, "../schemas/config.schema.yaml")

VISITS = pd.read_csv(config["visits"], sep="\t", dtype=str, comment="#").fillna("")
validate(VISITS, "../schemas/visits.schema.yaml")
if VISITS["visit"].duplicated().any():
    raise ValueError(
        f"{config['visits']}: duplicate visit ids "
        f"{sorted(VISITS.loc[VISITS['visit'].duplicated(), 'visit'])}"
    )
VISITS = VISITS.set_index("visit", drop=False)
VISIT_COLUMNS = {"visit", "path", "data_type", "simulation"}


def _overrides(row):
    """Per-visit option overrides: any photometry option as an extra column of the table."""
    out = {}
    for key, value in row.items():
        if key in VISIT_COLUMNS or value == "":
            continue
        out[key] = yaml.safe_load(value)
    return out


OPTIONS = {}
for _visit, _row in VISITS.iterrows():
    if _row.data_type == "real" and not Path(_row.path).is_dir():
        raise ValueError(
            f"{config['visits']}: visit {_visit}: folder {_row.path} does not exist"
        )
    if _row.data_type == "simulated" and not Path(_row.simulation).is_file():
        raise ValueError(
            f"{config['visits']}: visit {_visit}: simulation options "
            f"{_row.simulation!r} not found"
        )
    try:
        OPTIONS[_visit] = Options.from_mapping(
            {**config["photometry"], **_overrides(_row.to_dict())},
            source=f"{config['visits']}: visit {_visit}",
        )
    except ArchiError as exc:
        raise ValueError(str(exc)) from None

# one job per visit does everything from detection to the text export (rule whole_visit)
WHOLE_VISIT_JOBS = config["search_jobs"] == "visit" and config["optimize"]
TEXT_OUTPUT = (
    {"text": "results/{visit}/lightcurves.txt"} if config["outputs"]["export_text"] else {}
)

if not config["optimize"] and not Path(config["optimized_factors"]).is_file():
    raise ValueError(
        f"optimize is false but optimized_factors {config['optimized_factors']!r} is not a file"
    )


wildcard_constraints:
    visit="|".join(map(str, VISITS.index)),
    round=r"\d+",
    factor=r"(0|[1-9][0-9]*)(\.[0-9]*[1-9])?",
    star=r"\d+",
    part=r"\d+",


def visit_folder(wildcards):
    """Folder of a visit's products (simulated visits are made by rule simulate_visit)."""
    row = VISITS.loc[wildcards.visit]
    if row.data_type == "simulated":
        return f"resources/{wildcards.visit}"
    return row.path


def options_of(wildcards):
    return OPTIONS[wildcards.visit].to_dict()


def opt_dir(visit):
    return f"results/{visit}/optimization"


def round_tables(visit, upto):
    """CDPP tables of rounds 0..upto (factors depend on the options only); none when no
    star has a mask (method psf: nothing to search)."""
    options = OPTIONS[visit]
    if not options.apertures.uses_masks:
        return []
    return [
        f"{opt_dir(visit)}/round{r}/f{format_factor(f)}.tsv"
        for r in range(upto + 1)
        for f in round_factors(options, r)
    ]


def select_round_input(wildcards):
    r = int(wildcards.round)
    inputs = {"tables": round_tables(wildcards.visit, r)}
    if r > 0:
        inputs["previous"] = f"{opt_dir(wildcards.visit)}/round{r - 1}.yaml"
    return inputs


def photometry_decision(wildcards):
    """Round r > 0 measures the stars extended by the decision of round r - 1."""
    r = int(wildcards.round)
    return [] if r == 0 else [f"{opt_dir(wildcards.visit)}/round{r - 1}.yaml"]


def last_round(visit):
    """Walk the rounds through the checkpoint until one decides that no star needs more.
    The last allowed round needs no decision (nothing can follow it): one job less on the
    critical path."""
    options = OPTIONS[visit]
    if not options.apertures.uses_masks:  # method psf: no round, no checkpoint
        return 0
    for r in range(options.optimization_extensions):
        decision = read_decision(
            checkpoints.select_round.get(visit=visit, round=r).output[0]
        )
        if decision.done:
            return r
    return options.optimization_extensions


def fine_tables(wildcards):
    if not OPTIONS[wildcards.visit].apertures.uses_masks:  # method psf: no fine tune
        return []
    plan_path = checkpoints.plan_fine_tune.get(visit=wildcards.visit).output[0]
    parts = fine_tune_parts(read_fine_plan(plan_path), config["fine_tune_jobs"])
    return [f"{opt_dir(wildcards.visit)}/fine/part{i}.tsv" for i in range(len(parts))]


def all_search_tables(wildcards):
    return round_tables(wildcards.visit, last_round(wildcards.visit))


def factors_file(wildcards):
    if config["optimize"]:
        return f"{opt_dir(wildcards.visit)}/optimized_factors.yaml"
    return config["optimized_factors"]


def visit_outputs(visit):
    out = [
        f"results/{visit}/lightcurves.fits",
        f"results/{visit}/run_info.yaml",
        f"results/{visit}/visit_summary.tsv",
        f"results/{visit}/plots/drp_lightcurves.png",
    ]
    if config["outputs"]["export_text"]:
        out.append(f"results/{visit}/lightcurves.txt")
    if config["outputs"]["show_results"]:
        out.append(f"results/{visit}/plots/stars")
        out.append(f"results/{visit}/plots/field_model.png")
    if config["outputs"]["debug"]:
        out.append(f"results/{visit}/plots/target_vs_drp.png")
    if config["outputs"]["save_gif"]:
        out.append(f"results/{visit}/star_tracking.gif")
    if config["optimize"] and OPTIONS[visit].apertures.uses_masks:
        out.append(f"results/{visit}/plots/cdpp_vs_factor.png")
    return out


def all_outputs():
    return [o for v in VISITS.index for o in visit_outputs(v)] + ["results/summary.tsv"]
