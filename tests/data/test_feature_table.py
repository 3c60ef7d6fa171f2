"""Feature tables: kinds inferred, aligned to the id map, defaults for ids without a row."""
from __future__ import annotations

import pandas as pd
import pytest

from towerrec.data.features import FeatureTable
from towerrec.data.idmap import IdMap
from towerrec.errors import DataError


@pytest.fixture
def items() -> pd.DataFrame:
    return pd.DataFrame({
        "item_id": ["a", "b", "c", "d"],
        "title": ["Toy Story (1995)", "Heat (1995)", "Up (2009)", "Alien (1979)"],
        "genres": ["Animation|Comedy", "Crime|Thriller", "Animation", None],
        "year": [1995, 1995, 2009, 1979],
        "studio": ["pixar", "wb", "pixar", "fox"],
        "url": ["http://x/a", "http://x/b", "http://x/c", "http://x/d"],
    })


def test_kinds_are_inferred_and_urls_ignored(items):
    table = FeatureTable.from_frame(items, IdMap(["a", "b", "c", "d"]), id_col="item_id")
    kinds = {c.name: c.kind for c in table.columns.values()}
    assert kinds == {"title": "text", "genres": "multi", "year": "numeric", "studio": "categorical"}


def test_rows_follow_the_id_map_and_missing_ids_get_defaults(items):
    id_map = IdMap(["c", "zz", "a"])  # "zz" has no feature row; "b" and "d" are not in the map
    table = FeatureTable.from_frame(items, id_map, id_col="item_id")
    assert table.n_without_row == 1 and table.n_unused_rows == 2
    studio = table.columns["studio"]
    assert [studio.vocab[c - 1] if c else None for c in studio.codes] == ["pixar", None, "pixar"]
    genres = table.columns["genres"]
    row0 = genres.codes[genres.offsets[0]:genres.offsets[1]]
    assert [genres.vocab[c - 1] for c in row0] == ["Animation"]
    assert genres.offsets[2] - genres.offsets[1] == 0  # no genres for the missing id
    year = table.columns["year"]
    assert year.values[1] == 0.0  # missing numeric -> the standardised mean
    assert year.values[0] == pytest.approx((2009 - year.mean) / year.std)
    assert list(table.text(["title"])) == ["Up (2009)", "", "Toy Story (1995)"]


def test_duplicated_ids_are_an_error_naming_the_rows(items):
    dup = pd.concat([items, items.iloc[[1]]], ignore_index=True)
    with pytest.raises(DataError, match=r"item_id.*duplicated ids.*4"):
        FeatureTable.from_frame(dup, IdMap(["a"]), id_col="item_id", source="items.csv")


def test_explicit_kinds_override_and_are_checked(items):
    table = FeatureTable.from_frame(items, IdMap(["a"]), id_col="item_id", kinds={"year": "categorical"})
    assert table.columns["year"].kind == "categorical"
    with pytest.raises(DataError, match="unknown feature kind"):
        FeatureTable.from_frame(items, IdMap(["a"]), id_col="item_id", kinds={"year": "weird"})
    bad = items.assign(year=["1995", "x", "2009", "1979"])
    with pytest.raises(DataError, match=r"year.*non-numeric"):
        FeatureTable.from_frame(bad, IdMap(["a"]), id_col="item_id", kinds={"year": "numeric"})


def test_blank_ids_in_a_feature_table_are_an_error(items):
    items.loc[2, "item_id"] = " "
    with pytest.raises(DataError, match="blank or missing ids"):
        FeatureTable.from_frame(items, IdMap(["a"]), id_col="item_id")
