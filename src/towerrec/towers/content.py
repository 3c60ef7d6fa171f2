"""Item content, one pipeline for every model: feature columns and text turned into per-item row
arrays once (`item_content`), new items encoded the same way later (`new_item_arrays`), and for
models that embed items by id (the sequence models) a module that adds the content to each id
embedding (`ItemContent`).

Rows are shifted by one (row = item index + 1; row 0 blank, the padding token's row), as
everywhere in `towerrec.towers.features`. Text is either a frozen sentence-transformers embedding
(`"pretrained"`, default model all-MiniLM-L6-v2, any path or name accepted) or word tokens for a
trainable CNN (`"cnn"`).
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import torch
from torch import nn

from towerrec.data.features import FeatureTable
from towerrec.data.idmap import IdMap
from towerrec.errors import TowerrecError
from towerrec.towers.features import (
    FeatureRows,
    TableEncoder,
    TableSpec,
    encode_frame,
    table_arrays,
)
from towerrec.towers.text import (
    PretrainedTextEncoder,
    build_vocab,
    embed_texts,
    tokenize,
)

TEXT_KINDS = ("none", "pretrained", "cnn")


@dataclass
class ContentSpec:
    """How items were encoded, JSON-safe and saved with the model: the feature columns (vocabularies,
    statistics) and the text (`{}` or columns, kind, model, and the CNN vocabulary)."""

    table: TableSpec = field(default_factory=lambda: TableSpec(id_col="item_id"))
    text: dict = field(default_factory=dict)

    def to_json(self) -> dict:
        return {"table": self.table.to_json(), "text": self.text}

    @classmethod
    def from_json(cls, data: dict) -> "ContentSpec":
        return cls(TableSpec.from_json(data.get("table", {})), dict(data.get("text") or {}))


def _add_text(arrays: dict[str, np.ndarray], texts: np.ndarray, text: dict, *, fit: bool) -> None:
    """`arrays["text"]` [n + 1, d] (frozen embeddings) or `arrays["tokens"]` [n + 1, L] (CNN), row 0 blank."""
    if text["kind"] == "pretrained":
        emb = embed_texts(list(texts), text["model"])
        arrays["text"] = np.vstack([np.zeros((1, emb.shape[1]), np.float32), emb])
    else:
        if fit:
            text["vocab"] = build_vocab(texts)
        tok = tokenize(texts, text["vocab"])
        arrays["tokens"] = np.vstack([np.zeros((1, tok.shape[1]), np.int64), tok])


def item_content(table: FeatureTable | None, n_items: int, *, features: bool = True, text: str = "none",
                 text_model: str = "", text_columns: Sequence[str] = (), strict: bool = False,
                 owner: str = "model") -> tuple[ContentSpec, dict[str, np.ndarray] | None]:
    """(spec, row arrays) of the items' feature columns (`features`) and text (`text`).

    `text_columns` () = the table's text columns; naming categorical/multi columns adds their
    labels to the text. With `strict`, asking for content the table cannot give is an error
    (a sequence model told to use text); without, text is simply left out when the table has no
    text column (the two-tower presets use text whenever there is some).
    """
    if text not in TEXT_KINDS:
        raise TowerrecError(f"{owner}: text must be one of {TEXT_KINDS}, got {text!r}")
    if table is None:
        if strict:
            raise TowerrecError(f"{owner}: item_features / text need an item feature table (items.csv with an "
                                "item_id column, passed as item_features)")
        return ContentSpec(), None
    spec = ContentSpec(TableSpec.from_table(table, "item_id") if features else TableSpec(id_col="item_id"))
    arrays = table_arrays(table, spec.table, n_items)
    names = list(text_columns) or [c.name for c in table.of_kind("text")]
    missing = [n for n in names if n not in table.columns]
    if missing:
        raise TowerrecError(f"{owner}: text_columns {missing} are not item feature columns ({list(table.columns)})")
    if text != "none" and not names and strict:
        raise TowerrecError(f"{owner}: text={text!r} but the item table has no text column "
                            f"(columns: {', '.join(table.columns)})")
    if text != "none" and names:
        spec.text = {"columns": [[n, table.columns[n].kind] for n in names], "explicit": bool(text_columns),
                     "kind": text, "model": text_model}
        _add_text(arrays, table.text(names if text_columns else None), spec.text, fit=True)
    if strict and not spec.table.columns and not spec.text:
        raise TowerrecError(f"{owner}: the item table has no usable feature column")
    return spec, arrays


def new_item_arrays(frame: pd.DataFrame, spec: ContentSpec, ids: np.ndarray) -> dict[str, np.ndarray]:
    """Row arrays of new items (`frame`: an id column and the feature/text columns seen at fit time),
    encoded with the fit-time vocabularies, statistics and text model; unknown categories are missing."""
    new_map = IdMap(ids, name="item")
    arrays = table_arrays(encode_frame(frame, spec.table, new_map), spec.table, len(ids))
    if spec.text:
        id_col = spec.table.id_col
        names = [n for n, _ in spec.text["columns"]]
        cols = frame.reindex(columns=[id_col, *names]).astype(object)
        vocab = {c["name"]: c["vocab"] for c in spec.table.columns}
        kinds = dict(map(tuple, spec.text["columns"]))
        tmp = FeatureTable.from_frame(cols, new_map, id_col=id_col, kinds=kinds,
                                      vocabs={n: vocab[n] for n in names if n in vocab})
        _add_text(arrays, tmp.text(names if spec.text["explicit"] else None), spec.text, fit=False)
    return arrays


def sequence_content(table: FeatureTable | None, n_items: int, *, features: bool, text: str, text_model: str = "",
                     owner: str = "model") -> tuple[ContentSpec, dict[str, np.ndarray]]:
    """`item_content` for the sequence models, which must get the content they ask for (the whole
    spec: `update` encodes the text of new items with it)."""
    if text == "cnn":
        raise TowerrecError(f"{owner}: text must be 'none' or 'pretrained' for a sequence model, got 'cnn'")
    return item_content(table, n_items, features=features, text=text, text_model=text_model, strict=True,
                        owner=owner)


class ItemContent(nn.Module):
    """forward() -> [n_items + 1, dim]: Linear(concat of the feature encodings and the projected text)
    for every item row, row 0 (padding) zero."""

    def __init__(self, spec: TableSpec, arrays: dict[str, np.ndarray], dim: int, *, feature_dim: int = 16,
                 text_dim: int = 64) -> None:
        super().__init__()
        self.rows = FeatureRows(arrays)
        text = PretrainedTextEncoder(int(arrays["text"].shape[1]), text_dim) if "text" in arrays else None
        self.encoder = TableEncoder(spec, feature_dim, text=text)
        self.out = nn.Linear(self.encoder.out_dim, dim)

    def forward(self) -> torch.Tensor:
        n = self.rows.n_rows
        index = torch.arange(n, device=self.rows.cat.device)
        return self.out(self.encoder(self.rows.take(index))) * (index > 0)[:, None]
