"""Input that used to be read wrongly without a word: each case is now an error naming file, column and
lines, or is handled and named in the load report. Files and DataFrames are checked alike."""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.csv as pacsv
import pytest
from loading import error_of, write

from towerrec.cli import main
from towerrec.data.dataset import Dataset
from towerrec.data.features import FeatureTable
from towerrec.data.idmap import IdMap
from towerrec.data.interactions import Interactions
from towerrec.data.load import LoadOptions, load_interactions
from towerrec.data.registry import load_dataset
from towerrec.errors import DataError




def cli_error(capsys, path: Path, *extra: str) -> str:
    code = main(["evaluate", "--data", str(path), "--models", "pop", *extra])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and err[-1].startswith("towerrec: error:")
    assert not any("Traceback" in line for line in err)
    return err[-1]


# ---- duplicate column names -------------------------------------------------------------------
def test_duplicate_column_names_in_a_csv_header(tmp_path, capsys):
    path = write(tmp_path / "dup.csv", "user_id,item_id,user_id\nu1,i1,u9\n")
    msg = error_of(path)
    assert "dup.csv" in msg and "duplicate column names" in msg and "'user_id' at columns 1, 3" in msg
    assert "expected each column name once" in msg
    assert "'user_id' at columns 1, 3" in cli_error(capsys, path)


def test_duplicate_column_names_in_a_frame_and_in_items(tmp_path):
    frame = pd.DataFrame([["u1", "i1", 3]], columns=["user_id", "item_id", "item_id"])
    assert "'item_id' at columns 2, 3" in error_of(frame)
    write(tmp_path / "interactions.csv", "user_id,item_id\nu1,i1\n")
    write(tmp_path / "items.csv", "item_id,genre,genre\ni1,a,b\n")
    with pytest.raises(DataError, match=r"items.csv: duplicate column names in the header: 'genre' at columns 2, 3"):
        load_dataset(tmp_path)


# ---- the header repeated as a data row --------------------------------------------------------
def test_repeated_header_rows_are_an_error_naming_their_lines(tmp_path, capsys):
    path = write(tmp_path / "cat.csv", "user_id,item_id,rating\nu1,i1,3\nuser_id,item_id,rating\nu2,i2,4\n"
                                       "user_id,item_id,rating\n")
    msg = error_of(path)
    assert "cat.csv" in msg and "header is repeated as a data row at 2 line(s)" in msg and "first rows: 3, 5" in msg
    assert "first rows: 3, 5" in cli_error(capsys, path)
    frame = pd.DataFrame({"user_id": ["u1", "user_id"], "item_id": ["i1", "item_id"]})
    assert "header is repeated as a data row at 1 row(s) (first rows: 1" in error_of(frame)


def test_an_id_that_equals_only_one_column_name_is_kept():
    frame = pd.DataFrame({"user_id": ["u1", "user_id"], "item_id": ["i1", "i2"]})
    inter, _ = load_interactions(frame)
    assert sorted(inter.user_map.to_list()) == ["u1", "user_id"]


# ---- column roles in any case -------------------------------------------------------------------
def test_roles_are_found_in_any_case_and_named_in_the_report(tmp_path):
    path = write(tmp_path / "case.csv", "USER_ID,ItemId,Rating,Timestamp\nu1,i1,4,10\nu2,i2,5,11\n")
    inter, report = load_interactions(path)
    assert inter.rating.tolist() == [4, 5] and inter.time.tolist() == [10, 11] and inter.time_kind == "timestamp"
    assert report.columns == {"user": "USER_ID", "item": "ItemId", "rating": "Rating", "time": "Timestamp"}
    assert ("columns: user 'USER_ID', item 'ItemId', rating 'Rating', time 'Timestamp'; "
            "weights: the 'Rating' column") in report.lines()
    frame = pd.DataFrame({"UserId": ["a"], "ITEM": ["x"], "Position": [0]})
    inter, report = load_interactions(frame)
    assert report.columns == {"user": "UserId", "item": "ITEM", "time": "Position"} and inter.time_kind == "position"


