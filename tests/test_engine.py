"""The engine's settings for each backend (receiver.engine)."""

from __future__ import annotations

import pytest

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
