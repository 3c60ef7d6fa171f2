"""Request and response bodies of the routes that change what a server serves: `POST /admin/reload`,
`POST /items` and `DELETE /items/{id}` (the version block of `/info` is `schemas.VersionInfo`)."""
from __future__ import annotations

from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, model_validator

from towerrec.serve.schemas import FeatureValue, ItemId

#: items one `POST /items` may add
MAX_NEW_ITEMS = 1000


class NewItem(BaseModel):
    """One catalogue item: its id and the item features / text the model was fitted with (e.g.
    `{"item_id": "m42", "title": "Alien (1979)", "genres": "Horror|Sci-Fi"}`); a list value is a
    multi-valued feature. Names the model does not use are kept as catalogue attributes only."""

    model_config = ConfigDict(extra="allow", json_schema_extra={"maxProperties": 65,
                                                                "propertyNames": {"maxLength": 64}})
    __pydantic_extra__: dict[Annotated[str, Field(max_length=64)], FeatureValue | None]
    item_id: ItemId

    @model_validator(mode="after")
    def _size(self) -> "NewItem":
        if len(self.model_extra or {}) > 64:
            raise ValueError("an item has at most 64 features")
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
