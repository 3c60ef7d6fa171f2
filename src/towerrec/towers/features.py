"""Feature encoders (ids, categorical, multi-valued bags, numeric) and the per-row feature tensors
of a `FeatureTable` that a tower gathers from.

Conventions shared with `towerrec.data.features`: code 0 means "missing or unknown" and embeds to
a zero vector. Feature rows are shifted by one: row 0 is a blank row (every feature missing), row
r + 1 describes index r, so a user or item with no features (a new user scored from a history,
feature dropout) simply uses row 0.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import torch
from torch import nn

from towerrec.data.features import FeatureColumn, FeatureTable
from towerrec.data.idmap import IdMap
from towerrec.errors import TowerrecError

_HASH_PRIME = 2654435761  # Knuth's multiplicative hash; codes stay far below 2**31, no overflow
# A feature table (categories, tags, numeric buckets) with fewer rows than this keeps dense
# gradients when the id tables go sparse (`towerrec.models.optim.set_sparse` reads the flag): each
# of a batch's users or items looks it up, so a sparse gradient holds tens of thousands of
# entries for a few hundred rows, and coalescing them cost more than the whole dense table (on the
# 20M log, hybrid: 5 coalesces, 22 ms of a 216 ms step; benchmarks/README.md).
DENSE_FEATURE_ROWS = 65_536


def _small_dense(table: nn.Embedding | nn.EmbeddingBag) -> nn.Embedding | nn.EmbeddingBag:
    table.dense_gradients = table.num_embeddings < DENSE_FEATURE_ROWS
    return table


class IdEmbedding(nn.Module):
    """Embedding of id codes: 0 = unknown or dropped (zero vector), c >= 1 = known id c - 1.

    With `hash_buckets > 0` the table has `hash_buckets + 1` rows and code c >= 1 uses row
    1 + (c * prime) mod hash_buckets (the hashing trick: memory bounded, collisions shared).

    forward: codes [b] int64 -> [b, dim]
    """

    def __init__(self, n_ids: int, dim: int, hash_buckets: int = 0) -> None:
        super().__init__()
        self.hash_buckets = int(hash_buckets)
        size = (self.hash_buckets if self.hash_buckets > 0 else n_ids) + 1
        self.embedding = nn.Embedding(size, dim, padding_idx=0)
        nn.init.normal_(self.embedding.weight, std=0.05)
        with torch.no_grad():
            self.embedding.weight[0].zero_()
        self.dim = dim

    def forward(self, codes: torch.Tensor) -> torch.Tensor:
        if self.hash_buckets > 0:
            codes = torch.where(codes > 0, 1 + (codes * _HASH_PRIME) % self.hash_buckets, codes)
        if (getattr(self.embedding, "sparse", False) and torch.is_grad_enabled()   # (a TorchRec table has none)
                and codes.dim() == 1 and len(codes) > 1
                and not bool((codes[1:] > codes[:-1]).all())):
            # each row looked up once, in order: the sparse gradient then has one sorted entry per
            # row, which the row-wise optimisers take as it is instead of coalescing it (a sort and
            # a scatter over the rows of a big table). Codes already in order (a batch's distinct
            # items) go straight to the table.
            distinct, inverse = torch.unique(codes, return_inverse=True)
            return self.embedding(distinct)[inverse]
        return self.embedding(codes)


class CategoricalEncoder(nn.Module):
    """One embedding per category code (0 = missing -> zeros). codes [b] -> [b, dim]."""

    def __init__(self, cardinality: int, dim: int) -> None:
        super().__init__()
        self.embedding = _small_dense(nn.Embedding(max(cardinality, 1), dim, padding_idx=0))
        self.dim = dim

    def forward(self, codes: torch.Tensor) -> torch.Tensor:
        return self.embedding(codes)


class BagEncoder(nn.Module):
    """A multi-valued column (genres, tags) as a pooled bag of code embeddings.

    forward: flat codes [nnz] int64 and offsets [b] (start of each bag in `flat`) -> [b, dim];
    an empty bag gives zeros. `mode` is "mean" or "sum" (`nn.EmbeddingBag`).
    """

    def __init__(self, cardinality: int, dim: int, mode: str = "mean") -> None:
        super().__init__()
        if mode not in ("mean", "sum"):
            raise ValueError(f"bag mode must be 'mean' or 'sum', got {mode!r}")
        self.bag = _small_dense(nn.EmbeddingBag(max(cardinality, 1), dim, mode=mode, padding_idx=0))
        self.dim = dim

    def forward(self, flat: torch.Tensor, offsets: torch.Tensor) -> torch.Tensor:
        return self.bag(flat, offsets)


class NumericEncoder(nn.Module):
    """Standardised numeric columns -> [b, dim]: a linear map, plus (with `buckets > 0`) one
    embedding per (column, bucket), buckets cut at standard-normal quantiles.

    forward: values [b, n_columns] float -> [b, dim]
    """

    def __init__(self, n_columns: int, dim: int, buckets: int = 0) -> None:
        super().__init__()
        self.linear = nn.Linear(n_columns, dim)
        self.buckets = int(buckets)
        if self.buckets > 1:
            q = torch.arange(1, self.buckets, dtype=torch.float32) / self.buckets
            self.register_buffer("boundaries", torch.erfinv(2 * q - 1) * 2 ** 0.5, persistent=False)
            self.bucket_embedding = _small_dense(nn.Embedding(n_columns * self.buckets, dim))
            nn.init.normal_(self.bucket_embedding.weight, std=0.05)
        self.dim = dim

    def forward(self, values: torch.Tensor) -> torch.Tensor:
        out = self.linear(values)
        if self.buckets > 1:
            b = torch.bucketize(values.contiguous(), self.boundaries)            # [b, n]
            b = b + torch.arange(values.shape[1], device=values.device) * self.buckets
            out = out + self.bucket_embedding(b).sum(1)
        return out


# ---- the per-row tensors of a feature table --------------------------------------------------
@dataclass
class TableSpec:
    """Column metadata needed to rebuild encoders and to re-encode new rows (JSON-safe)."""

    columns: list[dict] = field(default_factory=list)   # FeatureColumn.meta() of used columns
    id_col: str = "id"

    def of_kind(self, kind: str) -> list[dict]:
        return [c for c in self.columns if c["kind"] == kind]

    def to_json(self) -> dict:
        return {"columns": self.columns, "id_col": self.id_col}

    @classmethod
    def from_json(cls, data: dict) -> "TableSpec":
        return cls(columns=list(data.get("columns", [])), id_col=data.get("id_col", "id"))

    @classmethod
    def from_table(cls, table: FeatureTable | None, id_col: str = "id") -> "TableSpec":
        if table is None:
            return cls(id_col=id_col)
        cols = [c.meta() for c in table.columns.values() if c.kind in ("categorical", "multi", "numeric")]
        return cls(columns=cols, id_col=id_col)


def table_arrays(table: FeatureTable | None, spec: TableSpec, n: int) -> dict[str, np.ndarray]:
    """Row arrays for `n` ids with the blank row 0 prepended: `cat` [n+1, n_cat] int64, `num`
    [n+1, n_num] float32, and per multi column j `bag{j}_codes` [nnz] / `bag{j}_offsets` [n+2]."""
    cats, nums, bags = spec.of_kind("categorical"), spec.of_kind("numeric"), spec.of_kind("multi")
    out: dict[str, np.ndarray] = {}
    cols = table.columns if table is not None else {}
    out["cat"] = np.zeros((n + 1, len(cats)), dtype=np.int64)
    for j, c in enumerate(cats):
        if c["name"] in cols:
            out["cat"][1:, j] = cols[c["name"]].codes
    out["num"] = np.zeros((n + 1, len(nums)), dtype=np.float32)
    for j, c in enumerate(nums):
        if c["name"] in cols:
            out["num"][1:, j] = cols[c["name"]].values
    for j, c in enumerate(bags):
        if c["name"] in cols:
            col = cols[c["name"]]
            out[f"bag{j}_codes"] = col.codes.astype(np.int64)
            out[f"bag{j}_offsets"] = np.concatenate([[0], col.offsets]).astype(np.int64)
        else:
            out[f"bag{j}_codes"] = np.zeros(0, dtype=np.int64)
            out[f"bag{j}_offsets"] = np.zeros(n + 2, dtype=np.int64)
    return out


def concat_arrays(old: dict[str, np.ndarray], new: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Append the rows of `new` (its blank row 0 dropped) after the rows of `old`."""
    out = {}
    for key, a in old.items():
        b = new[key]
        if key.endswith("_offsets"):
            out[key] = np.concatenate([a, a[-1] + b[2:]])
        elif key.endswith("_codes"):
            out[key] = np.concatenate([a, b])
        else:
            out[key] = np.concatenate([a, b[1:]])
    return out


