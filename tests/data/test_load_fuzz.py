"""Fuzz the loader with generated CSVs: odd headers (cases, duplicates, missing columns), odd cells
(blank, NA strings, negatives, inf, text in numeric columns, header rows repeated, short rows).

Property: loading either raises DataError, or returns interactions whose report accounts for every
row read (kept + removed by each filter == read == the file's data rows) and whose ids are exactly
the strings written in the file. No other exception, ever. Errors name real lines of the file,
also when empty lines (which the reader skips) come before them.
"""
from __future__ import annotations

import csv
import io
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from towerrec.data.dataset import Dataset
from towerrec.data.load import DUPLICATE_POLICIES, LoadOptions, load_interactions
from towerrec.errors import DataError

FUZZ = settings(max_examples=100, deadline=None, derandomize=True,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])

USERS, ITEMS = ["user_id", "USER_ID", "User", "userId"], ["item_id", "Item", "ITEMID", "movieId"]
RATINGS, TIMES = ["rating", "Rating", "weight"], ["timestamp", "Timestamp", "position"]
NAMES = USERS + ITEMS + RATINGS + TIMES + ["datetime", "count", "extra", ""]
SPECIAL = ["", " ", "NA", "null", "nan", "N/A", "None", "NULL", "inf", "-inf", "-1", "0", "3", "2.5", "1e400",
           "1e39", "abc", "true", "a,b", 'q"t', "1970-01-01", "user_id", "item_id"]
CELLS = st.one_of(st.sampled_from(SPECIAL), st.integers(-3, 40).map(str),
                  st.text(alphabet="abXY019 -_.", min_size=1, max_size=4))
IDS = st.sampled_from(["u1", "u2", "u3", "x", "y", "NA", "null", "nan", "N/A", "None", "1", "01", "1.0", " a",
                       "b c", "a,b", 'q"t', "-1"])
NUMBERS = st.one_of(st.integers(0, 5).map(str), st.sampled_from(["0.5", "4.5", "1e3", "-2", "7"]))
OPTIONS = st.builds(LoadOptions, min_rating=st.sampled_from([None, None, None, 0.0, 3.0]),
                    duplicates=st.sampled_from(DUPLICATE_POLICIES), user_kcore=st.sampled_from([0, 0, 2]),
                    item_kcore=st.sampled_from([0, 1]))


def typical(name: str) -> st.SearchStrategy[str]:
    """A plausible cell for a column of that name: ids for id columns, numbers for numeric ones."""
    if name in USERS + ITEMS:
        return IDS
    if name in RATINGS + TIMES + ["count"]:
        return NUMBERS
    return CELLS


@st.composite
def headers(draw: st.DrawFn) -> list[str]:
    """Mostly a usable header in some case and order; sometimes any mix of names."""
    if draw(st.integers(0, 3)) == 0:
        return draw(st.lists(st.sampled_from(NAMES), min_size=1, max_size=5))
    names = [draw(st.sampled_from(USERS)), draw(st.sampled_from(ITEMS))]
    names += [n for n in (draw(st.sampled_from([None, *RATINGS])), draw(st.sampled_from([None, *TIMES])),
                          draw(st.sampled_from([None, "count", "extra"]))) if n]
    return draw(st.permutations(names))


@st.composite
def logs(draw: st.DrawFn) -> tuple[list[str], list[list[str]]]:
    """A header and rows. `noise` % of cells are odd; noisy logs also get repeated headers and ragged rows."""
    header = draw(headers())
    noise = draw(st.sampled_from([0, 0, 2, 10, 40]))
    kinds = st.sampled_from(["row"] * 40 + ["header", "short", "long"]) if noise >= 10 else st.just("row")
    rows = []
    for kind in draw(st.lists(kinds, min_size=1, max_size=14)):
        if kind == "header":
            rows.append(list(header))
            continue
        width = len(header) + {"row": 0, "short": -1, "long": 1}[kind]
        names = header + ["extra"] * max(width - len(header), 0)
        rows.append([draw(CELLS if draw(st.integers(0, 99)) < noise else typical(n)) for n in names[:max(width, 1)]])
    return header, rows


