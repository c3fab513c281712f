# Configuration validation and input functions shared by all rules.
import difflib
import functools
import math
import sys
from pathlib import Path

import jsonschema
import yaml
from snakemake.utils import validate

from archi.errors import ArchiError, ConfigError, one_line
from archi.factors import format_factor
from archi.io.archive import is_archive, unpack_visit
from archi.io.atomic import write_text_atomically
from archi.io.drp import check_visit_products, visit_frames
from archi.io.find import products_fingerprint
from archi.io.search_files import read_decision, read_fine_plan
from archi.io.visits_table import read_visits_table
from archi.optimize import fine_tune_parts, round_factors
from archi.options import KEYS as OPTION_NAMES, Options


def stop(message):
    """End the run before any job with one line (no traceback): the file and the problem."""
    print(f"Error: {one_line(message)}", file=sys.stderr, flush=True)
    sys.exit(1)


def config_sources():
    """The configuration's files as the user gave them, for messages."""
    files = [str(f) for f in workflow.configfiles] or ["config/config.yaml"]
    return ", ".join(files) + (" or --config" if workflow.config_settings.config else "")


def schema_error(data, schema_path):
    """The most relevant problem of ``data`` against a JSON schema (None: valid)."""
    schema = yaml.safe_load(Path(workflow.basedir, schema_path).read_text())
    return jsonschema.exceptions.best_match(
        jsonschema.Draft202012Validator(schema).iter_errors(data)
    )