def encode_frame(frame: pd.DataFrame, spec: TableSpec, id_map: IdMap) -> FeatureTable:
    """Encode new rows (new items or users) with the vocabularies and statistics seen at fit time.

    Unknown categories become code 0; numeric columns use the saved mean/std (not the new rows'
    own statistics); columns absent from `frame` are missing everywhere.
    """
    id_col = spec.id_col
    frame = frame.copy()
    if id_col not in frame.columns:
        raise KeyError(f"the feature frame needs an id column {id_col!r}; found {list(frame.columns)}")
    for c in spec.columns:
        if c["name"] not in frame.columns:
            frame[c["name"]] = None
    known = {c["name"]: c for c in spec.columns}
    frame = frame[[id_col, *known]]
    kinds = {name: c["kind"] for name, c in known.items()}
    vocabs = {name: c["vocab"] for name, c in known.items() if c["kind"] in ("categorical", "multi")}
    table = FeatureTable.from_frame(frame.astype({n: object for n in known}), id_map, id_col=id_col,
                                    kinds=kinds, vocabs=vocabs, source="new rows")
    row_of = pd.Index(frame[id_col].astype(str)).get_indexer(pd.Index(id_map.ids.astype(str)))
    for name, c in known.items():
        if c["kind"] != "numeric":
            continue
        raw = pd.to_numeric(frame[name], errors="coerce").to_numpy(dtype=np.float64)
        vals = np.where(row_of >= 0, raw[np.maximum(row_of, 0)] if len(raw) else np.nan, np.nan)
        std = c["std"] or 1.0
        table.columns[name] = FeatureColumn(name, "numeric", mean=c["mean"], std=std, values=np.where(
            np.isfinite(vals), (vals - c["mean"]) / std, 0.0).astype(np.float32))
    return table


