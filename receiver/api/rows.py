"""JSON answers read as plain rows: what the output schemas dump, without ORM objects or marshmallow per row.

A page of 100 messages loaded as ORM objects (with their events joined) and dumped by marshmallow
spent most of its time building and serializing objects, not in the database (docs/benchmarks.md,
"Query API"). Here a resource's columns are selected as rows, its nested lists (a message's events, a call's
recordings) come in one more query for the whole page, and each value that needs any work is
written by its schema field (`Field.serialize`). The schemas stay the one description of a
resource (receiver/api/resources.py) and of the OpenAPI document; tests/test_api_rows.py holds
both outputs equal.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from marshmallow import Schema, fields
from sqlalchemy import orm


def _nested(field: fields.Field) -> Schema | None:
    """The item schema of a nested list field, else None."""
    if isinstance(field, fields.List) and isinstance(field.inner, fields.Nested):
        schema = field.inner.schema
        assert isinstance(schema, Schema)
        return schema
    return None


def _as_is(field: fields.Field, column: Any) -> bool:
    """Whether the field dumps the column's values unchanged (a str as a String, an int as an Integer)."""
    try:
        python_type = column.type.python_type
    except NotImplementedError:
        return False
    if type(field) is fields.String:
        return python_type is str
    if type(field) is fields.Integer:
        return python_type is int and not field.as_string
    return False


def _itself(value: Any, _attribute: str, _default: Any) -> Any:
    """The accessor `Field.serialize` reads a value with, given the value itself."""
    return value


@dataclass(frozen=True)
class Flat:
    """The flat fields of an output schema as columns of its model, and how each value is written."""

    keys: tuple[str, ...]
    columns: tuple[Any, ...]
    serializers: tuple[tuple[str, str, Callable[..., Any]], ...]

    @classmethod
    def of(cls, schema: Schema, model: type[Any] | orm.util.AliasedClass[Any]) -> Flat:
        keys, columns, serializers = [], [], []
        for name, field in schema.dump_fields.items():
            if _nested(field) is not None:
                continue
            if isinstance(field, fields.Method | fields.Function | fields.Nested):
                raise TypeError(f"{type(schema).__name__}.{name}: not a column")
            attribute = field.attribute or name
            column = getattr(model, attribute)
            key = field.data_key or name
            keys.append(key)
            columns.append(column.label(attribute))
            if not _as_is(field, column):
                serializers.append((key, attribute, field.serialize))
        return cls(tuple(keys), tuple(columns), tuple(serializers))

    def dump(self, row: Sequence[Any]) -> dict[str, Any]:
        """The schema's dump of one row (whose first columns are this one's)."""
        item = dict(zip(self.keys, row))  # noqa: B905 (a row may end with further columns)
        for key, attribute, serialize in self.serializers:
            item[key] = serialize(attribute, item[key], accessor=_itself)
        return item


@dataclass(frozen=True)
class Nest:
    """A nested list of a resource: the child column naming its parent, and the order the schema shows."""

    parent: orm.InstrumentedAttribute[Any]
    order: tuple[Any, ...]


class Resource:
    """One output schema (its flat fields and nested lists) read from its model as rows."""

    def __init__(self, schema: Schema, model: type[Any], **nests: Nest) -> None:
        self.schema = schema
        self.flat = Flat.of(schema, model)
        (primary_key,) = sa.inspect(model).primary_key
        self.key_index = [column.key for column in self.flat.columns].index(primary_key.key)
        self.nested: list[tuple[str, Flat, Nest]] = []
        for name, field in schema.dump_fields.items():
            item_schema = _nested(field)
            if item_schema is None:
                continue
            if name not in nests:
                raise TypeError(f"{type(schema).__name__}.{name}: say how its rows are read (a Nest)")
            nest = nests.pop(name)
            self.nested.append((field.data_key or name, Flat.of(item_schema, nest.parent.class_), nest))
        if nests:
            raise TypeError(f"{type(schema).__name__} has no nested list {', '.join(nests)}")

    @property
    def columns(self) -> tuple[Any, ...]:
        """What to SELECT for `dump`."""
        return self.flat.columns

    def dump(self, session: orm.Session, rows: Sequence[Sequence[Any]]) -> list[dict[str, Any]]:
        """The schema's dump of each row, with its nested lists (one query each for all the rows)."""
        items = [self.flat.dump(row) for row in rows]
        keys = [row[self.key_index] for row in rows]
        for name, flat, nest in self.nested:
            children: dict[Any, list[dict[str, Any]]] = {key: [] for key in keys}
            if keys:
                statement = (
                    sa.select(*flat.columns, nest.parent)  # the parent's key last
                    .where(nest.parent.in_(keys))
                    .order_by(*nest.order)
                )
                for child in session.execute(statement):
                    children[child[-1]].append(flat.dump(child))
            for item, key in zip(items, keys, strict=True):
                item[name] = children[key]
        return items

    def one(self, session: orm.Session, *where: sa.ColumnElement[bool]) -> dict[str, Any] | None:
        """The dump of the one row matching `where`, or None."""
        rows = session.execute(sa.select(*self.columns).where(*where)).all()
        return self.dump(session, rows)[0] if rows else None
