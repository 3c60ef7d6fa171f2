"""Request and response bodies of the REST API (pydantic), with the size limits that keep a worker safe.

Ids are strings; plain JSON integers are accepted too and read as their decimal string (MovieLens
ids look like numbers), within JSON's safe-integer range. Unknown fields are errors, so a typo
(`exclude_seem`) is not silently ignored. Types are JSON's own: an integer field takes a JSON
integer (not "5", 5.0 or true), a boolean field a JSON boolean, and a number must be finite and
within float range (1e400, NaN and a 400-digit integer are 422s, not overflows deep in numpy).
"""
from __future__ import annotations

import math
import re
import sys
from decimal import Decimal
from typing import Annotated, Any, Literal, Union

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    JsonValue,
    PlainValidator,
    StrictBool,
    StrictFloat,
    StrictInt,
    StrictStr,
    WithJsonSchema,
    model_validator,
)

#: the longest list any endpoint returns; also bounds the work one request can ask for
MAX_K = 1000
MAX_HISTORY = 1000
MAX_EXCLUDE = 10_000
MAX_FILTERS = 16
MAX_ID_LENGTH = 256
#: integer ids are JSON's safe integers: beyond 2**53 a JavaScript client cannot hold them exactly
#: (and the limit is exact in every float-based JSON tool); longer ids travel as strings
MAX_INT_ID = 2**53 - 1


#: the largest finite float; numbers beyond it cannot be compared with float attributes
MAX_NUMBER = sys.float_info.max
#: the same bound for JSON integers, as the spec writes it (1.7976931348623157e+308 read as a decimal,
#: a little below the float's exact value): so the spec and the check agree to the last digit
MAX_INT_NUMBER = int(Decimal(repr(MAX_NUMBER)))
NUMBER_SCHEMA = {"type": "number", "minimum": -MAX_NUMBER, "maximum": MAX_NUMBER}


def _item_id(value: object) -> str:
    """An id as text: a string of 1..MAX_ID_LENGTH characters, or a JSON safe integer (not a bool)."""
    if isinstance(value, bool) or not isinstance(value, (str, int)):
        raise ValueError(f"an id is a string or an integer, got {type(value).__name__}")
    if isinstance(value, int):
        if abs(value) > MAX_INT_ID:
            raise ValueError(f"an integer id is at most {MAX_INT_ID} in absolute value (JSON's safe integers); "
                             "send longer ids as strings")
        return str(value)
    if not 1 <= len(value) <= MAX_ID_LENGTH:
        raise ValueError(f"an id has 1 to {MAX_ID_LENGTH} characters (this one has {len(value)})")
    return value


def _finite(value: int | float) -> int | float:
    """Numbers a float attribute can be compared with: finite and within float range."""
    if isinstance(value, int):
        if abs(value) > MAX_INT_NUMBER:
            raise ValueError(f"number beyond the float range (|x| <= {MAX_NUMBER:.4g})")
        return value
    if not math.isfinite(value):
        raise ValueError("number must be finite (no NaN or infinity)")
    return value


def _query_int(value: Any) -> Any:
    """Query parameters arrive as text: accept only an optionally signed run of digits ("5", not
    "5.0", "1e1" or "true", which pydantic's lax int would take or misread)."""
    if isinstance(value, str):
        if not re.fullmatch(r"[+-]?[0-9]{1,18}", value.strip()):
            raise ValueError("must be an integer")
        return int(value)
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError("must be an integer")
    return value


# one validator, not a str | int union: a bad id is one error message, not one per union branch
ItemId = Annotated[str, PlainValidator(_item_id), WithJsonSchema({"anyOf": [
    {"type": "string", "minLength": 1, "maxLength": MAX_ID_LENGTH},
    {"type": "integer", "minimum": -MAX_INT_ID, "maximum": MAX_INT_ID}]})]
Number = Annotated[Union[StrictInt, StrictFloat], AfterValidator(_finite), WithJsonSchema(NUMBER_SCHEMA)]
Scalar = Union[StrictStr, Number]
#: for integer query parameters (`?k=5`): `Annotated[int, Query(...), QUERY_INT]` (the order keeps
#: Query's bounds in the OpenAPI spec)
QUERY_INT = BeforeValidator(_query_int)


def _finite_numbers(value: Any) -> Any:
    """Before a filter value's union is tried: a bad number anywhere in it is one clear error, not a
    failure per union branch."""
    parts = value if isinstance(value, list) else list(value.values()) if isinstance(value, dict) else [value]
    for part in parts:
        if isinstance(part, (int, float)) and not isinstance(part, bool):
            _finite(part)
    return value


