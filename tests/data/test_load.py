"""Bad input must fail as one DataError naming file, column, first offending lines and expectation;
filters must report what they removed."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from loading import error_of, write

from towerrec.data.registry import load_dataset
from towerrec.data.features import FeatureTable
from towerrec.data.idmap import IdMap
from towerrec.data.load import LoadOptions, load_interactions
from towerrec.errors import DataError




# ---- files and columns ------------------------------------------------------------------------
def test_missing_file(tmp_path):
    msg = error_of(tmp_path / "nope.csv")
    assert "nope.csv" in msg and "not found" in msg and "expected" in msg


def test_empty_file(tmp_path):
    msg = error_of(write(tmp_path / "empty.csv", ""))
    assert "empty.csv" in msg and "empty" in msg and "expected a header" in msg


def test_header_only_file(tmp_path):
    msg = error_of(write(tmp_path / "h.csv", "user_id,item_id,rating\n"))
    assert "h.csv" in msg and "header but no rows" in msg and "expected at least one" in msg


def test_header_only_parquet(tmp_path):
    path = tmp_path / "h.parquet"
    pq.write_table(pa.table({"user_id": pa.array([], pa.string()), "item_id": pa.array([], pa.string())}), path)
    assert "header but no rows" in error_of(path)


def test_missing_item_column(tmp_path):
    msg = error_of(write(tmp_path / "cols.csv", "user_id,product\nu1,i1\n"))
    assert "cols.csv" in msg and "no item column" in msg and "'product'" in msg and "item_id" in msg


def test_explicit_column_that_does_not_exist(tmp_path):
    msg = error_of(write(tmp_path / "x.csv", "user_id,item_id\nu1,i1\n"), LoadOptions(rating_col="stars"))
    assert "x.csv" in msg and "'stars'" in msg


def test_not_a_parquet_file(tmp_path):
    msg = error_of(write(tmp_path / "bad.parquet", "hello"))
    assert "bad.parquet" in msg and "cannot be parsed" in msg


# ---- values: line numbers are file lines (header = line 1) -----------------------------------
@pytest.mark.parametrize("body,lines", [
    ("u1,i1,3\n,i2,4\nu3,i3,5\n", "3"),            # empty id
    ("u1,i1,3\n   ,i2,4\n", "3"),                   # whitespace id
    ("u1,i1,3\n,i2,4\nu3,i3,1\n\"\",i4,2\n", "3, 5"),  # a quoted empty cell is empty too
])
def test_blank_or_nan_user_ids(tmp_path, body, lines):
    msg = error_of(write(tmp_path / "ids.csv", "user_id,item_id,rating\n" + body))
    assert "ids.csv" in msg and "'user_id'" in msg and "blank or missing ids" in msg
    assert f"first rows: {lines})" in msg and "expected a non-empty id" in msg


def test_blank_item_id_in_parquet_is_a_null(tmp_path):
    path = tmp_path / "n.parquet"
    pq.write_table(pa.table({"user_id": ["a", "b", "c"], "item_id": ["x", None, "z"]}), path)
    msg = error_of(path)
    assert "n.parquet" in msg and "'item_id'" in msg and "first rows: 3)" in msg


def test_blank_ids_in_a_dataframe_use_row_positions():
    frame = pd.DataFrame({"user_id": ["a", None, "c"], "item_id": ["x", "y", "z"]})
    msg = error_of(frame)
    assert "DataFrame" in msg and "row(s)" in msg and "first rows: 1)" in msg


def test_non_numeric_rating(tmp_path):
    msg = error_of(write(tmp_path / "r.csv", "user_id,item_id,rating\nu1,i1,3\nu2,i2,abc\nu3,i3,\n"))
    assert "r.csv" in msg and "'rating'" in msg and "first rows: 3, 4; values: 'abc'" in msg
    assert "expected a number on every row" in msg


def test_non_numeric_timestamp(tmp_path):
    msg = error_of(write(tmp_path / "t.csv", "user_id,item_id,rating,timestamp\nu1,i1,3,100\nu2,i2,4,yesterday\n"))
    assert "t.csv" in msg and "'timestamp'" in msg and "first rows: 3; values: 'yesterday'" in msg


@pytest.mark.parametrize("column,bad", [("timestamp", "2020-01-01"), ("rating", "x")])
def test_bad_value_past_the_type_inference_block(tmp_path, column, bad):
    # pyarrow infers types from the first block only: a bad value at row 200,000 used to surface as a
    # raw conversion error; it must name the exact line like any other bad value
    n = 200_001
    frame = pd.DataFrame({"user_id": np.arange(n) % 97, "item_id": np.arange(n) % 89,
                          "rating": np.ones(n, dtype=int), "timestamp": np.arange(n)}).astype({column: object})
    frame.loc[200_000, column] = bad
    path = tmp_path / "deep.csv"
    frame.to_csv(path, index=False)
    msg = error_of(path)
    assert "deep.csv" in msg and f"'{column}'" in msg and f"first rows: 200002; values: {bad!r}" in msg


def test_unknown_duplicate_policy():
    frame = pd.DataFrame({"user_id": ["a"], "item_id": ["x"]})
    assert "one of ('keep', 'first', 'last', 'sum')" in error_of(frame, LoadOptions(duplicates="mean"))


def test_min_rating_without_rating_column():
    frame = pd.DataFrame({"user_id": ["a"], "item_id": ["x"]})
    assert "min-rating needs a rating column" in error_of(frame, LoadOptions(min_rating=4))


# ---- feature tables ---------------------------------------------------------------------------
def feature_error(path: Path, **kwargs) -> str:
    with pytest.raises(DataError) as info:
        FeatureTable.from_file(path, IdMap(["i1", "i2"]), id_col="item_id", **kwargs)
    return str(info.value)


def test_feature_table_duplicated_ids(tmp_path):
    msg = feature_error(write(tmp_path / "items.csv", "item_id,title\ni1,A\ni2,B\ni1,C\n"))
    assert "items.csv" in msg and "'item_id'" in msg and "duplicated ids" in msg
    assert "first rows: 4; values: 'i1'" in msg and "expected one row per id" in msg


def test_feature_table_blank_id_missing_column_header_only_and_bad_numeric(tmp_path):
    assert "first rows: 3)" in feature_error(write(tmp_path / "a.csv", "item_id,title\ni1,A\n,B\n"))
    assert "missing id column 'item_id'" in feature_error(write(tmp_path / "b.csv", "id,title\ni1,A\n"))
    assert "header but no rows" in feature_error(write(tmp_path / "c.csv", "item_id,title\n"))
    assert "not found" in feature_error(tmp_path / "none.csv")
    msg = feature_error(write(tmp_path / "d.csv", "item_id,price\ni1,3\ni2,abc\n"), kinds={"price": "numeric"})
    assert "'price'" in msg and "first rows: 3; values: 'abc'" in msg


def test_items_file_of_a_dataset_folder_is_validated(tmp_path):
    write(tmp_path / "interactions.csv", "user_id,item_id\nu1,i1\n")
    write(tmp_path / "items.csv", "item_id,title\ni1,A\ni1,B\n")
    with pytest.raises(DataError, match=r"items.csv, column 'item_id': duplicated ids .*first rows: 3"):
        load_dataset(tmp_path)
    write(tmp_path / "items.csv", "item_id,title\n")
    with pytest.raises(DataError, match="items.csv: the table has a header but no rows"):
        load_dataset(tmp_path)
    write(tmp_path / "items.csv", "sku,title\ni1,A\n")
    with pytest.raises(DataError, match="items.csv: no id column found"):
        load_dataset(tmp_path)


# ---- filters report what they removed ---------------------------------------------------------
DUPES = pd.DataFrame({"user_id": ["a", "a", "a", "b", "b"], "item_id": ["x", "x", "y", "x", "x"],
                      "rating": [1.0, 2.0, 3.0, 4.0, 5.0], "timestamp": [5, 1, 3, 2, 9]})


@pytest.mark.parametrize("policy,expected", [
    ("keep", {("a", "x", 5, 1.0), ("a", "x", 1, 2.0), ("a", "y", 3, 3.0), ("b", "x", 2, 4.0), ("b", "x", 9, 5.0)}),
    ("first", {("a", "x", 1, 2.0), ("a", "y", 3, 3.0), ("b", "x", 2, 4.0)}),   # earliest in time
    ("last", {("a", "x", 5, 1.0), ("a", "y", 3, 3.0), ("b", "x", 9, 5.0)}),
    ("sum", {("a", "x", 5, 3.0), ("a", "y", 3, 3.0), ("b", "x", 9, 9.0)}),     # latest time, weights added
])
def test_duplicate_policies(policy, expected):
    inter, report = load_interactions(DUPES, LoadOptions(duplicates=policy))
    frame = inter.to_frame()
    got = set(zip(frame.user_id, frame.item_id, frame.timestamp.astype(int), inter.weight.tolist()))
    assert got == expected
    step = report.steps[-1]
    assert step["step"] == "duplicates" and step["policy"] == policy
    assert step["rows_removed"] == 5 - len(expected)


def test_min_rating_reports_and_binarises():
    inter, report = load_interactions(DUPES, LoadOptions(min_rating=3, duplicates="keep"))
    assert len(inter) == 3 and np.all(inter.weight == 1)
    assert report.steps[0] == {"step": "min_rating", "rows_removed": 2, "users_removed": 0,
                               "items_removed": 0, "threshold": 3}
    inter, report = load_interactions(DUPES, LoadOptions(min_rating=5))
    assert report.steps[0]["rows_removed"] == 4 and report.steps[0]["users_removed"] == 1
    assert report.steps[0]["items_removed"] == 1 and inter.n_users == 1 and inter.n_items == 1


def test_kcore_reports_rows_users_items():
    # a 5x5 block, plus user 9 (items 0 and 7) and user 8 (item 7): 7 has two users, but 8 and 9 fall
    # below 2 after that, so k-core removes users 8, 9 and item 7
    rows = [(u, i) for u in range(5) for i in range(5)] + [(9, 0), (9, 7), (8, 7)]
    frame = pd.DataFrame(rows, columns=["user_id", "item_id"]).astype(str)
    inter, report = load_interactions(frame, LoadOptions(user_kcore=2, item_kcore=2))
    assert (inter.n_users, inter.n_items, len(inter)) == (5, 5, 25)
    step = report.steps[-1]
    assert (step["rows_removed"], step["users_removed"], step["items_removed"]) == (3, 2, 1)
    assert "kcore: removed 3 rows, 2 users, 1 items (user_k=2, item_k=2)" in report.lines()


def test_catalogue_items_are_kept_unless_kcore_redefines_the_catalogue():
    frame = pd.DataFrame({"user_id": ["a", "b"], "item_id": ["x", "x"]})
    inter, _ = load_interactions(frame, item_ids=np.array(["x", "cold"], dtype=object))
    assert inter.item_map.to_list() == ["x", "cold"] and inter.item_counts().tolist() == [2, 0]
    inter, _ = load_interactions(frame, LoadOptions(item_kcore=1), item_ids=np.array(["x", "cold"], dtype=object))
    assert inter.item_map.to_list() == ["x"]