def describe(error):
    """A JSON-schema error as one line: the key and the problem (unknown keys: the closest
    known one)."""
    where = ".".join(map(str, error.absolute_path))
    if error.validator == "additionalProperties":
        allowed = error.schema.get("properties", {})
        unknown = sorted(set(error.instance) - set(allowed))[0]
        close = difflib.get_close_matches(unknown, allowed, n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        return f"unknown option {'.'.join(filter(None, [where, unknown]))!r}{hint}"
    return f"{where or 'the configuration'}: {error.message}"


def typed(value):
    """A --config value as YAML types it: Snakemake keeps "[1, 10]"'s items, a section's
    values and "false" as strings (its YAML reader is yaml's BaseLoader)."""
    if isinstance(value, list):
        return [typed(v) for v in value]
    if isinstance(value, dict):
        return {k: typed(v) for k, v in value.items()}
    if isinstance(value, str) and value:
        try:
            return yaml.safe_load(value)
        except yaml.YAMLError:
            return value  # the schema or the options then say what is wrong
    return value


def merge_flat_keys(config, command_line):
    """Options typed flat (``--config method=shape``, or a flat key in a config file) moved
    into their section (``photometry:``, ``outputs:``), where they win over its value; a
    section given on the command line (``--config "photometry={magnitude_limit: 12}"``) is
    merged key by key with the file's (Snakemake's own merge). The command line's values
    are typed as YAML. The schema checks the result."""
    for section, keys in {"photometry": OPTION_KEYS, "outputs": OUTPUT_KEYS}.items():
        if isinstance(command_line.get(section), dict) and isinstance(config.get(section), dict):
            config[section].update({k: typed(config[section][k]) for k in command_line[section]})
        flat = {key: config.pop(key) for key in list(config) if key in keys}
        flat = {k: typed(v) if k in command_line else v for k, v in flat.items()}
        if flat and isinstance(config.get(section, {}), dict):
            config[section] = {**config.get(section, {}), **flat}


OPTION_KEYS = set(OPTION_NAMES)
OUTPUT_KEYS = {"export_text", "show_results", "debug", "save_gif"}
merge_flat_keys(config, workflow.config_settings.config or {})
error = schema_error(config, "schemas/config.schema.yaml")
if error is not None and error.validator in ("pattern", "enum"):
    try:  # the library says which values a photometry option takes, the schema a regex
        Options.from_mapping(config.get("photometry", {}), source=config_sources())
    except ArchiError as exc:
        stop(exc)
if error is not None:
    stop(f"{config_sources()}: {describe(error)}")
validate(config, "../schemas/config.schema.yaml")  # valid: only fills in the defaults


def _overrides(row):
    """Per-visit option overrides: any photometry option as an extra column of the table."""
    out = {}
    for key, value in row.items():
        if key in VISIT_COLUMNS or value == "":
            continue
        try:
            out[key] = yaml.safe_load(value)
        except yaml.YAMLError:
            raise ConfigError(
                f"{config['visits']}: visit {row['visit']}: column {key}: {value!r} is "
                f"not a YAML value"
            ) from None
    return out


def fingerprint_path(visit):
    return f"results/{visit}/products_fingerprint.tsv"


def record_fingerprint(visit, products):
    """Rewrite the visit's fingerprint only when its products changed (its new time then
    reruns the visit; unchanged, it keeps its time and nothing reruns)."""
    path = Path(fingerprint_path(visit))
    text = products_fingerprint(products)
    if not path.is_file() or path.read_text() != text:
        path.parent.mkdir(parents=True, exist_ok=True)
        write_text_atomically(path, lambda fh: fh.write(text))


VISIT_COLUMNS = {"visit", "path", "data_type", "simulation"}
OPTIONS = {}
try:
    VISITS = read_visits_table(config["visits"])
    Options.from_mapping(config["photometry"], source=config_sources())
    for _visit, _row in VISITS.iterrows():
        OPTIONS[_visit] = Options.from_mapping(
            {**config["photometry"], **_overrides(_row.to_dict())},
            source=f"{config['visits']}: visit {_visit}",
        )
except ArchiError as exc:
    stop(exc)

if not config["optimize"] and not Path(config["optimized_factors"]).is_file():
    stop(
        f"{config_sources()}: optimize is false but optimized_factors "
        f"{config['optimized_factors']!r} is not a file"
    )

# a real visit given as a DACE .tgz is unpacked once (by the main process, before any job)
# into results/<visit>/dace, the folder every job then reads
for _visit, _row in VISITS.iterrows():
    if _row.data_type == "real" and is_archive(_row.path):
        if workflow.is_main_process:
            try:
                unpack_visit(_row.path, f"results/{_visit}/dace")
            except ArchiError as exc:
                stop(f"{config['visits']}: visit {_visit}: {exc}")
        VISITS.loc[_visit, "path"] = f"results/{_visit}/dace"

# the products of every real visit, opened once (headers only) before any job; not again in
# the cluster jobs, which parse this file too
if workflow.is_main_process:
    for _visit, _row in VISITS.iterrows():
        if _row.data_type != "real":
            continue
        try:
            _products = check_visit_products(
                _row.path,
                config["layout"],
                needs_catalogue="fits" in OPTIONS[_visit].initial_detect,
            )
        except ArchiError as exc:
            stop(f"{config['visits']}: visit {_visit}: {exc}")
        record_fingerprint(_visit, _products)

# one job per visit does everything from detection to the text export (rule whole_visit)
WHOLE_VISIT_JOBS = config["search_jobs"] == "visit" and config["optimize"]
TEXT_OUTPUT = (
    {"text": "results/{visit}/lightcurves.txt"} if config["outputs"]["export_text"] else {}
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


def fingerprint_of(wildcards):
    """Size and time of a real visit's product files (written at start): a product replaced
    in place reruns the visit (its folder's own time does not change)."""
    if VISITS.loc[wildcards.visit].data_type == "simulated":
        return []
    return fingerprint_path(wildcards.visit)


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
    if config["outputs"]["pycheops_files"]:
        out.append(f"results/{visit}/pycheops")
    if config["optimize"] and OPTIONS[visit].apertures.uses_masks:
        out.append(f"results/{visit}/plots/cdpp_vs_factor.png")
    return out


def all_outputs():
    return [o for v in VISITS.index for o in visit_outputs(v)] + ["results/summary.tsv"]


# -- cluster resources: growing with the visit's frames and with each retry ----------------


@functools.cache
def frames_of(visit):
    """The number of frames of a visit: its simulation options', or its SubArray header's."""
    row = VISITS.loc[visit]
    if row.data_type == "simulated":
        from archi.simulate.config import SimulationConfig  # only for simulated visits

        return SimulationConfig.from_yaml(row.simulation).n_frames
    return visit_frames(row.path, config["layout"])


def memory(base_mb, mb_per_1000_frames):
    """A rule's mem_mb [MB]: ``base_mb`` plus ``mb_per_1000_frames`` per 1000 frames of the
    visit, times the attempt (a job killed for memory asks for twice as much, then three
    times: the profile's retries)."""

    def mem_mb(wildcards, attempt):
        frames = frames_of(wildcards.visit)
        return math.ceil((base_mb + mb_per_1000_frames * frames / 1000) * attempt)

    return mem_mb


def minutes(base, per_1000_frames):
    """A rule's runtime [minutes]: ``base`` plus ``per_1000_frames`` per 1000 frames, times
    the attempt (a job killed at its time limit gets twice as long, then three times)."""

    def runtime(wildcards, attempt):
        return math.ceil((base + per_1000_frames * frames_of(wildcards.visit) / 1000) * attempt)

    return runtime