def to_csv(header: list[str], rows: list[list[str]], blank_after: frozenset[int] = frozenset()) -> str:
    """CSV text; an empty line follows each data row numbered in `blank_after` (readers skip those)."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(header)
    for i, row in enumerate(rows):
        writer.writerow(row)
        if i in blank_after:
            out.write("\n")
    return out.getvalue()


def check_lines(error: DataError, text: str, header: list[str]) -> None:
    """Lines named by an error are real data lines of the file: never the header, never an empty line."""
    lines = text.split("\n")
    for n in error.rows:
        assert 2 <= n <= len(lines) and lines[n - 1] != "", (n, str(error))
        if "header is repeated" in str(error):
            assert lines[n - 1] == lines[0]
        if "wrong number of fields" in str(error):
            assert len(next(csv.reader([lines[n - 1]]))) != len(header)


def check(inter, report, header: list[str], rows: list[list[str]]) -> None:
    removed = sum(step["rows_removed"] for step in report.steps)
    assert report.rows_read == len(rows)
    assert len(inter) + removed == report.rows_read
    for role, idx, id_map in (("user", inter.user_idx, inter.user_map), ("item", inter.item_idx, inter.item_map)):
        col = header.index(report.columns[role])
        written = [rows[r][col] for r in inter.row]
        assert id_map.ids[idx].tolist() == written
    assert np.isfinite(inter.weight).all() and (inter.weight >= 0).all()
    assert set(report.ignored) | set(report.columns.values()) == set(header)


@FUZZ
@given(log=logs(), options=OPTIONS, blank_after=st.frozensets(st.integers(0, 13), max_size=3))
def test_loading_a_generated_csv_reports_every_row_or_raises_data_error(log, options, blank_after):
    header, rows = log
    text = to_csv(header, rows, blank_after)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "log.csv"
        path.write_text(text)
        try:
            inter, report = load_interactions(path, options)
        except DataError as error:
            check_lines(error, text, header)
            return
        check(inter, report, header, rows)


@FUZZ
@given(log=logs(), options=OPTIONS)
def test_loading_a_generated_frame_reports_every_row_or_raises_data_error(log, options):
    header, rows = log
    if any(len(r) != len(header) for r in rows):
        return  # a frame cannot hold ragged rows
    frame = pd.DataFrame(rows, columns=header, dtype=object)
    try:
        inter, report = load_interactions(frame, options)
    except DataError:
        return
    check(inter, report, header, rows)


@st.composite
def item_tables(draw: st.DrawFn) -> tuple[list[str], list[list[str]]]:
    id_name = draw(st.sampled_from(["item_id", "Item_Id", "itemId"] * 3 + ["sku"]))  # sku: no id column
    header = [id_name, "title", draw(st.sampled_from(["genre", "year", "url"] * 3 + ["title"]))]
    ids = st.one_of(IDS, st.sampled_from(["cold", "cold 2"])) if draw(st.integers(0, 4)) else CELLS
    rows = draw(st.lists(st.tuples(ids, CELLS, CELLS).map(list), min_size=1, max_size=6,
                         unique_by=(lambda r: r[0]) if draw(st.integers(0, 4)) else None))
    return header, rows


@FUZZ
@given(log=logs(), items=item_tables(), options=OPTIONS, as_frames=st.booleans())
def test_loading_a_generated_dataset_folder_or_frames(log, items, options, as_frames):
    header, rows = log
    item_header, item_rows = items
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        (folder / "interactions.csv").write_text(to_csv(header, rows))
        (folder / "items.csv").write_text(to_csv(item_header, item_rows))
        try:
            if as_frames:
                if any(len(r) != len(header) for r in rows):
                    return
                ds = Dataset.from_frame(pd.DataFrame(rows, columns=header, dtype=object), options=options,
                                        items=pd.DataFrame(item_rows, columns=item_header, dtype=object))
            else:
                ds = Dataset.from_path(folder, options)
        except DataError:
            return
    check(ds.interactions, ds.report, header, rows)
    catalogue = [r[0] for r in item_rows]
    if not (options.user_kcore or options.item_kcore):
        assert set(catalogue) <= set(ds.interactions.item_map.to_list())
    idx = ds.interactions.item_map.get_index(catalogue)
    for (item_id, title, _), i in zip(item_rows, idx):
        if i >= 0:
            assert ds.titles([i]) == [title or item_id]