class Range(BaseModel):
    """A numeric attribute between min and max (both inclusive, either optional)."""

    model_config = ConfigDict(extra="forbid")
    min: Number | None = None
    max: Number | None = None


FilterValue = Annotated[Union[Scalar, Annotated[list[Scalar], Field(min_length=1, max_length=100)], Range],
                        BeforeValidator(_finite_numbers)]


# the bounds `app.user_features_schema` documents for a model's own feature names
FeatureText = Annotated[StrictStr, Field(max_length=MAX_ID_LENGTH)]
FeatureValue = Annotated[Union[FeatureText, Number, Annotated[list[FeatureText], Field(max_length=100)]],
                         BeforeValidator(_finite_numbers)]


class RerankRequest(BaseModel):
    """Re-rank the model's top `candidates` (`towerrec.rerank`): 0 keeps the model's order, 1 pursues
    only the goal (diversity, calibration to the user's genres, less popular items)."""

    model_config = ConfigDict(extra="forbid")
    method: Literal["mmr", "dpp", "calibrated", "popularity"]
    weight: Annotated[Union[StrictInt, StrictFloat], Field(ge=0, le=1)] = 0.5
    candidates: StrictInt = Field(100, ge=1, le=MAX_K, description="how many of the model's top items are re-ranked")
    space: Literal["auto", "categories", "model"] = Field(
        "auto", description="item similarity for mmr and dpp: the items' categories (genres), the model's own item "
                            "space, or auto (categories when the catalogue has them)")


class RecommendRequest(BaseModel):
    """Who to recommend for (`user_id`, or `history` for a new user), how many, and what to leave out."""

    model_config = ConfigDict(extra="forbid", json_schema_extra={
        "examples": [{"user_id": "196", "k": 10}, {"history": ["50", "181"], "k": 5, "filters": {"genres": "Comedy"}}],
        # the spec says what the validator below enforces, so generated clients and fuzzers know it
        "anyOf": [{"required": ["user_id"], "properties": {"user_id": {"not": {"type": "null"}}}},
                  {"required": ["history"], "properties": {"history": {"not": {"type": "null"}}}}],
    })

    user_id: ItemId | None = Field(None, description="a user seen in training; unknown users get a fallback")
    history: Annotated[list[ItemId], Field(max_length=MAX_HISTORY)] | None = Field(
        None, description="item ids the user interacted with, oldest first; scores new users (fallback "
                          "'history'); for a known user they are only excluded (with exclude_seen). Every id must "
                          "be in the catalogue (else 404)")
    user_features: dict[Annotated[str, Field(max_length=64)], FeatureValue] | None = Field(
        None, max_length=64, description="a new user's attributes (the training users.csv columns, e.g. "
                                         "{\"age\": 30, \"occupation\": \"writer\"}; lists for multi-valued ones): "
                                         "models that embed user features score the user from them (fallback "
                                         "'features'), and an unknown name or a non-numeric value for a numeric one is a "
                                         "422; other models ignore them")
    k: StrictInt = Field(10, ge=1, le=MAX_K, description="list length")
    exclude_seen: StrictBool = Field(True, description="leave out the user's training items and `history`")
    exclude_items: Annotated[list[ItemId], Field(max_length=MAX_EXCLUDE)] = Field(
        default_factory=list, description="never recommend these (unknown ids are ignored)")
    filters: dict[Annotated[str, Field(max_length=64)], FilterValue] | None = Field(
        None, max_length=MAX_FILTERS,
        description='item attribute filters, all must hold: {"genres": "Comedy"}, {"year": {"min": 1990}}, '
                    '{"genres": ["Comedy", "Drama"]} (any of)')

    explain: StrictBool = Field(False, description="explain each item: the history items that raise its score "
                                                   "most ('because you liked X'), the nearest history items in the "
                                                   "model's item space, and feature attributions where the model "
                                                   "has features")
    rerank: RerankRequest | None = Field(None, description="re-rank the list for diversity, calibration or less "
                                                           "popularity bias")

    @model_validator(mode="after")
    def _who(self) -> "RecommendRequest":
        if self.user_id is None and self.history is None:
            raise ValueError("give user_id, history, or both")
        return self


class Reason(BaseModel):
    """A history item behind a recommendation, with its contribution to the score (or its cosine)."""

    item_id: str
    title: str | None = None
    weight: float | None = None


class FeatureReason(BaseModel):
    """A user or item feature and how much the score drops without it."""

    side: str
    feature: str
    weight: float | None = None


