"""Dataset.from_frame builds exactly what a dataset folder gives; load_dataset takes DataFrames for
items and users too; Dataset, Interactions and IdMap print as one short line."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from shared_data import shared_dataset

from towerrec.data.dataset import Dataset
from towerrec.data.idmap import IdMap
from towerrec.data.interactions import Interactions
from towerrec.data.load import LoadOptions
from towerrec.data.registry import load_dataset
from towerrec.errors import DataError

LOG = pd.DataFrame({
    "userId": ["u1", "u1", "u2", "u2", "u3", "u3", "u1", "NA"],
    "item_id": ["a", "b", "a", "c", "b", "c", "a", "c"],
    "Rating": [5, 3, 4, 1, 2, 5, 4, 3],
    "timestamp": [10, 11, 12, 13, 14, 15, 16, 17],
    "note": ["x", "y", "z", "x", "y", "z", "x", "y"],
})
ITEMS = pd.DataFrame({
    "item_id": ["c", "a", "b", "cold", "orphan?"],
    "title": ["Gamma", "Alpha", "NA", "Cold one", ""],
    "genres": ["g1|g2", "g2", "g1", "g3", "g1"],
    "year": [1990, 2001, None, 1985, 1970],
    "url": ["http://x/1", "http://x/2", "http://x/3", "http://x/4", "http://x/5"],
})
USERS = pd.DataFrame({"user_id": ["u2", "u1", "NA", "ghost"], "age": [31, 25, 40, 50],
                      "country": ["FR", "DE", "FR", "US"]})


def as_folder(root: Path) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    LOG.to_csv(root / "interactions.csv", index=False)
    ITEMS.to_csv(root / "items.csv", index=False)
    USERS.to_csv(root / "users.csv", index=False)
    return root


def features(table) -> dict:
    return {name: (c.kind, c.vocab, None if c.codes is None else c.codes.tolist(),
                   None if c.offsets is None else c.offsets.tolist(),
                   None if c.values is None else c.values.tolist(),
                   None if c.texts is None else c.texts.tolist()) for name, c in table.columns.items()}


def without_sources(lines: list[str]) -> list[str]:
    names = {"items.csv": "items", "users.csv": "users", "items DataFrame": "items", "users DataFrame": "users"}
    out = []
    for line in lines[1:]:  # line 0 names the source
        for old, new in names.items():
            line = line.replace(old, new)
        out.append(line)
    return out


@pytest.mark.parametrize("options", [LoadOptions(), LoadOptions(min_rating=3, duplicates="last"),
                                     LoadOptions(user_kcore=2)])
def test_from_frame_gives_exactly_what_the_folder_gives(tmp_path, options):
    folder = Dataset.from_path(as_folder(tmp_path / "ds"), options)
    frames = Dataset.from_frame(LOG, items=ITEMS, users=USERS, options=options)
    a, b = folder.interactions, frames.interactions
    assert a.user_map == b.user_map and a.item_map == b.item_map
    for field in ("user_idx", "item_idx", "weight", "time", "rating", "row"):
        assert np.array_equal(getattr(a, field), getattr(b, field)), field
    assert a.time_kind == b.time_kind == "timestamp"
    assert features(folder.item_features) == features(frames.item_features)
    assert features(folder.user_features) == features(frames.user_features)
    assert folder.n_cold_items == frames.n_cold_items
    assert folder.titles(range(a.n_items)) == frames.titles(range(b.n_items))
    assert without_sources(folder.report.lines()) == without_sources(frames.report.lines())
    assert frames.report.source == "DataFrame" and frames.name == "DataFrame" and frames.path is None


def test_from_frame_keeps_cold_items_and_reports_side_tables():
    ds = Dataset.from_frame(LOG, items=ITEMS, users=USERS)
    inter = ds.interactions
    assert inter.item_map.to_list() == ["a", "b", "c", "cold", "orphan?"]
    assert inter.user_map.to_list() == ["u1", "u2", "u3", "NA"]
    assert ds.n_cold_items == 2 and ds.titles([0, 1, 3, 4]) == ["Alpha", "NA", "Cold one", "orphan?"]
    assert ds.user_features.labels("country") == ["DE", "FR", "", "FR"]  # u3 has no row: default
    lines = ds.report.lines()
    assert "columns: user 'userId', item 'item_id', rating 'Rating', time 'timestamp'; weights: the 'Rating' column" \
        in lines
    assert any(line.startswith("ignored columns: 'note'") for line in lines)
    assert "items DataFrame: 2 of 5 catalogue items have no interactions (kept as cold items)" in lines
    assert ("items DataFrame: item features title (text), genres (multi), year (numeric); ignored: url "
            "(kind 'ignore'; set a kind to use one)") in lines
    assert ("users DataFrame: 1 users with interactions have no feature row (defaults used); 1 rows are for "
            "users not in the interactions (ignored)") in lines


def test_load_dataset_takes_item_and_user_frames():
    ds = load_dataset(LOG, items=ITEMS, users=USERS, item_kinds={"year": "categorical"})
    same = Dataset.from_frame(LOG, items=ITEMS, users=USERS, item_kinds={"year": "categorical"})
    assert ds.item_features.columns["year"].kind == "categorical"
    assert features(ds.item_features) == features(same.item_features)
    assert ds.data_sha256 == same.data_sha256 and ds.data_sha256 != load_dataset(LOG.iloc[:-1]).data_sha256


def test_side_frames_are_validated_like_files(tmp_path):
    dup = pd.concat([ITEMS, ITEMS.iloc[[1]]], ignore_index=True)
    with pytest.raises(DataError, match=r"^items DataFrame, column 'item_id': duplicated ids at 1 row\(s\) "
                                        r"\(first rows: 5; values: 'a'\)"):
        Dataset.from_frame(LOG, items=dup)
    with pytest.raises(DataError, match=r"^users DataFrame, column 'user_id': blank or missing ids .*first rows: 1\)"):
        Dataset.from_frame(LOG, users=USERS.assign(user_id=["u2", None, "NA", "ghost"]))
    with pytest.raises(DataError, match=r"^items DataFrame: no id column found among \['sku', 'title'\]"):
        Dataset.from_frame(LOG, items=pd.DataFrame({"sku": ["a"], "title": ["A"]}))
    with pytest.raises(DataError, match="items DataFrame: the table has a header but no rows"):
        Dataset.from_frame(LOG, items=ITEMS.iloc[:0])
    with pytest.raises(DataError, match="items must be a pandas DataFrame, got str"):
        Dataset.from_frame(LOG, items="items.csv")
    with pytest.raises(DataError, match="items= and users= go with a DataFrame"):
        load_dataset(as_folder(tmp_path / "ds"), items=ITEMS)


def test_item_col_option_names_the_side_table_id_too():
    log = LOG.rename(columns={"item_id": "sku"})
    items = ITEMS.rename(columns={"item_id": "SKU"})
    ds = Dataset.from_frame(log, items=items, options=LoadOptions(item_col="sku"))
    assert ds.interactions.item_map.to_list() == ["a", "b", "c", "cold", "orphan?"]
    assert list(ds.items.columns[:2]) == ["item_id", "title"]  # the raw table's id column is renamed


# ---- one-line reprs ---------------------------------------------------------------------------
def test_reprs_are_one_short_line():
    ds = Dataset.from_frame(LOG, items=ITEMS, users=USERS)
    assert repr(ds) == ("Dataset('DataFrame', 7 interactions, 4 users, 5 items, item features: title, genres, year; "
                        "user features: age, country)")
    assert str(ds) == repr(ds)
    wide = Dataset.from_frame(LOG, items=ITEMS.assign(shape=list("xyxyx"), size=list("sslls")))
    assert repr(wide).endswith("item features: title, genres, year, shape, ...)")
    assert repr(ds.interactions) == "Interactions(7 rows, 4 users, 5 items, rating, time: timestamp)"
    assert repr(ds.interactions.user_map) == "IdMap('user', 4 ids: 'u1', 'u2', 'u3', ...)"
    assert repr(IdMap(["x"], name="item")) == "IdMap('item', 1 ids: 'x')" and "empty" in repr(IdMap([]))
    plain = Interactions.from_frame(pd.DataFrame({"user_id": ["a"], "item_id": ["x"]}))
    assert repr(plain) == "Interactions(1 rows, 1 users, 1 items)"
    assert repr(load_dataset(LOG)) == "Dataset('DataFrame', 7 interactions, 4 users, 3 items)"


def test_repr_of_a_real_dataset():
    ds = load_dataset(shared_dataset("ml-100k"))
    assert repr(ds) == ("Dataset('ml-100k', 100,000 interactions, 943 users, 1,682 items, item features: title, "
                        "release_date, year, genres; user features: age, gender, occupation, zip_code)")
    assert repr(ds.interactions) == "Interactions(100,000 rows, 943 users, 1,682 items, rating, time: timestamp)"
