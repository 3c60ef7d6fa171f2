"""Dataset: interactions plus aligned item and user features, and the report of how they were loaded.

A dataset folder (`interactions.*`, optional `items.*` and `users.*`, see ../shared/data/README.md)
and DataFrames given in Python go through one function, `build_dataset`, so both get the same
validation, the same cold catalogue items and the same report. Names of public datasets resolve
in `towerrec.data.registry`, whose `load_dataset` is the one front door.

>>> ds = Dataset.from_frame(pd.DataFrame({"user_id": ["a", "b"], "item_id": ["x", "y"]}),
...                         items=pd.DataFrame({"item_id": ["x", "y", "z"], "genre": ["g1", "g2", "g1"]}))
>>> ds
Dataset('DataFrame', 2 interactions, 2 users, 3 items, item features: genre)
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from towerrec.data.columns import ITEM_COLUMNS, USER_COLUMNS, find_column, named_column
from towerrec.data.features import TITLE_COLUMNS, FeatureTable, text_columns
from towerrec.data.idmap import IdMap
from towerrec.data.interactions import Interactions
from towerrec.data.load import LoadOptions, LoadReport, load_interactions
from towerrec.data.tables import (
    TABLE_ORDER,
    file_digest,
    find_table,
    is_dir,
    read_header,
    read_table,
    string_form,
)
from towerrec.data.validate import Where, unique_ids, unique_names
from towerrec.errors import DataError


@dataclass
class Dataset:
    """Interactions plus aligned side information, and a report of how they were loaded.

    `item_features`/`user_features` are aligned to `interactions.item_map`/`user_map`; `items`/`users`
    are the raw tables (id column renamed to `item_id`/`user_id`, ids as strings) for titles and
    display. `data_sha256` identifies the exact interaction data, for reproducibility manifests.
    """

    name: str
    path: Path | None
    interactions: Interactions
    item_features: FeatureTable | None = None
    user_features: FeatureTable | None = None
    items: pd.DataFrame | None = None
    users: pd.DataFrame | None = None
    report: LoadReport = field(default_factory=lambda: LoadReport(source=""))
    data_sha256: str | None = None

    def __repr__(self) -> str:
        inter = self.interactions
        parts = [f"{len(inter):,} interactions", f"{inter.n_users:,} users", f"{inter.n_items:,} items"]
        sides = [f"{role} features: {_names(t)}" for role, t in (("item", self.item_features),
                                                                  ("user", self.user_features)) if t is not None]
        return f"Dataset({self.name!r}, {', '.join(parts)}{', ' if sides else ''}{'; '.join(sides)})"

    @property
    def n_cold_items(self) -> int:
        """Catalogue items (from items.*) that have no interaction."""
        return int(np.count_nonzero(self.interactions.item_counts() == 0))

    def checksum(self) -> str | None:
        return self.data_sha256

    def titles(self, item_idx: np.ndarray | list[int]) -> list[str]:
        """A display title per item index: the items table's title/name column, else the item id."""
        ids = self.interactions.item_map.ids[np.asarray(item_idx, dtype=np.int64)]
        col = _title_column(self.items)
        if col is None:
            return [str(i) for i in ids]
        lookup = pd.Series(self.items[col].to_numpy(), index=self.items["item_id"].astype(str))  # type: ignore[index]
        titles = lookup.reindex(pd.Index(ids.astype(str)))
        return [str(t) if isinstance(t, str) and t else str(i) for t, i in zip(titles.tolist(), ids)]

    @classmethod
    def from_frame(cls, interactions: pd.DataFrame, *, items: pd.DataFrame | None = None,
                   users: pd.DataFrame | None = None, options: LoadOptions = LoadOptions(),
                   item_kinds: dict[str, str] | None = None, user_kinds: dict[str, str] | None = None,
                   name: str = "DataFrame") -> "Dataset":
        """What a dataset folder with these three tables would give, from DataFrames.

        `items` and `users` hold one row per id (id column found like the log's: `item_id`, `itemId`,
        ... or `options.item_col`); items without interactions stay in the catalogue as cold items.
        """
        for role, frame in (("interactions", interactions), ("items", items), ("users", users)):
            if frame is not None and not isinstance(frame, pd.DataFrame):
                raise DataError(f"{role} must be a pandas DataFrame, got {type(frame).__name__}")
        return build_dataset(name, None, interactions, items=items, users=users, options=options,
                             item_kinds=item_kinds, user_kinds=user_kinds, data_sha256=frame_sha256(interactions))

    @classmethod
    def from_path(cls, path: str | Path, options: LoadOptions = LoadOptions(), *,
                  item_kinds: dict[str, str] | None = None, user_kinds: dict[str, str] | None = None
                  ) -> "Dataset":
        """A dataset folder, or a single CSV/TSV/Parquet interaction file (no side tables)."""
        path = Path(path)
        if not is_dir(path):
            return build_dataset(path.name.split(".")[0], path, path, options=options, data_sha256=file_digest(path))
        inter_path = find_table(path, "interactions")
        if inter_path is None:
            raise DataError("the folder has no interactions table", source=str(path),
                            expected=f"interactions{'|'.join(TABLE_ORDER)} (see the dataset folder convention)")
        return build_dataset(path.name, path, inter_path, items=find_table(path, "items"),
                             users=find_table(path, "users"), options=options, item_kinds=item_kinds,
                             user_kinds=user_kinds, data_sha256=file_digest(inter_path))


