"""The engine's settings for each backend (receiver.engine), and how times are written."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from zoneinfo import ZoneInfo

import pytest
import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite

from receiver.db import UTCDateTime
from receiver.engine import PREPARED_MAX, make_engine


def test_psycopg_keeps_every_text_of_ingest_prepared(migrated):
    """More texts than psycopg's default 100 stay prepared: past it, each evicted text was parsed
    and planned anew on its next executions."""
    if not migrated.startswith("postgresql"):
        pytest.skip("psycopg, PostgreSQL only")
    engine = make_engine(migrated)
    try:
        with engine.connect() as connection:
            assert connection.connection.dbapi_connection.prepared_max == PREPARED_MAX > 100
    finally:
        engine.dispose()


@pytest.mark.parametrize(
    "value",
    [
        datetime(2026, 11, 30, 4, 5, 6, 7, tzinfo=UTC),
        datetime(2026, 11, 30, 4, 5, 6, tzinfo=UTC),
        datetime(2026, 3, 29, 23, 59, 59, 999999, tzinfo=ZoneInfo("Asia/Kolkata")),
        datetime(999, 1, 1, tzinfo=timezone(timedelta(hours=-5))),
    ],
)
def test_a_utc_time_is_written_on_sqlite_as_sqlalchemy_writes_it_and_reads_back(value):
    """UTCDateTime's own SQLite processor writes DATETIME's text, in UTC, and reads back the same."""
    dialect = sqlite.dialect()
    ours = UTCDateTime().bind_processor(dialect)
    sqlalchemys = sa.DateTime().dialect_impl(dialect).bind_processor(dialect)
    assert ours is not None and sqlalchemys is not None
    written = ours(value)
    assert written == sqlalchemys(value.astimezone(UTC).replace(tzinfo=None))
    engine = sa.create_engine("sqlite://")
    column = sa.Column("at", UTCDateTime())
    table = sa.Table("times", sa.MetaData(), column)
    with engine.begin() as connection:
        table.create(connection)
        connection.execute(table.insert(), {"at": value})
        assert connection.execute(sa.select(sa.func.typeof(column), sa.cast(column, sa.Text))).one() == (
            "text",
            written,
        )
        assert connection.scalar(sa.select(column)) == value


def test_a_naive_time_is_refused_on_every_database():
    for dialect in (sqlite.dialect(), postgresql.dialect()):
        process = UTCDateTime().bind_processor(dialect)
        assert process is not None and process(None) is None
        with pytest.raises(ValueError, match="naive"):
            process(datetime(2026, 11, 30))
