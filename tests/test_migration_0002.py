"""Migration 0002 on a database holding rows from before it: their numbers get a canonical twin
(with DEFAULT_COUNTRY_CODE from the environment, read as the app reads it), in batches, and keys
keep working as read keys. On SQLite, or on PostgreSQL when TEST_DATABASE_URL is set."""

from __future__ import annotations

import os
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
import sqlalchemy as sa

from receiver import migrate
from receiver.engine import make_engine
from tests.conftest import _postgres_database

T0 = datetime(2026, 1, 1, tzinfo=UTC)
# More rows than the migration's batch (5000), so that the fill takes several batches.
MESSAGES = 10_007


@pytest.fixture
def fresh_url(tmp_path: Path) -> Iterator[str]:
    server = os.environ.get("TEST_DATABASE_URL")
    if server:
        from receiver.config import normalise_database_url

        yield from _postgres_database(normalise_database_url(server))
    else:
        yield f"sqlite:///{tmp_path / 'old.db'}"


def _seed_0001(engine: sa.Engine) -> None:
    """Rows as revision 0001 stored them (no canonical columns yet)."""
    meta = sa.MetaData()
    meta.reflect(engine)
    t = meta.tables
    with engine.begin() as conn:
        conn.execute(
            t["raw_events"].insert(),
            {
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
            },
        )
        mobiles = ["9845012345", "+91 98450-12345", "00919845012345", None, "918921269xxx"]
        conn.execute(
            t["messages"].insert(),
            [
                {
                    "id": f"m-{i:06d}",
                    "source": "portal",
                    "channel": "sms",
                    "mobile": mobiles[i % len(mobiles)] if i < 5 else f"91{7000000000 + i}",
                    "status": "delivered",
                    "provider_status": "DELIVRD",
                    "created_at": T0,
                    "updated_at": T0,
                }
                for i in range(MESSAGES)
            ],
        )
        conn.execute(
            t["inbound_messages"].insert(),
            {
                "id": "in-1",
                "source": "portal",
                "raw_event_id": 1,
                "channel": "sms",
                "from_number": "08074012345",
                "to_number": "700969ca-0cb2-11ec",
                "received_at": T0,
            },
        )
        conn.execute(
            t["calls"].insert(),
            {
                "id": 1,
                "dedupe_key": "k" * 64,
                "source": "portal",
                "raw_event_id": 1,
                "from_number": "918919520000",
                "to_number": "8867130000",
                "received_at": T0,
            },
        )
        conn.execute(
            t["opt_outs"].insert(),
            {
                "id": 1,
                "key": "id:1",
                "source": "portal",
                "raw_event_id": 1,
                "receiver": "7002080000",
                "received_at": T0,
            },
        )
        conn.execute(
            t["api_keys"].insert(),
            {"id": 1, "name": "support", "key_id": "abc", "key_digest": "x$y", "created_at": T0},
        )


def test_upgrade_fills_canonical_numbers_of_stored_rows(fresh_url, monkeypatch):
    monkeypatch.setenv("DEFAULT_COUNTRY_CODE", "44")  # the setting reaches the migration
    migrate.upgrade(fresh_url, "0001")
    engine = make_engine(fresh_url)
    try:
        _seed_0001(engine)
        migrate.upgrade(fresh_url)
        with engine.connect() as conn:
            messages = dict(conn.execute(sa.text("SELECT id, mobile_canonical FROM messages")).all())
            assert len(messages) == MESSAGES
            assert [messages[f"m-{i:06d}"] for i in range(5)] == [
                "449845012345",  # national: the country code of the setting
                "919845012345",
                "919845012345",
                None,
                "918921269xxx",
            ]
            assert messages["m-010006"] == f"91{7000000000 + 10006}"  # the last batch too
            assert sum(value is None for value in messages.values()) == 1  # the one null mobile
            assert conn.execute(
                sa.text("SELECT from_canonical, to_canonical FROM inbound_messages")
            ).one() == (
                "448074012345",
                "700969ca-0cb2-11ec",
            )
            assert conn.execute(sa.text("SELECT from_canonical, to_canonical FROM calls")).one() == (
                "918919520000",
                "448867130000",
            )
            assert conn.execute(sa.text("SELECT number_canonical, channel FROM opt_outs")).one() == (
                "447002080000",
                None,
            )
            assert conn.execute(sa.text("SELECT name, scope FROM api_keys")).one() == ("support", "read")
            assert conn.execute(sa.text("SELECT replays FROM raw_events")).scalar_one() == 0
        index_names = {ix["name"] for ix in sa.inspect(engine).get_indexes("messages")}
        assert "ix_messages_mobile_canonical_created_at_id" in index_names
        assert "ix_messages_mobile_created_at_id" not in index_names
    finally:
        engine.dispose()


def test_downgrade_keeps_revoked_keys_that_share_a_name(fresh_url):
    migrate.upgrade(fresh_url)
    engine = make_engine(fresh_url)
    try:
        with engine.begin() as conn:
            conn.execute(
                sa.text(
                    "INSERT INTO api_keys (name, key_id, key_digest, created_at, revoked_at, scope) "
                    "VALUES ('ops', 'k1', 'x$y', :t, :t, 'read'), ('ops', 'k2', 'x$y', :t, NULL, 'operate')"
                ),
                {"t": T0},
            )
        _downgrade(fresh_url, "0001")
        with engine.connect() as conn:
            names = dict(conn.execute(sa.text("SELECT key_id, name FROM api_keys")).all())
        assert names["k2"] == "ops"
        assert names["k1"].startswith("ops~")
    finally:
        engine.dispose()


def _downgrade(url: str, revision: str) -> None:
    from alembic import command

    command.downgrade(migrate.alembic_config(url), revision)