class ItemExplanation(BaseModel):
    """Why this item (`towerrec.explain`)."""

    sentence: str = Field(description="'because you liked X' in words")
    method: str = Field(description="how `because` was computed (exact weights, a decomposition, leave one out)")
    because: list[Reason] = Field(description="history items that raise the score most, largest first")
    nearest: list[Reason] = Field(description="history items nearest to the item in the model's own item space")
    features: list[FeatureReason] = Field(default_factory=list)


class Item(BaseModel):
    item_id: str
    score: float | None = None
    title: str | None = None
    attributes: dict[str, object] | None = None
    explanation: ItemExplanation | None = None


class RecommendResponse(BaseModel):
    user_id: str | None
    items: list[Item]
    fallback: str | None = Field(None, description='null, or how the list was made for an unknown user: "features", "history" or "popularity"')
    model: str
    index: str


class SimilarResponse(BaseModel):
    item_id: str
    items: list[Item]
    model: str


class ItemsResponse(BaseModel):
    query: str
    items: list[Item]


class Error(BaseModel):
    """Every 4xx: `detail` says what was wrong in words."""

    detail: str
    errors: list[dict] | None = None


class Health(BaseModel):
    status: str
    model: str
    items: int


# ---- /info: every field listed; nothing is copied through from the artifact's files -------------------

class DatasetInfo(BaseModel):
    """What the model was trained on, from the artifact's dataset info (checked on load)."""

    name: str | None = None
    users: int | None = None
    items: int | None = None
    interactions: int | None = None


class DataInfo(BaseModel):
    users: int = Field(description="users seen in training")
    items: int
    interactions: int = Field(description="training interactions (seen user-item pairs)")
    dataset: DatasetInfo | None = None


class CatalogueInfo(BaseModel):
    items: int
    titles: bool = Field(description="items have display titles")
    attributes: list[str] = Field(description="item attributes that `filters` can name")


class IndexInfo(BaseModel):
    """How `/recommend` retrieves: an exact or FAISS index over item embeddings, or the model itself."""

    kind: str = Field(description='"exact", "faiss" or "model"')
    note: str | None = None
    metric: str | None = None
    n_items: int | None = None
    dim: int | None = None
    structure: str | None = Field(None, description='FAISS: "pq", "hnsw" or "ivf"')
    build_seconds: float | None = None
    pq_m: int | None = None
    pq_bits: int | None = None
    pq_rerank: int | None = None
    hnsw_m: int | None = None
    ef_construction: int | None = None
    ef_search: int | None = None
    ivf_lists: int | None = None
    ivf_probe: int | None = None
    removal: str | None = Field(None, description='FAISS: how retired items leave the index, "remove_ids" (IVF) '
                                                   'or "tombstones" (filtered at search time)')
    recall_at_10_vs_exact: float | None = Field(None, description="ANN recall@10 against exact search, "
                                                                   "measured at start-up (1.0 for exact)")


class VersionInfo(BaseModel):
    """Which model version is served and where it came from (its lineage: `towerrec.lineage`), and
    how the server keeps up (`towerrec.serve.live`)."""

    model_version: int = Field(description="1 after fit, + 1 per update, added or retired items")
    artifact_version: str | None = Field(None, description="the version folder of a model store, if served from one")
    loaded_at: str | None = None
    supports_add_items: bool
    retired_items: int
    lineage: list[dict[str, JsonValue]] = Field(description="the last entries of the model's lineage")
    source: str | None = None
    reloads: int = 0
    watching: bool = False
    last_reload_error: str | None = None
    workers: int = 1


class Info(BaseModel):
    model: str
    config: dict[str, JsonValue] = Field(
        description="the model's hyperparameters (its typed config as loaded; nested configs such as "
                    "`train` are objects)")
    artifact: str | None = Field(None, description="the artifact folder's name")
    artifact_towerrec_version: str | None = Field(None, description="the towerrec version that saved the model")
    towerrec_version: str
    data: DataInfo
    catalogue: CatalogueInfo
    supports_history: bool
    index: IndexInfo
    uptime_seconds: float
    version: VersionInfo | None = None


ERROR_RESPONSES: dict[int | str, dict] = {
    400: {"model": Error, "description": "malformed request (e.g. invalid JSON)"},
    401: {"model": Error, "description": "missing or wrong bearer token"},
    404: {"model": Error, "description": "unknown item (in the path, or in `history`)"},
    413: {"model": Error, "description": "request body too large"},
    422: {"model": Error, "description": "a field has the wrong type or value, or names unknown items"},
}
