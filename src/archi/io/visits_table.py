"""Home of the workflow's table of visits (``config/visits.tsv``): reading it and checking
every row before any job runs, each problem one line naming the table, the visit and the
problem (:class:`archi.errors.ConfigError`)."""

from __future__ import annotations

import re
from pathlib import Path

import pandas as pd

from archi.errors import ConfigError, one_line
from archi.io.archive import is_archive

REQUIRED_COLUMNS = ("visit", "data_type")
CELL_COLUMNS = ("path", "simulation")  # the folder (real) or the options (simulated)
DATA_TYPES = ("real", "simulated")
VISIT_ID = re.compile(r"^[A-Za-z0-9_.-]+$")


def read_visits_table(path: str | Path) -> pd.DataFrame:
    """The visits of a tab-separated table, indexed by visit id, every cell a string ("" when
    empty). Raises ConfigError on a missing or malformed table or row."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: visits table not found")
    try:
        table = pd.read_csv(path, sep="\t", dtype=str, comment="#").fillna("")
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: not a tab-separated table ({one_line(exc)})") from None
    table.columns = [str(c).strip() for c in table.columns]
    missing = [c for c in REQUIRED_COLUMNS if c not in table.columns]
    if missing and len(table.columns) == 1 and " " in table.columns[0].strip():
        raise ConfigError(f"{path}: columns must be separated by tabs, not spaces "
                          f"(header {table.columns[0]!r})")
    if missing:
        raise ConfigError(f"{path}: missing column(s) {', '.join(missing)} (columns: "
                          f"{', '.join(table.columns)}; expected {', '.join(REQUIRED_COLUMNS + CELL_COLUMNS)})")
    table = table.apply(lambda column: column.str.strip())
    for column in CELL_COLUMNS:
        if column not in table.columns:
            table[column] = ""
    if table.empty:
        raise ConfigError(f"{path}: no visit (the table has a header only)")
    for number, row in enumerate(table.to_dict("records"), start=2):
        _check_row(path, number, row)
    duplicated = sorted(set(table.visit[table.visit.duplicated()]))
    if duplicated:
        raise ConfigError(f"{path}: duplicate visit id(s) {', '.join(duplicated)}")
    return table.set_index("visit", drop=False)


def _check_row(path: Path, line: int, row: dict[str, str]) -> None:
    """ConfigError naming the table, the line and the visit when a row cannot be run."""
    visit = row["visit"]
    if not VISIT_ID.match(visit):
        raise ConfigError(f"{path}: line {line}: visit id {visit!r} must be letters, digits, "
                          f"'_', '.' or '-'")
    where = f"{path}: visit {visit}"
    if row["data_type"] not in DATA_TYPES:
        raise ConfigError(f"{where}: data_type {row['data_type']!r} is not one of "
                          f"{', '.join(DATA_TYPES)}")
    if row["data_type"] == "real":
        if not row["path"]:
            raise ConfigError(f"{where}: empty path cell (the folder of the visit's products)")
        if not (Path(row["path"]).is_dir() or is_archive(row["path"])):
            raise ConfigError(f"{where}: folder {row['path']} does not exist")
    elif not row["simulation"]:
        raise ConfigError(f"{where}: empty simulation cell (the simulation options YAML)")
    elif not Path(row["simulation"]).is_file():
        raise ConfigError(f"{where}: simulation options {row['simulation']!r} not found")
