"""Item content for models that embed items by id (the sequence models): the item tower's
feature encoders and a frozen sentence-model text embedding, projected to the id embedding size
and added to it, so that genres and titles shape an item's vector as well as its interactions.

`content_arrays(table, n_items, ...)` builds the row arrays once (row = item index + 1, row 0
the padding token's blank row); `ItemContent` turns all rows into [n_items + 1, dim] per call,
with row 0 zero so padding stays a zero vector.
"""
from __future__ import annotations

import numpy as np
import torch
from torch import nn

from towerrec.data.features import FeatureTable
from towerrec.errors import TowerrecError
from towerrec.towers.features import FeatureRows, TableEncoder, TableSpec, table_arrays
from towerrec.towers.text import PretrainedTextEncoder, embed_texts

TEXT_KINDS = ("none", "pretrained")


def content_arrays(table: FeatureTable | None, n_items: int, *, features: bool, text: str, text_model: str = "",
                   owner: str = "model") -> tuple[TableSpec, dict[str, np.ndarray]]:
    """(spec, row arrays) of the item features (`features`) and/or the text columns embedded by the
    sentence model (`text` = "pretrained"; `text_model` "" = the bundled all-MiniLM-L6-v2)."""
    if text not in TEXT_KINDS:
        raise TowerrecError(f"{owner}: text must be one of {TEXT_KINDS}, got {text!r}")
    if table is None:
        raise TowerrecError(f"{owner}: item_features / text need an item feature table (items.csv with an "
                            "item_id column, passed as item_features)")
    spec = TableSpec.from_table(table, "item_id") if features else TableSpec(id_col="item_id")
    arrays = table_arrays(table, spec, n_items)
    if text == "pretrained":
        if not table.of_kind("text"):
            raise TowerrecError(f"{owner}: text='pretrained' but the item table has no text column "
                                f"(columns: {', '.join(table.columns)})")
        emb = embed_texts(list(table.text()), text_model)
        arrays["text"] = np.vstack([np.zeros((1, emb.shape[1]), np.float32), emb])
    if not spec.columns and "text" not in arrays:
        raise TowerrecError(f"{owner}: the item table has no usable feature column")
    return spec, arrays


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
