"""marshmallow's `Schema.load`, compiled once a schema for the webhook's hot path.

`Schema.load` spends most of its time on bookkeeping each call: an error store, a closure and a
call wrapper a field, `partial` and `unknown` resolved again, hooks looked up by name. A
`CompiledLoader` does the same steps in the same order with the schema's own objects (its pre-load
hooks, each field's `deserialize`, its schema validators) and nothing else. Whenever anything goes
otherwise than plainly (a validation error, any exception), it calls `schema.load` itself, so
errors and their messages are always marshmallow's own. A schema using features left out here
(post-load hooks, field validators by name, collection hooks, `pass_original`, `many`, partial
loading, another `unknown` than EXCLUDE) is always loaded by `schema.load`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from marshmallow import EXCLUDE, Schema, missing
from marshmallow.decorators import POST_LOAD, PRE_LOAD, VALIDATES, VALIDATES_SCHEMA

_OPTIONS = {"many": False, "partial": None, "unknown": EXCLUDE}


class CompiledLoader:
    def __init__(self, schema: Schema) -> None:
        self.schema = schema
        hooks = schema._hooks  # marshmallow's resolved hooks, in the order it runs them
        self.compiled = not (
            schema.many
            or schema.partial
            or schema.unknown != EXCLUDE
            or hooks[POST_LOAD]
            or hooks[VALIDATES]
            or any(many or kwargs.get("pass_original") for _, many, kwargs in hooks[PRE_LOAD])
            or any(many or kwargs.get("pass_original") for _, many, kwargs in hooks[VALIDATES_SCHEMA])
        )
        self.pre_load: list[Callable[..., Any]] = [getattr(schema, name) for name, _, _ in hooks[PRE_LOAD]]
        self.fields = [
            (
                field.data_key if field.data_key is not None else name,
                field.attribute or name,
                field.deserialize,
            )
            for name, field in schema.load_fields.items()
        ]
        self.validators: list[Callable[..., Any]] = [
            getattr(schema, name) for name, _, _ in hooks[VALIDATES_SCHEMA]
        ]

    def load(self, data: Any) -> dict[str, Any]:
        """What `self.schema.load(data)` returns, or raises."""
        if self.compiled:
            try:
                return self._load(data)
            except Exception:  # noqa: BLE001 - marshmallow says what went wrong, in its own words
                pass
        loaded: dict[str, Any] = self.schema.load(data)
        return loaded

    def _load(self, data: Any) -> dict[str, Any]:
        processed = data
        for hook in self.pre_load:
            processed = hook(processed, **_OPTIONS)
        if not isinstance(processed, Mapping):
            raise TypeError("not a mapping: marshmallow reports it")
        result: dict[str, Any] = {}
        for key, attribute, deserialize in self.fields:
            value = deserialize(processed.get(key, missing), key, processed)
            if value is not missing:
                result[attribute] = value
        for validator in self.validators:
            validator(result, **_OPTIONS)
        return result