def build_dataset(name: str, path: Path | None, interactions: Path | pd.DataFrame, *,
                  items: Path | pd.DataFrame | None = None, users: Path | pd.DataFrame | None = None,
                  options: LoadOptions = LoadOptions(), item_kinds: dict[str, str] | None = None,
                  user_kinds: dict[str, str] | None = None, data_sha256: str | None = None) -> Dataset:
    """The one way a Dataset is assembled from tables, whether they are files or DataFrames.

    Side tables are read and checked first so their ids join the catalogue; then the log is loaded
    and cleaned; then features are aligned to the final id maps. Every mismatch goes in the report.
    """
    item_side = _side_table(items, options.item_col, ITEM_COLUMNS, "item") if items is not None else None
    user_side = _side_table(users, options.user_col, USER_COLUMNS, "user") if users is not None else None
    catalogue = None if item_side is None else item_side.frame["item_id"].to_numpy(dtype=object)
    inter, report = load_interactions(interactions, options, item_ids=catalogue)
    item_features = user_features = None
    if item_side is not None:
        item_features = item_side.features(inter.item_map, item_kinds)
        n_cold = int(np.count_nonzero(inter.item_counts() == 0))
        report.notes.append(f"{item_side.label}: {n_cold:,} of {inter.n_items:,} catalogue items have no "
                            f"interactions (kept as cold items)")
        report.notes.extend(item_side.notes(item_features))
    if user_side is not None:
        user_features = user_side.features(inter.user_map, user_kinds)
        report.notes.extend(user_side.notes(user_features))
    return Dataset(name, path, inter, item_features, user_features,
                   None if item_side is None else item_side.frame, None if user_side is None else user_side.frame,
                   report, data_sha256=data_sha256)


