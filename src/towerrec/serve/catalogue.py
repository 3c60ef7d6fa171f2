"""The item catalogue as the API shows it: titles, attributes, title search and attribute filters.

An artifact may carry titles (a title per item index) and an item table (one row per item with an
`item_id` column and any attribute columns: genres, year, ...); `towerrec.artifact` reads and writes
both. `towerrec serve --items FILE` reads the same table from a CSV/Parquet file instead.

Filters are `{"attribute": value}` pairs, all of which must hold. A value is a string or number
(equality; a `|`-separated attribute such as `genres` matches any of its parts, ignoring case), a
list of those (any of them), or `{"min": a, "max": b}` for a numeric attribute.
"""
from __future__ import annotations

from functools import lru_cache
from pathlib import Path

import numpy as np
import pandas as pd

from towerrec.artifact import read_item_table as read_artifact_item_table
from towerrec.artifact import read_titles
from towerrec.data.idmap import IdMap
from towerrec.errors import TowerrecError

TITLE_COLUMNS = ("title", "name")


class FilterError(TowerrecError):
    """A filter names an unknown attribute or has a value of the wrong kind."""


def read_item_table(path: str | Path) -> pd.DataFrame:
    """An items table from a CSV/TSV/Parquet file; the id column is `item_id` (else the first column)."""
    path = Path(path)
    if not path.is_file():
        raise TowerrecError(f"{path}: items file not found")
    try:
        if path.suffix == ".parquet":
            frame = pd.read_parquet(path)
        else:
            frame = pd.read_csv(path, sep="\t" if path.suffix in (".tsv", ".tab") else ",", dtype=str,
                                keep_default_na=False, na_values=[""])
    except Exception as exc:   # pandas/pyarrow raise many types for an unreadable file
        raise TowerrecError(f"{path}: cannot read the items table ({type(exc).__name__}: "
                            f"{str(exc).strip().splitlines()[0] if str(exc).strip() else ''})") from None
    if not len(frame.columns):
        raise TowerrecError(f"{path}: the items table has no columns")
    col = "item_id" if "item_id" in frame.columns else frame.columns[0]
    return typed_item_table(frame.rename(columns={col: "item_id"}))


def typed_item_table(frame: pd.DataFrame) -> pd.DataFrame:
    """`item_id` as text; numbers stored as text become numbers (so numeric filters and ranges work),
    whole-number floats become nullable integers (years stored as floats show as 1997)."""
    frame = frame.copy()
    frame["item_id"] = frame["item_id"].astype(str)
    for c in frame.columns:
        if c == "item_id":
            continue
        col = frame[c]
        if not pd.api.types.is_numeric_dtype(col):
            converted = pd.to_numeric(col, errors="coerce")
            if not (converted.notna().sum() == col.notna().sum() and col.notna().any()):
                continue
            col = converted
        whole = col.dropna()
        if pd.api.types.is_float_dtype(col) and whole.eq(whole.round()).all() and whole.abs().lt(2**53).all():
            col = col.astype("Int64")      # (beyond 2**53 a float is no exact integer: it stays a float)
        frame[c] = col
    return frame


