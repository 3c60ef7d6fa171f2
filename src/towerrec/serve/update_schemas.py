"""Request and response bodies of the routes that change what a server serves: `POST /admin/reload`,
`POST /items` and `DELETE /items/{id}` (the version block of `/info` is `schemas.VersionInfo`)."""
from __future__ import annotations

from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, model_validator

from towerrec.serve.schemas import MAX_ID_LENGTH, FeatureValue, ItemId

#: items one `POST /items` may add
MAX_NEW_ITEMS = 1000


class NewItem(BaseModel):
    """One catalogue item: its id and the item features / text the model was fitted with (e.g.
    `{"item_id": "m42", "title": "Alien (1979)", "genres": "Horror|Sci-Fi"}`); a list value is a
    multi-valued feature. Unknown feature names are ignored by the model and kept as attributes."""

    model_config = ConfigDict(extra="allow", json_schema_extra={"additionalProperties": {
        "anyOf": [{"type": "string", "maxLength": MAX_ID_LENGTH}, {"type": "number"},
                  {"type": "array", "items": {"type": "string", "maxLength": MAX_ID_LENGTH}, "maxItems": 100},
                  {"type": "null"}]}})
    item_id: ItemId

    @model_validator(mode="after")
    def _values(self) -> "NewItem":
        from pydantic import TypeAdapter

        check = TypeAdapter(FeatureValue | None)
        extra = self.model_extra or {}
        if len(extra) > 64:
            raise ValueError("an item has at most 64 features")
        for name, value in extra.items():
            if len(name) > 64:
                raise ValueError(f"feature name longer than 64 characters: {name[:20]!r}...")
            check.validate_python(value)
        return self


class AddItemsRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [
        {"items": [{"item_id": "new-1", "title": "A brand-new film (2024)", "genres": "Drama|Romance"}]}]})
    items: Annotated[list[NewItem], Field(min_length=1, max_length=MAX_NEW_ITEMS)]


class AddItemsResponse(BaseModel):
    added: list[str]
    items: int = Field(description="catalogue size after the change")
    model_version: int


class RetireResponse(BaseModel):
    retired: str
    items: int = Field(description="items still served")
    model_version: int


class ReloadResponse(BaseModel):
    reloaded: bool
    model_version: int
    artifact: str | None = None
    seconds: float
