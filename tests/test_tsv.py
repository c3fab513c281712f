"""Summary tables written without pandas: byte for byte what pandas writes."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from archi.io.tsv import write_tsv

FLOATS = st.floats(allow_nan=True, allow_infinity=True, width=64)
TEXT = st.text(alphabet=st.sampled_from(list("ab _-.,;:'\"\t\\0123")), max_size=6)


@st.composite
def tables(draw):
    """Rows whose columns each hold one kind of value, as the workflow's tables do."""
    kinds = draw(st.lists(st.sampled_from(["int", "float", "text", "bool", "numpy"]),
                          min_size=1, max_size=5))
    n_rows = draw(st.integers(1, 5))
    columns = {}
    for i, kind in enumerate(kinds):
        if kind == "int":
            values = draw(st.lists(st.integers(-10**12, 10**12), min_size=n_rows,
                                   max_size=n_rows))
        elif kind == "float":
            values = draw(st.lists(FLOATS, min_size=n_rows, max_size=n_rows))
        elif kind == "text":
            values = draw(st.lists(TEXT, min_size=n_rows, max_size=n_rows))
        elif kind == "bool":
            values = draw(st.lists(st.booleans(), min_size=n_rows, max_size=n_rows))
        else:  # numpy scalars, as library code returns them
            values = [np.float64(v) for v in draw(st.lists(FLOATS, min_size=n_rows,
                                                           max_size=n_rows))]
        columns[f"c{i}_{kind}"] = values
    return [{name: values[r] for name, values in columns.items()} for r in range(n_rows)]


@settings(max_examples=200, deadline=None)
@given(rows=tables(), float_format=st.sampled_from([None, "%.6g", "%.3f"]))
def test_tables_are_written_as_pandas_writes_them(tmp_path_factory, rows, float_format):
    folder = tmp_path_factory.mktemp("tsv")
    ours, theirs = folder / "ours.tsv", folder / "pandas.tsv"
    write_tsv(rows, ours, float_format=float_format)
    pd.DataFrame(rows).to_csv(theirs, sep="\t", index=False, float_format=float_format)
    assert ours.read_bytes() == theirs.read_bytes()


def test_a_workflow_summary_row(tmp_path):
    """The visit summary's kinds of values, NaN included."""
    rows = [{"visit": "CH_PR100001_TG000101_V0300", "n_frames": 1000, "cadence_s": 45.308,
             "mag": math.nan, "source_id": "", "estimated": np.int64(0)}]
    write_tsv(rows, tmp_path / "a.tsv")
    pd.DataFrame(rows).to_csv(tmp_path / "b.tsv", sep="\t", index=False)
    assert (tmp_path / "a.tsv").read_text() == (tmp_path / "b.tsv").read_text()
    assert (tmp_path / "a.tsv").read_text().splitlines()[1].split("\t")[3] == ""


def test_rows_with_other_columns_are_refused_and_nothing_is_written(tmp_path):
    with pytest.raises(ValueError, match="row 1 has columns"):
        write_tsv([{"a": 1, "b": 2}, {"b": 2, "a": 1}], tmp_path / "t.tsv")
    assert not list(tmp_path.iterdir())