def test_named_columns_match_ignoring_case(tmp_path):
    path = write(tmp_path / "n.csv", "user_id,item_id,Stars\nu1,i1,4\n")
    inter, report = load_interactions(path, LoadOptions(rating_col="stars"))
    assert report.columns["rating"] == "Stars" and inter.rating.tolist() == [4]


def test_columns_differing_only_in_case_are_ambiguous(tmp_path, capsys):
    path = write(tmp_path / "amb.csv", "user_id,item_id,rating,Rating\nu1,i1,3,4\n")
    msg = error_of(path)
    assert "amb.csv" in msg and "'rating', 'Rating' differ only in case" in msg and "--rating-col" in msg
    assert "differ only in case" in cli_error(capsys, path)
    inter, report = load_interactions(path, LoadOptions(rating_col="Rating"))  # naming one settles it
    assert inter.rating.tolist() == [4] and report.ignored == ["rating"]
    assert "differ only in case" in error_of(pd.DataFrame({"user_id": ["a"], "USER_ID": ["b"], "item_id": ["x"]}))


# ---- which columns are weights ------------------------------------------------------------------
def test_a_count_column_is_reported_as_ignored_not_used_as_weights(tmp_path):
    path = write(tmp_path / "c.csv", "user_id,item_id,count,helpfulness\nu1,i1,-3,1\nu2,i2,4,2\n")
    inter, report = load_interactions(path)
    assert inter.rating is None and inter.weight.tolist() == [1, 1]
    assert report.ignored == ["count", "helpfulness"]
    lines = report.lines()
    assert "columns: user 'user_id', item 'item_id'; weights: 1 on every row (no rating column)" in lines
    assert any(line.startswith("ignored columns: 'count', 'helpfulness'") and "--rating-col" in line
               for line in lines)


def test_a_named_count_column_is_used_and_checked(tmp_path):
    path = write(tmp_path / "c.csv", "user_id,item_id,count\nu1,i1,-3\nu2,i2,4\n")
    msg = error_of(path, LoadOptions(rating_col="count"))
    assert "c.csv, column 'count': negative weights at 1 line(s) (first rows: 2; values: -3.0)" in msg
    inter, report = load_interactions(path, LoadOptions(rating_col="count", min_rating=1))
    assert inter.user_map.to_list() == ["u2"] and report.weights.startswith("1 on every row kept by min_rating")


def test_a_weight_column_is_detected_and_reported():
    inter, report = load_interactions(pd.DataFrame({"user_id": ["a", "b"], "item_id": ["x", "y"],
                                                    "Weight": [0.5, 2.0], "score": [9, 9]}))
    assert inter.weight.tolist() == [0.5, 2.0] and report.columns["rating"] == "Weight"
    assert report.weights == "the 'Weight' column" and report.ignored == ["score"]


def test_results_json_names_the_columns(tmp_path, capsys):
    path = write(tmp_path / "log.csv", "User_Id,item_id,extra\n" + "".join(
        f"u{u},i{i},{u}\n" for u in range(6) for i in range(5) if (u + i) % 3))
    out = tmp_path / "out"
    assert main(["evaluate", "--data", str(path), "--models", "pop", "--k", "2", "--out", str(out)]) == 0
    err = capsys.readouterr().err
    assert "columns: user 'User_Id', item 'item_id'" in err and "ignored columns: 'extra'" in err
    import json
    report = json.loads((out / "results.json").read_text())["dataset"]["report"]
    assert any("ignored columns: 'extra'" in line for line in report)


# ---- negative and non-finite ratings and weights ----------------------------------------------
@pytest.mark.parametrize("cell,what", [("inf", "infinite values"), ("-inf", "infinite values"),
                                       ("1e400", "infinite values"), ("nan", "non-numeric or missing values"),
                                       ("1e39", "values too large")])
def test_non_finite_ratings_are_errors_naming_lines(tmp_path, capsys, cell, what):
    path = write(tmp_path / "r.csv", f"user_id,item_id,rating\nu1,i1,3\nu2,i2,{cell}\n")
    msg = error_of(path)
    assert "r.csv, column 'rating'" in msg and what in msg and "first rows: 3" in msg
    assert what in cli_error(capsys, path)
    # min-rating does not hide them: they are errors before any filter
    assert what in error_of(path, LoadOptions(min_rating=4))


