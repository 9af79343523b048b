"""CSV export of any list: every matching row, streamed in the list's order.

The rows come off a server-side cursor (PostgreSQL) or a stepping SQLite cursor a batch at a time
and leave as CSV text a batch at a time, so a million rows take no more memory than a thousand.
The columns are the list resource's flat keys, in the order of its JSON: the output schema is the
one description of a resource, and a nested list (a message's events, a call's recordings) has
no place in a flat row.

A text cell that a spreadsheet would read as a formula (it starts with `=`, `+`, `-`, `@`, a tab
or a carriage return) gets a `'` in front, as does one that starts with `'` itself, so that
removing one leading `'` from any text cell gives the value exactly as stored. Anyone who can send
an SMS writes the text of an inbound message, and support staff open these files in spreadsheets.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from flask import Response
from marshmallow import Schema, fields

from . import queries
from .schemas import UTCDateTime

BATCH_ROWS = 1000
# What makes a spreadsheet read a cell as a formula; and the quote that marks the cell as text.
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")
TEXT_MARK = "'"


@dataclass(frozen=True)
class Column:
    key: str
    expression: Any
    convert: Callable[[Any], Any] | None


def _json(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False, default=str)


def _utc_text(column: Any, dialect: str) -> Any:
    """A UTC time as the JSON writes it (`2026-01-31T10:00:00Z`, `.ffffff` when not whole), in SQL."""
    if dialect == "sqlite":  # kept as `YYYY-MM-DD HH:MM:SS.ffffff`
        text = sa.type_coerce(column, sa.String)
        day, clock = sa.func.substr(text, 1, 10), sa.func.substr(text, 12, 8)
        whole = sa.func.substr(text, 21).in_(["", "000000"])
        return sa.case((whole, day + "T" + clock + "Z"), else_=day + "T" + sa.func.substr(text, 12) + "Z")
    utc = sa.func.timezone("UTC", column)
    fraction = sa.func.date_part("microseconds", column).cast(sa.Integer) % 1_000_000
    return sa.case(
        (fraction == 0, sa.func.to_char(utc, 'YYYY-MM-DD"T"HH24:MI:SS"Z"')),
        else_=sa.func.to_char(utc, 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"'),
    )


def _as_text_cell(column: Any) -> Any:
    """The text, with TEXT_MARK in front where it starts like a formula or with TEXT_MARK, in SQL
    (the same on SQLite and PostgreSQL, and so in COPY's output too)."""
    first = sa.func.substr(column, 1, 1)
    # One parameter each (an expanding IN would not survive COPY's own compilation).
    starts = first.in_([sa.literal(start) for start in (*FORMULA_STARTS, TEXT_MARK)])
    return sa.case((starts, sa.literal(TEXT_MARK) + column), else_=column)


def _decimal_text(column: Any, dialect: str, places: int) -> Any:
    if dialect == "sqlite":  # SQLite keeps a REAL; the JSON shows the column's scale
        return sa.case((column.is_not(None), sa.func.printf(f"%.{places}f", column)))
    return sa.cast(column, sa.Text)


def csv_columns(schema: Schema, model: type[Any], dialect: str) -> list[Column]:
    """The schema's flat fields, each with the SQL that reads it as CSV text where it can.

    Times and amounts are formatted by the database, so a row needs no work in Python on its way
    out; only JSON objects (a raw event's errors, an inbound contact) are written here.
    """
    columns = []
    for name, field in schema.dump_fields.items():
        if isinstance(field, fields.Nested | fields.Method) or (
            isinstance(field, fields.List) and isinstance(field.inner, fields.Nested)
        ):
            continue
        expression = getattr(model, field.attribute or name)
        convert: Callable[[Any], Any] | None = None
        if isinstance(field, UTCDateTime):
            expression = _utc_text(expression, dialect)
        elif isinstance(field, fields.Decimal):
            expression = _decimal_text(expression, dialect, expression.type.scale or 0)
        elif isinstance(field, fields.Dict | fields.List):
            if dialect == "postgresql":
                # The stored JSON text; a JSON null is an empty cell, as SQL NULL is.
                expression = sa.func.nullif(sa.cast(expression, sa.Text), "null")
            else:
                convert = _json
        elif isinstance(expression.type, sa.Enum):
            expression = sa.type_coerce(expression, sa.String)  # the stored value is the API's
        elif isinstance(field, fields.String) and isinstance(expression.type, sa.String):
            expression = _as_text_cell(expression)
        columns.append(Column(field.data_key or name, expression, convert))
    return columns


class CsvStream:
    """The response body: a header row, then the rows, batch by batch; closes its connection."""

    def __init__(self, connection: sa.Connection, result: sa.CursorResult[Any], columns: list[Column]):
        self.connection = connection
        self.result = result
        self.columns = columns

    def __iter__(self) -> Iterator[bytes]:
        buffer = io.StringIO()
        writer = csv.writer(buffer, lineterminator="\r\n")
        writer.writerow([column.key for column in self.columns])
        converters = [(i, c.convert) for i, c in enumerate(self.columns) if c.convert is not None]
        try:
            for batch in self.result.partitions(BATCH_ROWS):
                if not converters:
                    writer.writerows(batch)
                for row in batch if converters else ():
                    values = list(row)
                    for index, convert in converters:
                        if values[index] is not None:
                            values[index] = convert(values[index])
                    writer.writerow(values)
                yield buffer.getvalue().encode()
                buffer.seek(0)
                buffer.truncate()
            if buffer.tell():
                yield buffer.getvalue().encode()
        finally:
            self.close()

    def close(self) -> None:
        """Release the cursor and the connection, also when the client went away early."""
        self.result.close()
        self.connection.close()


class PostgresCopyStream:
    """The response body on PostgreSQL: `COPY (SELECT ...) TO STDOUT (FORMAT csv, HEADER)`.

    The server writes the CSV itself and the rows pass through here as bytes, never as Python
    objects: the fastest way out, and a constant memory whatever the row count.
    """

    def __init__(self, engine: sa.Engine, statement: sa.Select[Any]) -> None:
        compiled = statement.compile(dialect=engine.dialect)
        params = {}
        for name, value in compiled.construct_params().items():
            bind = compiled.binds.get(name)
            process = bind.type.bind_processor(engine.dialect) if bind is not None else None
            params[name] = process(value) if process else value
        self.connection: Any = engine.raw_connection()
        self.finished = False
        try:
            cursor = self.connection.cursor()
            # psycopg binds COPY's parameters on the client, quoting each value as a literal.
            self.copy_context = cursor.copy(f"COPY ({compiled}) TO STDOUT WITH (FORMAT csv, HEADER)", params)
            self.copy = self.copy_context.__enter__()
        except BaseException:
            self.connection.invalidate()
            raise

    def __iter__(self) -> Iterator[bytes]:
        parts: list[bytes] = []
        size = 0
        try:
            while data := self.copy.read():  # one row at a time, as the server sends them
                parts.append(bytes(data))
                size += len(data)
                if size >= 65536:
                    yield b"".join(parts)
                    parts, size = [], 0
            if parts:
                yield b"".join(parts)
            self.finished = True
        finally:
            self.close()

    def close(self) -> None:
        """Hand the connection back; one left mid-COPY (the client went away) is discarded."""
        connection, self.connection = self.connection, None
        if connection is None:
            return
        if self.finished:
            self.copy_context.__exit__(None, None, None)
            connection.close()
        else:
            connection.invalidate()


def csv_response(
    engine: sa.Engine, listing: queries.Listing, filters: Mapping[str, Any], schema: Schema
) -> Response:
    """Start the query now (so a failure is still a proper error answer), stream the rows later."""
    columns = csv_columns(schema, listing.model, engine.dialect.name)
    labelled = (column.expression.label(column.key) for column in columns)
    statement = queries.filtered(listing, filters, *labelled)
    body: Any
    if engine.dialect.name == "postgresql" and not any(column.convert for column in columns):
        body = PostgresCopyStream(engine, statement)
    else:
        connection = engine.connect().execution_options(stream_results=True, yield_per=BATCH_ROWS)
        try:
            result = connection.execute(statement)
        except BaseException:
            connection.close()
            raise
        body = CsvStream(connection, result, columns)
    return Response(
        body,
        mimetype="text/csv",
        headers={"Content-Disposition": f'attachment; filename="{listing.name}.csv"'},
    )


def mark_text(value: Any) -> Any:
    """A text cell as a spreadsheet must show it: TEXT_MARK in front where it starts like a
    formula or with TEXT_MARK (the rule `_as_text_cell` writes in SQL)."""
    if isinstance(value, str) and value.startswith((*FORMULA_STARTS, TEXT_MARK)):
        return TEXT_MARK + value
    return value


def rows_csv_response(
    name: str, keys: list[str], rows: list[dict[str, Any]], *, text_keys: Sequence[str] = ()
) -> Response:
    """A few rows computed here (not a list's query) as CSV: a header row of `keys`, then each row;
    the cells of `text_keys` (free text, such as an operator's name) marked as text."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\r\n")
    writer.writerow(keys)
    marked = set(text_keys)
    for row in rows:
        writer.writerow(mark_text(row.get(key)) if key in marked else row.get(key) for key in keys)
    return Response(
        buffer.getvalue(),
        mimetype="text/csv",
        headers={"Content-Disposition": f'attachment; filename="{name}.csv"'},
    )
