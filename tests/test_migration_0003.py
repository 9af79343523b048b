"""Migration 0003 on a database holding rows from before it: every message event, inbound message
and call is `origin: webhook`, a pulled row may have no raw event, and the runs table is there.
On SQLite, or on PostgreSQL when TEST_DATABASE_URL is set."""

from __future__ import annotations

from datetime import UTC, datetime

import sqlalchemy as sa
from alembic import command

from receiver import migrate
from receiver.db import make_engine
from tests.test_migration_0002 import fresh_url  # noqa: F401 (a fixture)

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def test_rows_stored_before_are_webhook_ones_and_pulled_rows_need_no_raw_event(fresh_url):  # noqa: F811
    migrate.upgrade(fresh_url, "0002")
    engine = make_engine(fresh_url)
    meta = sa.MetaData()
    meta.reflect(engine)
    t = meta.tables
    raw = {
        "id": 1,
        "source": "portal",
        "received_at": T0,
        "method": "POST",
        "path": "/hooks/portal",
        "query_string": "",
        "headers": {},
        "body": b"{}",
        "sha256": "0" * 64,
        "fingerprint": "f" * 64,
        "state": "processed",
    }
    message = {"id": "m-1", "source": "portal", "channel": "sms", "status": "delivered"}
    with engine.begin() as conn:
        conn.execute(t["raw_events"].insert(), raw)
        conn.execute(
            t["messages"].insert(),
            {**message, "provider_status": "DELIVRD", "created_at": T0, "updated_at": T0},
        )
        conn.execute(
            t["message_events"].insert(),
            {
                "message_id": "m-1",
                "raw_event_id": 1,
                "source": "portal",
                "status": "delivered",
                "provider_status": "DELIVRD",
                "received_at": T0,
            },
        )
        conn.execute(
            t["inbound_messages"].insert(),
            {"id": "in-1", "source": "portal", "raw_event_id": 1, "channel": "sms", "received_at": T0},
        )
        conn.execute(
            t["calls"].insert(),
            {"dedupe_key": "k" * 64, "source": "portal", "raw_event_id": 1, "received_at": T0},
        )
    engine.dispose()

    migrate.upgrade(fresh_url)
    engine = make_engine(fresh_url)
    with engine.begin() as conn:
        for table in ("message_events", "inbound_messages", "calls"):
            assert conn.execute(sa.text(f"SELECT origin, raw_event_id FROM {table}")).all() == [
                ("webhook", 1)
            ]
        conn.execute(
            sa.text(
                "INSERT INTO message_events (message_id, source, status, provider_status, received_at, "
                "origin) VALUES ('m-1', '@provider', 'read', 'read', :t, 'pull')"
            ),
            {"t": T0.replace(tzinfo=None)},
        )
        assert conn.execute(sa.text("SELECT count(*) FROM reconcile_runs")).scalar() == 0

    command.downgrade(migrate.alembic_config(fresh_url), "0002")
    with engine.begin() as conn:  # the pulled event goes with the column; the webhook one stays
        assert conn.execute(sa.text("SELECT provider_status FROM message_events")).all() == [("DELIVRD",)]
    engine.dispose()