def test_non_finite_values_in_frames_and_time_columns():
    frame = pd.DataFrame({"user_id": ["a", "b", "c"], "item_id": ["x", "y", "z"], "rating": [1.0, np.inf, 2.0]})
    assert "column 'rating': infinite values at 1 row(s) (first rows: 1; values: inf)" in error_of(frame)
    frame = pd.DataFrame({"user_id": ["a", "b"], "item_id": ["x", "y"], "timestamp": [1.0, -np.inf]})
    assert "column 'timestamp': infinite values" in error_of(frame)


def test_negative_weights_are_an_error_unless_min_rating_removes_them_first(tmp_path, capsys):
    path = write(tmp_path / "neg.csv", "user_id,item_id,rating\nu1,i1,-1\nu2,i2,4\nu3,i3,-2\n")
    msg = error_of(path)
    assert "neg.csv, column 'rating': negative weights at 2 line(s) (first rows: 2, 4" in msg
    assert "--min-rating" in msg and "negative weights" in cli_error(capsys, path)
    inter, report = load_interactions(path, LoadOptions(min_rating=0))
    assert inter.user_map.to_list() == ["u2"] and report.steps[0]["rows_removed"] == 2
    # with min-rating the weights are 1, so a negative threshold keeps rows but not negative weights
    inter, _ = load_interactions(path, LoadOptions(min_rating=-5))
    assert len(inter) == 3 and inter.weight.min() == 1
    # the line numbers survive earlier filters: they come from the original rows
    frame = pd.DataFrame({"user_id": ["a", "b", "c"], "item_id": ["x", "y", "z"], "rating": [5.0, 1.0, -3.0]})
    assert "first rows: 2;" in error_of(frame)
    with pytest.raises(DataError, match="negative weights"):
        Interactions.from_frame(frame, rating_col="rating")


# ---- NA-like strings are ids and titles -------------------------------------------------------
NA_IDS = ["NA", "null", "nan", "N/A", "None", "NULL"]


def test_na_strings_are_ids_in_a_csv_as_in_a_frame(tmp_path):
    body = "".join(f"{u},{i},1\n" for u, i in zip(NA_IDS, reversed(NA_IDS)))
    path = write(tmp_path / "na.csv", "user_id,item_id,rating\n" + body)
    from_file, _ = load_interactions(path)
    from_frame, _ = load_interactions(pd.DataFrame({"user_id": NA_IDS, "item_id": NA_IDS[::-1], "rating": 1}))
    assert from_file.user_map.to_list() == NA_IDS == from_frame.user_map.to_list()
    assert from_file.item_map.to_list() == NA_IDS[::-1] == from_frame.item_map.to_list()


def test_only_a_truly_empty_cell_is_missing(tmp_path):
    msg = error_of(write(tmp_path / "e.csv", "user_id,item_id\nNA,x\n,y\n"))
    assert "blank or missing ids at 1 line(s) (first rows: 3)" in msg
    # in a numeric column the usual markers still mean missing, and missing is an error
    msg = error_of(write(tmp_path / "r.csv", "user_id,item_id,rating\na,x,1\nb,y,NA\n"))
    assert "column 'rating': non-numeric or missing values" in msg and "first rows: 3" in msg


def test_na_titles_and_ids_in_side_tables(tmp_path):
    write(tmp_path / "interactions.csv", "user_id,item_id\nNA,null\nnan,N/A\n")
    write(tmp_path / "items.csv", "item_id,title,year\nnull,NA,1999\nN/A,,NA\nNone,nan,2001\n")
    write(tmp_path / "users.csv", "user_id,country\nNA,null\nnan,FR\n")
    ds = load_dataset(tmp_path)
    inter = ds.interactions
    assert inter.item_map.to_list() == ["null", "N/A", "None"] and inter.user_map.to_list() == ["NA", "nan"]
    # title "NA" is a title; an empty title falls back to the id; "nan" is a title too
    assert ds.titles([0, 1, 2]) == ["NA", "N/A", "nan"]
    assert ds.item_features.columns["year"].kind == "numeric"  # "NA" is missing in a numeric column
    assert ds.user_features.labels("country") == ["null", "FR"]
    table = FeatureTable.from_file(tmp_path / "items.csv", IdMap(["null", "N/A"]), id_col="item_id")
    assert table.columns["title"].texts.tolist() == ["NA", ""]


