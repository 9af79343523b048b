"""Snapshots of changed resources, taken by the database inside the change's transaction.

`INSERT INTO changes ... SELECT <the row as JSON> FROM <its table> WHERE id IN (...)`: one
statement a webhook, with no rows coming back to Python, which is what keeps the outbox's cost
small next to ingest. The JSON holds the columns the query API shows (and the nested lists it
shows, as a message's status history), raw; `api_data` turns them into the API's answer with
the API's own field serializers (receiver.api.rows), so there is one rule for a resource's JSON.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import sqlalchemy as sa

from ..db import UTCDateTime
from .models import changes_table

ORDER_KEY = "_order"
# Resources a statement of `insert_changes` takes at most.
CHUNK = 64


@dataclass(frozen=True)
class Shape:
    """How one change type's resource is read: the API's row reader and its key column."""

    prefix: str
    reader: Any  # receiver.api.rows.Resource
    key: Any


@functools.cache
def shapes() -> dict[str, Shape]:
    """type -> Shape; imported on first use (the API modules import the app's models)."""
    from ..api import resources
    from ..models import Call, InboundMessage, Message, OptOut, Recording

    return {
        "message.status": Shape("message", resources.MESSAGE, Message.id),
        "inbound": Shape("inbound", resources.INBOUND, InboundMessage.id),
        "call": Shape("call", resources.CALL, Call.id),
        "recording": Shape("recording", resources.RECORDING, Recording.id),
        "opt_out": Shape("opt_out", resources.OPT_OUT, OptOut.id),
    }


def _attribute(column: Any) -> str:
    return str(column.name)  # the label Flat gave it: the model attribute


def _value(column: Any, dialect: str) -> Any:
    """A column as it goes into the JSON: numbers as text (exact), JSON as JSON."""
    inner = column.element if isinstance(column, sa.Label) else column
    if isinstance(inner.type, sa.Numeric) and not isinstance(inner.type, sa.Float | sa.Integer):
        return sa.cast(inner, sa.String)
    if isinstance(inner.type, sa.JSON) and dialect == "sqlite":
        return sa.func.json(inner)  # stored as text: embed it as JSON, not as a string
    return inner


def _constant(text: str) -> Any:
    """A string written into the SQL itself, not a parameter: the statement stays the same text
    with two parameters, instead of sixty more to bind on every webhook. Only our own names."""
    assert text.replace("_", "").replace(".", "").replace(":", "").isalnum(), text
    return sa.literal_column(f"'{text}'", sa.String)


def _object(columns: Sequence[Any], dialect: str, extra: Sequence[Any] = ()) -> Any:
    args: list[Any] = []
    for column in columns:
        args += [_constant(_attribute(column)), _value(column, dialect)]
    args += list(extra)
    return (sa.func.json_build_object if dialect == "postgresql" else sa.func.json_object)(*args)


def _nested(name: str, flat: Any, nest: Any, parent_key: Any, dialect: str) -> list[Any]:
    """The `name`, list-of-objects pair of a nested list. SQLite (before 3.44) cannot order an
    aggregate, so each object carries its sort key (`_order`) and `api_data` orders the list."""
    array = sa.func.json_build_array if dialect == "postgresql" else sa.func.json_array
    child = _object(flat.columns, dialect, [_constant(ORDER_KEY), array(*nest.order)])
    if dialect == "postgresql":
        listed: Any = sa.func.coalesce(sa.func.json_agg(child), sa.text("'[]'::json"))
    else:
        listed = sa.func.json(
            sa.func.coalesce(sa.func.json_group_array(sa.func.json(child)), sa.literal_column("'[]'"))
        )
    subquery = sa.select(listed).where(nest.parent == parent_key).scalar_subquery()
    return [_constant(name), subquery]


@functools.lru_cache(maxsize=256)
def insert_statement(dialect: sa.Dialect, change_type: str, count: int) -> Any:
    """The INSERT ... SELECT of `count` resources of one type at `now` (parameters `now`, `id0`,
    `id1`, ...), compiled once a dialect, type and count: SQLAlchemy would otherwise walk its ~80
    elements for a cache key on every execution, and the one text a count lets each server
    connection prepare and plan it once (an `= ANY(array)` form would be one text for every
    count, but PostgreSQL plans it anew at each execution)."""
    shape = shapes()[change_type]
    reader = shape.reader
    extra: list[Any] = []
    for name, flat, nest in reader.nested:
        extra += _nested(name, flat, nest, shape.key, dialect.name)
    data = _object(reader.flat.columns, dialect.name, extra)
    resource = _constant(shape.prefix + ":") + sa.cast(shape.key, sa.String)
    now = sa.bindparam("now", type_=UTCDateTime())
    ids = [sa.bindparam(f"id{n}", type_=shape.key.type) for n in range(count)]
    where = shape.key == ids[0] if count == 1 else shape.key.in_(ids)
    chosen = sa.select(_constant(change_type), resource, now, data).where(where)
    statement = sa.insert(changes_table).from_select(["type", "resource", "created_at", "data"], chosen)
    return statement.compile(dialect=dialect)


def statement_size(count: int) -> int:
    """The number of ids the statement for `count` resources names: the next power of two (at
    most CHUNK), so that a type has 7 texts rather than 64. Each text is compiled once a process
    and, on PostgreSQL, planned anew for its first executions on each server connection (0.1-0.3
    ms for this one): with a text for every count, a fresh process spent a noticeable part of its
    first minutes there."""
    return min(CHUNK, 1 << (count - 1).bit_length())


def insert_changes(connection: sa.Connection, change_type: str, ids: list[Any], now: datetime) -> None:
    """Write the changes of `ids` (resources of one type, each once) with their snapshots, a
    statement for each CHUNK of them: so few texts to compile and keep, and never more
    parameters than a database takes, however many events the requests of a batch carry.
    A chunk is padded to its statement's size with its last id again (`IN` takes each row once)."""
    dialect = connection.dialect
    bind_time = UTCDateTime().bind_processor(dialect)
    when = bind_time(now) if bind_time is not None else now  # as the column takes it
    for start in range(0, len(ids), CHUNK):
        chunk = ids[start : start + CHUNK]
        size = statement_size(len(chunk))
        compiled = insert_statement(dialect, change_type, size)
        values: dict[str, Any] = {"now": when}
        values.update((f"id{n}", chunk[min(n, len(chunk) - 1)]) for n in range(size))
        params = tuple(values[name] for name in compiled.positiontup) if compiled.positional else values
        connection.exec_driver_sql(compiled.string, params)


def _restore(column: Any, value: Any) -> Any:
    """A JSON value back to what the column's Python type is, as the API's serializers expect."""
    if value is None:
        return None
    inner = column.element if isinstance(column, sa.Label) else column
    kind = inner.type
    if isinstance(kind, UTCDateTime | sa.DateTime):
        when = datetime.fromisoformat(value)
        return when.replace(tzinfo=UTC) if when.tzinfo is None else when.astimezone(UTC)
    if isinstance(kind, sa.Numeric) and not isinstance(kind, sa.Float | sa.Integer):
        number = Decimal(str(value))
        return number.quantize(Decimal(1).scaleb(-kind.scale)) if kind.scale is not None else number
    if isinstance(kind, sa.JSON) and isinstance(value, str):
        return json.loads(value)
    return value


def _dump(flat: Any, raw: dict[str, Any]) -> dict[str, Any]:
    return dict(flat.dump([_restore(column, raw.get(_attribute(column))) for column in flat.columns]))


def api_data(change_type: str, raw: dict[str, Any]) -> dict[str, Any]:
    """The stored snapshot as the query API shows the resource."""
    reader = shapes()[change_type].reader
    item = _dump(reader.flat, raw)
    for name, flat, _nest in reader.nested:
        children = sorted(raw.get(name) or [], key=lambda child: child[ORDER_KEY])
        item[name] = [_dump(flat, child) for child in children]
    return item