class Catalogue:
    """Titles and attributes aligned to the model's item indices; filters give boolean masks [n_items]."""

    def __init__(self, item_map: IdMap, popularity: np.ndarray, titles: list[str] | None = None,
                 attributes: pd.DataFrame | None = None) -> None:
        self.item_map = item_map
        self.popularity = np.asarray(popularity, dtype=np.float64)
        self.titles = list(titles) if titles is not None else None
        if self.titles is not None and len(self.titles) != len(item_map):
            raise TowerrecError(f"{len(self.titles)} titles for {len(item_map)} items")
        self.attributes: dict[str, pd.Series] = {}
        if attributes is not None:
            frame = attributes.drop_duplicates("item_id").set_index("item_id").reindex(
                pd.Index(item_map.to_list()))
            for col in frame.columns:
                if col.lower() not in TITLE_COLUMNS:     # shown as the title already
                    self.attributes[col] = frame[col].reset_index(drop=True)
        self._values = {c: s.astype(object).where(s.notna(), None).tolist() for c, s in self.attributes.items()}
        search_text = self.titles if self.titles is not None else item_map.to_list()
        self._search = pd.Series(search_text, dtype=object).str.lower()
        self._mask_cached = lru_cache(maxsize=512)(self._mask_one)

    @classmethod
    def from_artifact(cls, path: str | Path, item_map: IdMap, popularity: np.ndarray,
                      items_file: str | Path | None = None) -> "Catalogue":
        """Titles and attributes of the artifact at `path`; `items_file` replaces its item table."""
        titles = read_titles(path, len(item_map))
        if items_file is not None:
            table = read_item_table(items_file)
        else:
            stored = read_artifact_item_table(path)
            table = typed_item_table(stored) if stored is not None else None
        if titles is None and table is not None:
            title_col = next((c for c in table.columns if c.lower() in TITLE_COLUMNS), None)
            if title_col is not None:
                lookup = table.drop_duplicates("item_id").set_index("item_id")[title_col]
                found = lookup.reindex(pd.Index(item_map.to_list()))
                titles = [str(t) if isinstance(t, str) and t else i for t, i in zip(found, item_map.to_list())]
        return cls(item_map, popularity, titles, table)

    def __len__(self) -> int:
        return len(self.item_map)

    def extended(self, item_map: IdMap, popularity: np.ndarray, frame: pd.DataFrame) -> "Catalogue":
        """A new catalogue over `item_map` (this one's items first): the new items' titles and
        attributes come from `frame` (an `item_id` column; missing values stay missing)."""
        n_old = len(self)
        new_ids = item_map.to_list()[n_old:]
        rows = typed_item_table(frame).drop_duplicates("item_id").set_index("item_id").reindex(pd.Index(new_ids))
        titles = None
        if self.titles is not None:
            col = next((c for c in rows.columns if c.lower() in TITLE_COLUMNS), None)
            found = rows[col] if col is not None else pd.Series([None] * len(new_ids), index=rows.index)
            titles = self.titles + [str(t) if isinstance(t, str) and t else i for t, i in zip(found, new_ids)]
        table = None
        if self.attributes:
            old = pd.DataFrame({c: v.to_numpy() for c, v in self.attributes.items()})
            old.insert(0, "item_id", self.item_map.to_list())
            new = rows.reindex(columns=list(self.attributes)).reset_index().rename(columns={"index": "item_id"})
            new["item_id"] = new_ids
            table = pd.concat([old, new], ignore_index=True)
        return Catalogue(item_map, popularity, titles, table)

    @property
    def attribute_names(self) -> list[str]:
        return list(self.attributes)

    # ---- display -----------------------------------------------------------------------------
    def describe(self, item_idx: int) -> dict:
        """`{"item_id", "title"?, "attributes"?}` for one item index."""
        out: dict = {"item_id": str(self.item_map.ids[item_idx])}
        if self.titles is not None:
            out["title"] = self.titles[item_idx]
        if self._values:
            out["attributes"] = {c: _plain(v[item_idx]) for c, v in self._values.items()}
        return out

    def search(self, query: str, limit: int) -> np.ndarray:
        """Item indices whose title (or id) contains `query`, case-insensitive, most popular first."""
        q = query.strip().lower()
        if q:
            hits = np.flatnonzero(self._search.str.contains(q, regex=False, na=False).to_numpy())
        else:
            hits = np.arange(len(self))
        order = np.argsort(-self.popularity[hits], kind="stable")[:limit]
        return hits[order]

    # ---- filters -----------------------------------------------------------------------------
    def mask(self, filters: dict | None) -> np.ndarray | None:
        """bool [n_items] of items passing every filter; None when there are no filters."""
        if not filters:
            return None
        out = np.ones(len(self), dtype=bool)
        for name, value in filters.items():
            if name not in self.attributes:
                known = ", ".join(self.attributes) or "none (this artifact has no item attributes)"
                raise FilterError(f"unknown filter attribute {name!r}; known attributes: {known}")
            out &= self._mask_cached(name, _freeze(value))
        return out

    def _mask_one(self, name: str, value: object) -> np.ndarray:
        series = self.attributes[name]
        numeric = pd.api.types.is_numeric_dtype(series)
        if isinstance(value, tuple) and value and value[0] == "range":
            if not numeric:
                raise FilterError(f"filter {name!r}: min/max needs a numeric attribute")
            _, lo, hi = value
            values = series.to_numpy(dtype=np.float64, na_value=np.nan)
            keep = ~np.isnan(values)
            if lo is not None:
                keep &= values >= lo
            if hi is not None:
                keep &= values <= hi
            return keep
        if isinstance(value, tuple):   # any of a list
            out = np.zeros(len(self), dtype=bool)
            for v in value:
                out |= self._mask_cached(name, v)
            return out
        if numeric:
            if not isinstance(value, (int, float)) or isinstance(value, bool):
                raise FilterError(f"filter {name!r}: expected a number, a list of numbers or {{'min','max'}}, "
                                  f"got {value!r}")
            return series.to_numpy(dtype=np.float64, na_value=np.nan) == float(value)
        if not isinstance(value, str) or not value:
            raise FilterError(f"filter {name!r}: expected a non-empty string or a list of them, got {value!r}")
        return self._tokens(name).eq(str(value).strip().lower()).groupby(level=0).any().reindex(
            range(len(self)), fill_value=False).to_numpy(dtype=bool)

    def _tokens(self, name: str) -> pd.Series:
        """The attribute split on '|', lower-cased; index = item index (repeated for multi-valued)."""
        cache = self.__dict__.setdefault("_token_cache", {})
        if name not in cache:
            text = self.attributes[name].astype("string").str.lower()
            cache[name] = text.str.split("|").explode().str.strip().dropna()
        return cache[name]


def _freeze(value: object) -> object:
    """A hashable form of a filter value: lists -> tuples, {"min","max"} -> ("range", lo, hi)."""
    if isinstance(value, dict):
        unknown = set(value) - {"min", "max"}
        if unknown or not value:
            raise FilterError(f"a range filter has keys 'min' and/or 'max', got {sorted(value)}")
        return ("range", value.get("min"), value.get("max"))
    if isinstance(value, list):
        if not value:
            raise FilterError("an any-of filter needs at least one value")
        if any(isinstance(v, (list, dict)) for v in value):
            raise FilterError(f"an any-of filter lists strings or numbers, got {value!r}")
        return tuple(value)
    if value is None:
        raise FilterError("a filter value cannot be null")
    return value


def _plain(value: object) -> object:
    """JSON-safe Python scalars (numpy numbers, NaN -> None)."""
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not np.isfinite(value):
        return None
    return value