def gather_bag(codes: torch.Tensor, offsets: torch.Tensor, rows: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Rows of a CSR bag column, vectorised: (flat codes [nnz_b], offsets [b])."""
    starts = offsets[rows]
    lens = offsets[rows + 1] - starts
    out_offsets = torch.cumsum(lens, 0) - lens
    total = int(lens.sum())
    if total == 0:
        return codes.new_zeros(0), out_offsets
    pos = (torch.arange(total, device=codes.device)
           + torch.repeat_interleave(starts - out_offsets, lens, output_size=total))
    return codes[pos], out_offsets


class FeatureRows(nn.Module):
    """Holds a table's row arrays as buffers (saved with the weights) and gathers rows.

    take(rows [b]) -> {"cat": [b, n_cat], "num": [b, n_num], "bags": [(flat, offsets), ...],
    "text": [b, d_text] (if any), "tokens": [b, L] (if any)}
    """

    def __init__(self, arrays: dict[str, np.ndarray]) -> None:
        super().__init__()
        self.keys_ = sorted(arrays)
        for key, a in arrays.items():
            self.register_buffer(key, torch.as_tensor(np.ascontiguousarray(a)))
        self.n_bags = sum(1 for k in arrays if k.endswith("_codes"))

    def arrays(self) -> dict[str, np.ndarray]:
        return {k: getattr(self, k).cpu().numpy() for k in self.keys_}

    @property
    def n_rows(self) -> int:
        return int(self.cat.shape[0])

    def extend(self, new: dict[str, np.ndarray]) -> None:
        """Append the rows of `new` (from `table_arrays`, blank row dropped)."""
        device = self.cat.device
        for key, a in concat_arrays(self.arrays(), new).items():
            setattr(self, key, torch.as_tensor(a).to(device))

    def take(self, rows: torch.Tensor) -> dict:
        out: dict = {"cat": self.cat[rows], "num": self.num[rows],
                     "bags": [gather_bag(getattr(self, f"bag{j}_codes"), getattr(self, f"bag{j}_offsets"), rows)
                              for j in range(self.n_bags)]}
        if hasattr(self, "text"):
            out["text"] = self.text[rows]
        if hasattr(self, "tokens"):
            out["tokens"] = self.tokens[rows]
        return out


class TableEncoder(nn.Module):
    """All feature columns of one side -> one vector: concat of categorical embeddings, bag
    embeddings, the numeric encoding and the text encoding.

    forward: the dict of `FeatureRows.take` -> [b, out_dim]
    """

    def __init__(self, spec: TableSpec, dim: int, *, bag_mode: str = "mean", numeric_buckets: int = 0,
                 text: nn.Module | None = None) -> None:
        super().__init__()
        self.cats = nn.ModuleList(CategoricalEncoder(len(c["vocab"]) + 1, dim) for c in spec.of_kind("categorical"))
        self.bags = nn.ModuleList(BagEncoder(len(c["vocab"]) + 1, dim, bag_mode) for c in spec.of_kind("multi"))
        n_num = len(spec.of_kind("numeric"))
        self.numeric = NumericEncoder(n_num, dim, numeric_buckets) if n_num else None
        self.text = text
        self.out_dim = dim * (len(self.cats) + len(self.bags) + (1 if n_num else 0)) + (
            text.dim if text is not None else 0)

    def forward(self, feats: dict) -> torch.Tensor:
        parts = [enc(feats["cat"][:, j]) for j, enc in enumerate(self.cats)]
        parts += [enc(flat, off) for enc, (flat, off) in zip(self.bags, feats["bags"])]
        if self.numeric is not None:
            parts.append(self.numeric(feats["num"]))
        if self.text is not None:
            parts.append(self.text(feats["tokens"] if "tokens" in feats and getattr(self.text, "uses_tokens", False)
                                   else feats["text"]))
        return torch.cat(parts, dim=1)


def encode_new_rows(frame: pd.DataFrame, spec: TableSpec, side: str) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """(ids, feature row arrays) of new users or items given by a frame, checked against the fit-time
    columns: an unknown column or a non-numeric value in a numeric one is an error naming it."""
    id_col = spec.id_col
    if id_col not in frame.columns:   # ids as the index (a one-row request frame)
        frame = frame.assign(**{id_col: frame.index.astype(str)}).reset_index(drop=True)
    known = {c["name"] for c in spec.columns}
    unknown = sorted(set(frame.columns) - known - {id_col})
    if unknown:
        raise TowerrecError(f"unknown {side} feature(s) {unknown}; this model uses {sorted(known)}")
    for c in spec.columns:
        if c["kind"] == "numeric" and c["name"] in frame.columns:
            raw = frame[c["name"]]
            bad = raw.notna() & pd.to_numeric(raw, errors="coerce").isna()
            if bad.any():
                raise TowerrecError(f"{side} feature {c['name']!r} is numeric; got {raw[bad].tolist()[:3]}")
    ids = frame[id_col].astype(str).to_numpy(dtype=object)
    try:
        table = encode_frame(frame, spec, IdMap(ids, name=side))
    except (ValueError, TypeError, KeyError) as exc:
        raise TowerrecError(f"{side} features: {exc}") from None
    return ids, table_arrays(table, spec, len(ids))