# ---- mixed-type ids in DataFrames -------------------------------------------------------------
def test_mixed_type_ids_are_read_as_their_string_form_and_reported():
    frame = pd.DataFrame({"user_id": pd.Series([1, "x", 2, 1], dtype=object), "item_id": ["a", "b", "a", "c"]})
    inter, report = load_interactions(frame)
    assert inter.user_map.to_list() == ["1", "x", "2"]
    assert any("column 'user_id': ids of mixed types" in n and "string form" in n for n in report.notes)
    assert any("ids of mixed types" in line for line in report.lines())
    # the same strings as the file would give
    assert Interactions.from_frame(frame).user_map.to_list() == ["1", "x", "2"]


def test_numeric_ids_in_frames_read_as_a_csv_writes_them():
    # float ids (ints upcast by pandas) are "1", as in a CSV, in the log and in side frames alike
    log = pd.DataFrame({"user_id": [1.0, 2.0, 2.5], "item_id": np.array([7, 8, 7], dtype=np.int32)})
    users = pd.DataFrame({"user_id": [2.0, 1.0, 2.5], "age": [30, 40, 50]})
    ds = Dataset.from_frame(log, users=users)
    assert ds.interactions.user_map.to_list() == ["1", "2", "2.5"] and ds.interactions.item_map.to_list() == ["7", "8"]
    assert ds.user_features.n_without_row == 0 and ds.user_features.columns["age"].mean == 40
    assert not any("mixed types" in n for n in ds.report.notes)


def test_mixed_type_values_in_a_numeric_column_name_the_row():
    frame = pd.DataFrame({"user_id": ["a", "b", "c"], "item_id": ["x", "y", "z"],
                          "rating": pd.Series([3, "4", "bad"], dtype=object)})
    msg = error_of(frame)
    assert "column 'rating': non-numeric or missing values at 1 row(s) (first rows: 2; values: 'bad')" in msg


def test_mixed_type_ids_in_side_frames():
    log = pd.DataFrame({"user_id": ["u1", "u2"], "item_id": pd.Series([1, "b"], dtype=object)})
    items = pd.DataFrame({"item_id": pd.Series([1, "b", 3.5], dtype=object), "genre": ["g", "h", "g"]})
    ds = Dataset.from_frame(log, items=items)
    assert ds.interactions.item_map.to_list() == ["1", "b", "3.5"] and ds.n_cold_items == 1
    assert ds.item_features.labels("genre") == ["g", "h", "g"]
    assert any(n.startswith("items DataFrame column 'item_id': ids of mixed types") for n in ds.report.notes)


# ---- unreadable files and folders -------------------------------------------------------------
def test_unreadable_file_is_a_data_error_naming_it(tmp_path, monkeypatch, capsys):
    path = write(tmp_path / "secret.csv", "user_id,item_id\nu1,i1\n")

    def denied(*args, **kwargs):
        raise OSError(f"Failed to open local file '{path}'. Detail: [errno 13] Permission denied")

    monkeypatch.setattr(pacsv, "open_csv", denied)
    msg = error_of(path)
    assert msg.startswith(f"{path}: permission denied")
    assert "permission denied" in cli_error(capsys, path)


