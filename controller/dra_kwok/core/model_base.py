"""The base of every model: immutable, camelCase on the wire, unknown keys kept only to be reported."""

from __future__ import annotations

from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict, SerializerFunctionWrapHandler, model_serializer
from pydantic.alias_generators import to_camel


class Model(BaseModel):
    """Immutable, camelCase on the wire. Unknown keys are kept out of the API and reported as
    errors by `validation.unknown_field_issues`, which walks the raw document; keys that must not
    be set, with the reason, are in FORBIDDEN_KEYS (reported there too, so that they never stop
    the rest of the object from being checked)."""

    FORBIDDEN_KEYS: ClassVar[dict[str, str]] = {}

    model_config = ConfigDict(
        alias_generator=to_camel,
        populate_by_name=True,
        extra="allow",
        frozen=True,
        validate_default=False,
    )

    @model_serializer(mode="wrap")
    def _without_unknown_keys(self, handler: SerializerFunctionWrapHandler) -> Any:
        # Unknown keys are kept only to be reported; they must never reach the API.
        data = handler(self)
        if isinstance(data, dict):
            for key in self.model_extra or {}:
                data.pop(key, None)
        return data

    def to_api(self) -> dict[str, Any]:
        """The object as the Kubernetes API spells it (camelCase, unset fields and unknown keys left out)."""
        data: dict[str, Any] = self.model_dump(by_alias=True, exclude_none=True, exclude_defaults=True)
        return data
