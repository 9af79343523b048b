"""receiver.db.insert_new_rows: many rows in one statement a page, stored exactly as SQLAlchemy's
executemany stores them (type processors, column defaults), only the new ones returned."""

from __future__ import annotations

from typing import Any

import pytest
import sqlalchemy as sa

from receiver.db import PAGE, _insert_new_returning, _RowsInsert, insert_new_rows, padded
from receiver.ingest.store import RAW_EVENTS, RawRequest, parse


def _raw_rows(count: int, **changes: Any) -> list[dict[str, Any]]:
    rows = []
    for n in range(count):
        body = b'{"id": "m-%d:1", "status": "DELIVRD"}' % n if n % 3 else b"{broken %d" % n
        request = RawRequest(
            source="portal",
            method="POST",
            path="/hooks/portal",
            kind_hint=None if n % 2 else "sms-status",
            query_string="" if n % 4 else "a=%FF&b=",
            headers={"Content-Type": "application/json", "X-Note": "caf\u00e9"},
            body=body,
            remote_addr=None if n % 5 == 0 else "203.0.113.7",
        )
        rows.append({**parse(request, max_events=10).raw, **changes})
    return rows


def _stored(connection: sa.Connection) -> list[tuple[Any, ...]]:
    """Every column but the id, as the database's text (so a JSON `null` is not an SQL NULL)."""
    columns = ", ".join(
        f"CAST({column.name} AS TEXT)" for column in RAW_EVENTS.columns if column.name != "id"
    )
    return list(connection.exec_driver_sql(f"SELECT {columns} FROM raw_events ORDER BY fingerprint"))


def test_rows_are_stored_as_sqlalchemys_executemany_stores_them(app):
    # More rows than a statement takes, some with NULL JSON, every column type of the
    # table, and a defaulted column (`replays`) the rows do not name.
    rows = _raw_rows(620)
    assert any(row["errors"] is None for row in rows) and "replays" not in rows[0]
    engine = app.extensions["receiver.db"].engine
    statement = _insert_new_returning(engine.dialect.name, RAW_EVENTS, ("source", "fingerprint"), ("id",))
    with engine.begin() as connection:
        assert len(connection.execute(statement, rows).all()) == 620
        by_sqlalchemy = _stored(connection)
        connection.execute(sa.delete(RAW_EVENTS))
        new = insert_new_rows(connection, RAW_EVENTS, rows, ["source", "fingerprint"], ["id", "fingerprint"])
        assert len(new) == 620 and len({row.id for row in new}) == 620
        assert _stored(connection) == by_sqlalchemy
        assert {row.fingerprint for row in new} == {row["fingerprint"] for row in rows}


def test_only_the_new_rows_come_back(app):
    rows = _raw_rows(6)
    engine = app.extensions["receiver.db"].engine
    keys = ["source", "fingerprint"]
    with engine.begin() as connection:
        first = insert_new_rows(connection, RAW_EVENTS, rows[:4], keys, ["fingerprint"])
        again = insert_new_rows(connection, RAW_EVENTS, rows[2:] + rows[5:], keys, ["fingerprint"])
        assert {row.fingerprint for row in first} == {row["fingerprint"] for row in rows[:4]}
        assert {row.fingerprint for row in again} == {row["fingerprint"] for row in rows[4:]}
        assert insert_new_rows(connection, RAW_EVENTS, [], keys, ["fingerprint"]) == []
        assert connection.scalar(sa.select(sa.func.count()).select_from(RAW_EVENTS)) == 6


def test_a_table_has_a_few_texts_whatever_the_counts(app):
    """Compiling a text for hundreds of rows takes longer than a webhook: counts share a dozen
    padded sizes, and the padding (the last row again) stores nothing twice."""
    keys = ["source", "fingerprint"]
    rows = _raw_rows(sum(range(1, PAGE + 8)))
    engine = app.extensions["receiver.db"].engine
    with engine.begin() as connection:
        start = 0
        for count in range(1, PAGE + 8):
            new = insert_new_rows(connection, RAW_EVENTS, rows[start : start + count], keys, ["fingerprint"])
            assert sorted(row.fingerprint for row in new) == sorted(
                row["fingerprint"] for row in rows[start : start + count]
            )
            start += count
        assert connection.scalar(sa.select(sa.func.count()).select_from(RAW_EVENTS)) == len(rows)
    shape = _RowsInsert.of(engine.dialect, RAW_EVENTS, tuple(keys), ("fingerprint",), tuple(rows[0]))
    assert sorted(shape.texts) == [1, 2, 4, 8, 16, 24, 32, 40, 48, 56, 64]
    assert [padded(n) for n in (1, 3, 5, 9, 17, 63, 64)] == [1, 4, 8, 16, 24, 64, 64]


def test_a_row_without_a_column_is_an_error_of_sqlalchemys_kind(app):
    rows = _raw_rows(2)
    del rows[1]["path"]
    engine = app.extensions["receiver.db"].engine
    with engine.begin() as connection, pytest.raises(sa.exc.StatementError, match="path"):
        insert_new_rows(connection, RAW_EVENTS, rows, ["source", "fingerprint"], ["id"])