def test_unreadable_folder_is_a_data_error_naming_it(tmp_path, monkeypatch, capsys):
    folder = tmp_path / "locked"
    folder.mkdir()
    write(folder / "interactions.csv", "user_id,item_id\nu1,i1\n")
    real = Path.stat

    def stat(self, *args, **kwargs):
        if self.parent == folder:
            raise PermissionError(13, "Permission denied", str(self))
        return real(self, *args, **kwargs)

    monkeypatch.setattr(Path, "stat", stat)
    with pytest.raises(DataError, match=f"^{folder}: permission denied"):
        load_dataset(folder)
    assert f"{folder}: permission denied" in cli_error(capsys, folder)
    with pytest.raises(DataError, match="permission denied"):
        load_interactions(folder / "interactions.csv")


@pytest.mark.skipif(not hasattr(os, "geteuid") or os.geteuid() == 0, reason="root reads every file")
def test_unreadable_file_and_folder_for_real(tmp_path):
    path = write(tmp_path / "secret.csv", "user_id,item_id\nu1,i1\n")
    path.chmod(0)
    assert "permission denied" in error_of(path)
    folder = tmp_path / "locked"
    folder.mkdir()
    write(folder / "interactions.csv", "user_id,item_id\nu1,i1\n")
    folder.chmod(0)
    try:
        with pytest.raises(DataError, match="permission denied"):
            load_dataset(folder)
    finally:
        folder.chmod(0o755)


# ---- malformed rows ---------------------------------------------------------------------------
def test_rows_with_the_wrong_number_of_fields_name_their_lines(tmp_path, capsys):
    path = write(tmp_path / "f.csv", "user_id,item_id,rating\nu1,i1,3\nu2,i2,4,5\nu3,i3\nu4,i4,1\n")
    msg = error_of(path)
    assert "f.csv: rows with the wrong number of fields at 2 line(s) (first rows: 3, 4" in msg
    assert "expected 3 fields on every line" in msg
    assert "wrong number of fields" in cli_error(capsys, path)


# ---- dates in the time column -----------------------------------------------------------------
def test_dates_in_the_time_column_become_unix_seconds(tmp_path):
    path = write(tmp_path / "d.csv", "user_id,item_id,datetime\nu1,i1,1970-01-02\nu2,i2,1970-01-01 00:01:00\n")
    inter, report = load_interactions(path)
    assert inter.time.tolist() == [86_400, 60] and report.columns["time"] == "datetime"
    assert any("dates and times read as unix seconds" in n for n in report.notes)
    frame = pd.DataFrame({"user_id": ["a"], "item_id": ["x"], "timestamp": pd.to_datetime(["1970-01-01 00:00:02"])})
    assert load_interactions(frame)[0].time.tolist() == [2]


# ---- side-table cells the fuzz test found ------------------------------------------------------
def test_side_table_true_false_and_blank_cells(tmp_path):
    write(tmp_path / "interactions.csv", "user_id,item_id\nu1,i1\nu2,i2\nu3,i3\n")
    # i3 has no feature row: its default used to be None written into a bool column (a TypeError);
    # "true" stays the text the file holds, and a blank cell in a numeric column is missing
    write(tmp_path / "items.csv", "item_id,flag,year\ni1,true,1999\ni2,FALSE, \n")
    ds = load_dataset(tmp_path)
    assert ds.item_features.labels("flag") == ["true", "FALSE", ""]
    year = ds.item_features.columns["year"]
    assert year.kind == "numeric" and year.values.tolist() == [0.0, 0.0, 0.0] and year.mean == 1999


@pytest.mark.parametrize("suffix,newline", [(".csv", "\n"), (".csv.gz", "\r\n")])
def test_line_numbers_count_the_empty_lines_the_reader_skips(tmp_path, suffix, newline):
    import gzip

    def lines(*rows: str) -> Path:
        text = newline.join(["", "user_id,item_id,rating", "u1,i1,3", "", "", *rows, ""]).encode()
        path = tmp_path / f"e{len(rows)}{suffix}"
        path.write_bytes(gzip.compress(text) if suffix.endswith(".gz") else text)
        return path

    # line 1 is empty, the header is line 2, lines 4-5 are empty
    assert "negative weights at 1 line(s) (first rows: 6;" in error_of(lines("u2,i2,-1"))
    assert "wrong number of fields at 1 line(s) (first rows: 7;" in error_of(lines("u2,i2,1", "u3,i3,1,9"))
