"""Item and user feature tables as typed columns aligned to an id map, ready for the towers.

Kinds: `categorical` (one code per row), `multi` (`|`-separated codes, CSR), `numeric`
(standardised float, missing -> 0 after standardising), `text` (raw strings for a text encoder).
Code 0 always means "missing or unknown", so rows for ids with no feature row get defaults.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from towerrec.data.idmap import IdMap
from towerrec.data.tables import read_header, read_table, string_form
from towerrec.data.validate import Where, unique_ids
from towerrec.errors import DataError

KINDS = ("categorical", "multi", "numeric", "text", "ignore")
TEXT_NAMES = {"title", "name", "description", "text", "summary", "overview", "plot", "review"}
TITLE_COLUMNS = ("title", "name", "item_name", "product_name")  # display titles, in order of preference


def text_columns(names: list[str]) -> list[str]:
    """Columns read from files as text, never type-inferred: a title `NA` or `1984` stays a string."""
    return [n for n in names if n.lower() in TEXT_NAMES or n.lower() in TITLE_COLUMNS]


@dataclass
class FeatureColumn:
    """One typed column. Arrays are aligned to the id map: row r describes index r."""

    name: str
    kind: str
    codes: np.ndarray | None = None      # categorical [n] int64; multi [nnz] int64
    offsets: np.ndarray | None = None    # multi [n + 1] int64 (CSR row pointers)
    values: np.ndarray | None = None     # numeric [n] float32, standardised
    texts: np.ndarray | None = None      # text [n] object (str)
    vocab: list[str] = field(default_factory=list)  # categorical/multi: code c -> vocab[c - 1]
    mean: float = 0.0
    std: float = 1.0

    @property
    def cardinality(self) -> int:
        """Number of codes including 0 (missing)."""
        return len(self.vocab) + 1

    def meta(self) -> dict:
        return {"name": self.name, "kind": self.kind, "vocab": self.vocab, "mean": self.mean, "std": self.std}


def infer_kind(name: str, series: pd.Series) -> str:
    """A guess that the user can override with `kinds={column: kind}`."""
    s = series.dropna().astype(str)
    s = s[s.str.strip() != ""]
    if s.empty:
        return "ignore"
    if s.str.startswith(("http://", "https://")).mean() > 0.5:
        return "ignore"
    lname = name.lower()
    if lname in TEXT_NAMES:
        return "text"
    if s.str.contains("|", regex=False).any():
        return "multi"
    numeric = pd.to_numeric(s, errors="coerce")
    if numeric.notna().all() and not lname.endswith(("_id", "id", "zip", "zip_code", "code")):
        return "numeric"
    n_unique = s.nunique()
    if s.str.split().str.len().mean() >= 3 and n_unique > 0.5 * len(s):
        return "text"
    if n_unique > 0.9 * len(s) and len(s) > 20:
        return "ignore"  # an identifier per row carries no shared signal
    return "categorical"


def _codes(values: pd.Series) -> tuple[np.ndarray, list[str]]:
    codes, uniq = pd.factorize(values, sort=True)
    return (codes + 1).astype(np.int64), [str(u) for u in uniq]  # NaN -> -1 -> 0


def _encode(name: str, kind: str, col: pd.Series, vocab: list[str] | None) -> FeatureColumn:
    if kind == "categorical":
        s = col.astype("string").str.strip().replace("", pd.NA)
        if vocab is None:
            codes, vocab = _codes(s)
        else:
            codes = (pd.Index(vocab).get_indexer(s.fillna("\x00")) + 1).astype(np.int64)
        return FeatureColumn(name, kind, codes=codes, vocab=vocab)
    if kind == "multi":
        lists = col.fillna("").astype(str).str.split("|")
        lengths = lists.str.len().to_numpy()
        flat = pd.Series(np.concatenate(lists.to_numpy()) if len(lists) else np.array([], dtype=object)).str.strip()
        flat_keep = flat != ""
        if vocab is None:
            vocab = sorted(set(flat[flat_keep]))
        codes = pd.Index(vocab).get_indexer(flat) + 1
        keep = flat_keep.to_numpy() & (codes > 0)
        row_of = np.repeat(np.arange(len(lists)), lengths)[keep]
        offsets = np.zeros(len(lists) + 1, dtype=np.int64)
        np.cumsum(np.bincount(row_of, minlength=len(lists)), out=offsets[1:])
        return FeatureColumn(name, kind, codes=codes[keep].astype(np.int64), offsets=offsets, vocab=vocab)
    if kind == "numeric":
        values = pd.to_numeric(col, errors="coerce").to_numpy(dtype=np.float64)
        finite = values[np.isfinite(values)]
        mean = float(finite.mean()) if finite.size else 0.0
        std = float(finite.std()) if finite.size > 1 and finite.std() > 0 else 1.0
        out = np.where(np.isfinite(values), (values - mean) / std, 0.0).astype(np.float32)
        return FeatureColumn(name, kind, values=out, mean=mean, std=std)
    if kind == "text":
        return FeatureColumn(name, kind, texts=col.fillna("").astype(str).to_numpy(dtype=object))
    raise ValueError(kind)


def _numbers_or_blank(values: pd.Series, name: str, where: Where) -> None:
    """Blank cells are missing (as in `infer_kind`); any other text in a numeric column is an error."""
    present = values.astype("string").str.strip().fillna("").ne("")
    bad = (present & pd.to_numeric(values, errors="coerce").isna()).to_numpy(dtype=bool)
    if bad.any():
        pos = np.flatnonzero(bad)
        raise where.error("non-numeric values", column=name, positions=pos, values=values.iloc[pos[:5]].tolist(),
                          expected="numbers (or type it categorical)")


@dataclass
class FeatureTable:
    """Typed feature columns for every index of `id_map` (missing rows get defaults)."""

    id_map: IdMap
    columns: dict[str, FeatureColumn]
    n_without_row: int = 0   # ids of the map that had no row in the table
    n_unused_rows: int = 0   # table rows whose id is not in the map (kept out; reported)
    source: str = ""

    def __len__(self) -> int:
        return len(self.id_map)

    def of_kind(self, kind: str) -> list[FeatureColumn]:
        return [c for c in self.columns.values() if c.kind == kind]

    def summary(self) -> str:
        kinds = ", ".join(f"{c.name}:{c.kind}" for c in self.columns.values())
        return (f"{self.source}: {len(self.columns)} feature column(s) [{kinds}]; "
                f"{self.n_without_row} id(s) without a feature row got defaults")

    def text(self, columns: list[str] | None = None) -> np.ndarray:
        """One string per row joining the text, categorical and multi columns, for text encoders."""
        parts = []
        for c in self.columns.values():
            if columns is not None and c.name not in columns:
                continue
            if c.kind == "text":
                parts.append(pd.Series(c.texts, dtype=object))
            elif c.kind in ("categorical", "multi") and columns is not None:
                parts.append(pd.Series(self.labels(c.name), dtype=object))
        if not parts:
            return np.full(len(self), "", dtype=object)
        joined = parts[0].astype(str)
        for p in parts[1:]:
            joined = joined.str.cat(p.astype(str), sep=". ")
        return joined.str.strip(". ").to_numpy(dtype=object)

    def aligned(self, id_map: IdMap) -> "FeatureTable":
        """The rows of `id_map`'s ids (each must be in this table's map), same vocabularies and
        statistics: a model fitted on part of a log gets the features of just its ids."""
        pos = self.id_map.index(id_map.ids)
        columns = {}
        for name, c in self.columns.items():
            new = FeatureColumn(c.name, c.kind, vocab=c.vocab, mean=c.mean, std=c.std)
            if c.kind == "categorical":
                new.codes = c.codes[pos]
            elif c.kind == "numeric":
                new.values = c.values[pos]
            elif c.kind == "text":
                new.texts = c.texts[pos]
            else:                                   # multi: gather the CSR rows
                lens = c.offsets[pos + 1] - c.offsets[pos]
                new.offsets = np.concatenate([[0], np.cumsum(lens)]).astype(np.int64)
                new.codes = c.codes[np.repeat(c.offsets[pos] - new.offsets[:-1], lens) + np.arange(new.offsets[-1])]
            columns[name] = new
        return FeatureTable(id_map=id_map, columns=columns, source=self.source)

    def labels(self, name: str) -> list[str]:
        """Human-readable value of a categorical or multi column per row."""
        c = self.columns[name]
        vocab = np.asarray([""] + c.vocab, dtype=object)
        if c.kind == "categorical":
            return list(vocab[c.codes])
        return ["|".join(vocab[c.codes[c.offsets[r]:c.offsets[r + 1]]]) for r in range(len(self))]

    @classmethod
    def from_frame(cls, frame: pd.DataFrame, id_map: IdMap, *, id_col: str, source: str = "DataFrame",
                   kinds: dict[str, str] | None = None, is_file: bool = False,
                   vocabs: dict[str, list[str]] | None = None) -> "FeatureTable":
        """Align `frame` (one row per id) to `id_map` and encode each column by its kind."""
        where = Where(source, is_file=is_file)
        if id_col not in frame.columns:
            raise where.error(f"missing id column {id_col!r}; found {list(frame.columns)}")
        ids, _ = string_form(frame[id_col])
        blank = ids.isna() | (ids.str.strip() == "")
        if blank.any():
            raise where.error("blank or missing ids", column=id_col, positions=np.flatnonzero(blank.to_numpy()),
                              expected="a non-empty id on every row")
        frame = frame.assign(**{id_col: ids.astype(object)})
        unique_ids(frame, id_col, where)
        kinds = dict(kinds or {})
        for name, kind in kinds.items():
            if name not in frame.columns:
                raise where.error(f"no column {name!r} to type as {kind}")
            if kind not in KINDS:
                raise where.error(f"unknown feature kind {kind!r}", column=name, expected=f"one of {KINDS}")
        row_of = pd.Index(frame[id_col]).get_indexer(pd.Index(id_map.ids))  # map index -> frame row
        aligned = frame.iloc[np.where(row_of >= 0, row_of, 0)].reset_index(drop=True) if len(frame) else frame
        missing = row_of < 0
        columns: dict[str, FeatureColumn] = {}
        for name in frame.columns:
            if name == id_col:
                continue
            kind = kinds.get(name) or infer_kind(name, frame[name])
            if kind == "ignore":
                continue
            # object first: ids without a feature row get None, which a bool or int column cannot hold
            col = aligned[name].astype(object) if len(frame) else pd.Series([None] * len(id_map), dtype=object)
            col[missing] = None
            if kind == "numeric":
                _numbers_or_blank(frame[name], name, where)
            columns[name] = _encode(name, kind, col, (vocabs or {}).get(name))
        n_unused = int(len(frame) - np.count_nonzero(np.isin(np.arange(len(frame)), row_of[row_of >= 0])))
        return cls(id_map=id_map, columns=columns, n_without_row=int(missing.sum()),
                   n_unused_rows=n_unused, source=source)

    @classmethod
    def from_file(cls, path: str | Path, id_map: IdMap, *, id_col: str,
                  kinds: dict[str, str] | None = None) -> "FeatureTable":
        table = read_table(path, string_columns=(id_col, *text_columns(read_header(path))))
        frame = table.to_pandas()
        if frame.empty:
            raise DataError("the table has a header but no rows", source=str(path))
        return cls.from_frame(frame, id_map, id_col=id_col, source=str(path), kinds=kinds, is_file=True)
