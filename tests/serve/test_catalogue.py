"""The catalogue: item tables from the artifact or a file, display values, title search, filters."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from towerrec.artifact import write_item_table
from towerrec.data.idmap import IdMap
from towerrec.serve.catalogue import Catalogue, FilterError, read_item_table


@pytest.fixture
def catalogue(tmp_path) -> Catalogue:
    items = pd.DataFrame({"item_id": ["a", "b", "c", "d"], "title": ["Alien", "Babe", "Casino", None],
                          "genres": ["Horror|Sci-Fi", "Children's|Comedy", "Drama", None],
                          "year": [1979.0, 1995.0, np.nan, 1995.0], "rating": [7.5, 6.0, 8.2, 5.0]})
    item_map = IdMap(["d", "c", "b", "a", "e"], name="item")      # model order differs; "e" has no row
    write_item_table(tmp_path, items, item_map)
    return Catalogue.from_artifact(tmp_path, item_map, popularity=np.array([0.1, 0.4, 0.2, 0.3, 0.0]))


def test_table_is_aligned_to_the_model_and_typed(catalogue):
    assert catalogue.titles == ["d", "Casino", "Babe", "Alien", "e"]    # no title: the id
    assert catalogue.describe(3) == {"item_id": "a", "title": "Alien",
                                     "attributes": {"genres": "Horror|Sci-Fi", "year": 1979, "rating": 7.5}}
    assert catalogue.describe(1)["attributes"]["year"] is None              # NaN -> null, not NaN in JSON
    assert catalogue.describe(4)["attributes"] == {"genres": None, "year": None, "rating": None}


def test_search_by_title_most_popular_first(catalogue):
    assert catalogue.search("a", 10).tolist() == [1, 3, 2]                 # Casino .4, Alien .3, Babe .2
    assert catalogue.search("  ALIEN ", 10).tolist() == [3]
    assert catalogue.search("", 2).tolist() == [1, 3]


def test_filters(catalogue):
    assert catalogue.mask(None) is None
    assert catalogue.mask({"genres": "comedy"}).tolist() == [False, False, True, False, False]
    assert catalogue.mask({"genres": ["Drama", "Sci-Fi"]}).tolist() == [False, True, False, True, False]
    assert catalogue.mask({"year": 1995}).tolist() == [True, False, True, False, False]
    assert catalogue.mask({"year": {"max": 1990}}).tolist() == [False, False, False, True, False]
    assert catalogue.mask({"rating": {"min": 6, "max": 8}, "year": [1995, 1979]}).tolist() == [
        False, False, True, True, False]


@pytest.mark.parametrize("filters, words", [
    ({"colour": "red"}, "unknown filter attribute 'colour'"),
    ({"year": "1995"}, "expected a number"),
    ({"genres": 3}, "non-empty string"),
    ({"genres": {"min": 1}}, "numeric attribute"),
    ({"year": {"from": 1}}, "'min' and/or 'max'"),
    ({"year": []}, "at least one value"),
    ({"year": [[1995]]}, "strings or numbers"),
])
def test_bad_filters(catalogue, filters, words):
    with pytest.raises(FilterError, match=words):
        catalogue.mask(filters)


def test_items_file_csv(tmp_path):
    path = tmp_path / "items.csv"
    path.write_text("movie,name,year\nm1,First,2001\nm2,Second,\n")
    table = read_item_table(path)
    assert table.columns.tolist() == ["item_id", "name", "year"] and str(table["year"].dtype) == "Int64"
    cat = Catalogue.from_artifact(tmp_path / "no-artifact-files", IdMap(["m2", "m1"]), np.ones(2), items_file=path)
    assert cat.titles == ["Second", "First"] and cat.attribute_names == ["year"]
