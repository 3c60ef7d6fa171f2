"""Request and response bodies of the REST API (pydantic), with the size limits that keep a worker safe.

Ids are strings; plain JSON integers are accepted too and read as their decimal string (MovieLens
ids look like numbers). Unknown fields are errors, so a typo (`exclude_seem`) is not silently ignored.
"""
from __future__ import annotations

from typing import Annotated, Union

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, StrictFloat, StrictInt, StrictStr, model_validator

#: the longest list any endpoint returns; also bounds the work one request can ask for
MAX_K = 1000
MAX_HISTORY = 1000
MAX_EXCLUDE = 10_000
MAX_FILTERS = 16
MAX_ID_LENGTH = 256


ItemId = Annotated[
    Union[Annotated[StrictStr, Field(min_length=1, max_length=MAX_ID_LENGTH)], StrictInt],  # true/false are not ids
    AfterValidator(str),
]
Scalar = Union[StrictStr, StrictInt, StrictFloat]


class Range(BaseModel):
    """A numeric attribute between min and max (both inclusive, either optional)."""

    model_config = ConfigDict(extra="forbid")
    min: StrictInt | StrictFloat | None = None
    max: StrictInt | StrictFloat | None = None


FilterValue = Union[Scalar, Annotated[list[Scalar], Field(min_length=1, max_length=100)], Range]


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
    user_features: dict[str, Scalar | list[StrictStr]] | None = Field(
        None, max_length=64, description="a new user's attributes (the training users.csv columns, e.g. "
                                         "{\"age\": 30, \"occupation\": \"writer\"}; lists for multi-valued ones): "
                                         "models that embed user features score the user from them (fallback "
                                         "'features'), and an unknown name or a non-numeric value for a numeric one is a "
                                         "422; other models ignore them")
    k: int = Field(10, ge=1, le=MAX_K, description="list length")
    exclude_seen: bool = Field(True, description="leave out the user's training items and `history`")
    exclude_items: Annotated[list[ItemId], Field(max_length=MAX_EXCLUDE)] = Field(
        default_factory=list, description="never recommend these (unknown ids are ignored)")
    filters: dict[Annotated[str, Field(max_length=64)], FilterValue] | None = Field(
        None, max_length=MAX_FILTERS,
        description='item attribute filters, all must hold: {"genres": "Comedy"}, {"year": {"min": 1990}}, '
                    '{"genres": ["Comedy", "Drama"]} (any of)')

    @model_validator(mode="after")
    def _who(self) -> "RecommendRequest":
        if self.user_id is None and self.history is None:
            raise ValueError("give user_id, history, or both")
        return self


class Item(BaseModel):
    item_id: str
    score: float | None = None
    title: str | None = None
    attributes: dict[str, object] | None = None


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


ERROR_RESPONSES: dict[int | str, dict] = {
    400: {"model": Error, "description": "malformed request (e.g. invalid JSON)"},
    401: {"model": Error, "description": "missing or wrong bearer token"},
    404: {"model": Error, "description": "unknown item (in the path, or in `history`)"},
    413: {"model": Error, "description": "request body too large"},
    422: {"model": Error, "description": "a field has the wrong type or value, or names unknown items"},
}
