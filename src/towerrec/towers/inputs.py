"""What each side of a two-tower model reads, declared once: ids, feature columns, text, a pooled history.

`item_encoders` and `user_encoders` turn such a declaration into the named encoders a `Tower`
concatenates (`{"id": IdEmbedding, "features": TableEncoder(+ text), "history": pooled vector}`),
so adding a tower input touches this file and the model config, nothing else.
"""
from __future__ import annotations

from dataclasses import dataclass

from torch import nn

from towerrec.towers.features import IdEmbedding, TableEncoder, TableSpec
from towerrec.towers.graph import GraphIdEncoder, GraphPropagation
from towerrec.towers.text import CNNTextEncoder, PretrainedTextEncoder


@dataclass(frozen=True)
class EncoderSizes:
    """Widths and options shared by every encoder of a model."""

    id_dim: int = 64
    feature_dim: int = 16
    text_dim: int = 64
    hash_buckets: int = 0
    bag_mode: str = "mean"
    numeric_buckets: int = 0


def text_encoder(kind: str, sizes: EncoderSizes, *, text_in_dim: int = 0, cnn_vocab_size: int = 0) -> nn.Module | None:
    """The trainable text encoder of a text kind ("pretrained": a projection of frozen sentence
    embeddings of width `text_in_dim`; "cnn": a CNN over tokens), or None when there is no text."""
    if kind == "pretrained" and text_in_dim:
        return PretrainedTextEncoder(text_in_dim, sizes.text_dim)
    if kind == "cnn" and cnn_vocab_size:
        return CNNTextEncoder(cnn_vocab_size, sizes.text_dim)
    return None


def id_encoder(n_ids: int, sizes: EncoderSizes, graph: GraphPropagation | None, side: str) -> nn.Module:
    """An id table (`IdEmbedding`), or that side of a LightGCN propagation (`GraphIdEncoder`)."""
    return GraphIdEncoder(graph, side) if graph is not None else IdEmbedding(n_ids, sizes.id_dim, sizes.hash_buckets)


def item_encoders(*, ids: bool, features: bool, text: str, n_ids: int, spec: TableSpec, has_rows: bool,
                  sizes: EncoderSizes, text_in_dim: int = 0, cnn_vocab_size: int = 0,
                  graph: GraphPropagation | None = None) -> dict[str, nn.Module]:
    """Encoders of an item-side tower (the item tower, or the history's item encoder).

    "id": an embedding of the trained item ids (or their LightGCN propagation, `graph`);
    "features": the feature columns of `spec` when `features`, plus the text encoder, over the
    item feature rows (`has_rows`)."""
    out: dict[str, nn.Module] = {}
    if ids:
        out["id"] = id_encoder(n_ids, sizes, graph, "item")
    text_module = text_encoder(text, sizes, text_in_dim=text_in_dim, cnn_vocab_size=cnn_vocab_size) if features else None
    if has_rows and (text_module is not None or (features and spec.columns)):
        out["features"] = TableEncoder(spec if features else TableSpec(), sizes.feature_dim, bag_mode=sizes.bag_mode,
                                       numeric_buckets=sizes.numeric_buckets, text=text_module)
    return out


def user_encoders(*, ids: bool, features: bool, history: bool, n_ids: int, spec: TableSpec, has_rows: bool,
                  sizes: EncoderSizes, graph: GraphPropagation | None = None) -> dict[str, nn.Module]:
    """Encoders of the user tower: "id" (an id table, or the users' side of `graph`), "features"
    (user feature rows), "history" (the pooled history vector, computed by the model and passed through)."""
    out: dict[str, nn.Module] = {}
    if ids:
        out["id"] = id_encoder(n_ids, sizes, graph, "user")
    if features and has_rows and spec.columns:
        out["features"] = TableEncoder(spec, sizes.feature_dim, bag_mode=sizes.bag_mode,
                                       numeric_buckets=sizes.numeric_buckets)
    if history:
        out["history"] = nn.Identity()
    return out


def width(encoders: dict[str, nn.Module], default: int) -> int:
    """Concatenated output width of `encoders` (a pooled history has the model's `default` width)."""
    return sum(getattr(m, "out_dim", getattr(m, "dim", default)) for m in encoders.values())