# ---- side tables ---------------------------------------------------------------------------------
@dataclass
class _Side:
    """A checked items/users table: ids non-blank, unique, strings, in a column renamed `<role>_id`."""

    frame: pd.DataFrame
    role: str
    label: str        # for report notes: the file name, or "items DataFrame"
    source: str       # for errors: the file's path, or "items DataFrame"
    is_file: bool     # row numbers in messages are file lines
    conversions: list[str]

    def features(self, id_map: IdMap, kinds: dict[str, str] | None) -> FeatureTable:
        return FeatureTable.from_frame(self.frame, id_map, id_col=f"{self.role}_id", source=self.source,
                                       kinds=kinds, is_file=self.is_file)

    def notes(self, table: FeatureTable) -> list[str]:
        used = ", ".join(f"{c.name} ({c.kind})" for c in table.columns.values()) or "none"
        ignored = [c for c in self.frame.columns if c != f"{self.role}_id" and c not in table.columns]
        tail = f"; ignored: {', '.join(map(str, ignored))} (kind 'ignore'; set a kind to use one)" if ignored else ""
        return [*self.conversions,
                f"{self.label}: {self.role} features {used}{tail}",
                f"{self.label}: {table.n_without_row:,} {self.role}s with interactions have no feature row "
                f"(defaults used); {table.n_unused_rows:,} rows are for {self.role}s not in the interactions "
                f"(ignored)"]


def _side_table(source: Path | pd.DataFrame, wanted: str | None, candidates: tuple[str, ...],
                role: str) -> _Side:
    conversions: list[str] = []
    if isinstance(source, pd.DataFrame):
        label = f"{role}s DataFrame"
        where = Where(label, is_file=False)
        unique_names([str(c) for c in source.columns], where)
        id_col = _id_column([str(c) for c in source.columns], wanted, candidates, where)
        frame = source.rename(columns=str).reset_index(drop=True)
        ids, mixed = string_form(frame[id_col])
        if mixed:
            conversions.append(f"{label} column '{id_col}': ids of mixed types (e.g. numbers and strings) were "
                               f"read as their string form")
        frame[id_col] = ids
    else:
        label = source.name
        where = Where(str(source), is_file=True)
        names = read_header(source)
        id_col = _id_column(names, wanted, candidates, where)
        frame = read_table(source, string_columns=[id_col, *text_columns(names)]).to_pandas()
    if frame.empty:
        raise where.error("the table has a header but no rows", expected=f"one row per {role}")
    ids = frame[id_col].astype("string")
    blank = (ids.isna() | (ids.str.strip() == "")).to_numpy(dtype=bool)
    if blank.any():
        raise where.error("blank or missing ids", column=id_col, positions=np.flatnonzero(blank),
                          expected="a non-empty id on every row")
    frame[id_col] = ids.to_numpy(dtype=object)
    unique_ids(frame, id_col, where)
    frame = frame.rename(columns={id_col: f"{role}_id"})
    unique_names(list(frame.columns), where)  # an `item_id` column beside the id column `ItemId`
    return _Side(frame, role, label, where.source, not isinstance(source, pd.DataFrame), conversions)


def _id_column(columns: list[str], wanted: str | None, candidates: tuple[str, ...], where: Where) -> str:
    """The log's id column name if the table has it, else the usual names, case-insensitively."""
    if wanted and any(c.lower() == wanted.lower() for c in columns):
        return named_column(columns, wanted, "id", where)
    found = find_column(columns, candidates, "id", where)
    if found is None:
        raise where.error(f"no id column found among {columns}",
                          expected=f"one of {list(candidates)} (any case), named as in the interactions file")
    return found


# ---- helpers -------------------------------------------------------------------------------------
def _title_column(items: pd.DataFrame | None) -> str | None:
    if items is None:
        return None
    lower = {str(c).lower(): c for c in items.columns}
    return next((lower[c] for c in TITLE_COLUMNS if c in lower), None)


def _names(table: FeatureTable, shown: int = 4) -> str:
    names = list(table.columns)
    return ", ".join(names[:shown]) + (", ..." if len(names) > shown else "") if names else "none"


def frame_sha256(frame: pd.DataFrame) -> str:
    """A digest of a DataFrame's values (not its index), for reproducibility manifests."""
    try:
        hashed = pd.util.hash_pandas_object(frame, index=False)
    except TypeError:  # unhashable cells (lists): hash their text
        hashed = pd.util.hash_pandas_object(frame.astype(str), index=False)
    return hashlib.sha256(hashed.to_numpy().tobytes()).hexdigest()
