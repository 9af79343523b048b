"""A database connection lost under ingest or the read API (PostgreSQL restarted, or a backend
killed) loses no webhook and costs no error answer: the pool renews its connections and the
request tries again.

PostgreSQL only: a SQLite "connection" is a file handle in the process and cannot be dropped.
"""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest
import sqlalchemy as sa
from flask import Flask

from receiver.models import RawState

from .conftest import raw_events, row_counts
from .payloads import sms


@pytest.fixture
def admin(app: Flask) -> Iterator[sa.Connection]:
    """A connection of the test's own, outside the app's pool, to kill the app's backends."""
    engine = app.extensions["receiver.db"].engine
    if engine.dialect.name != "postgresql":
        pytest.skip("only a PostgreSQL connection can be lost; SQLite has none")
    admin_engine = sa.create_engine(engine.url, isolation_level="AUTOCOMMIT", poolclass=sa.NullPool)
    with admin_engine.connect() as connection:
        yield connection
    admin_engine.dispose()


def kill_app_connections(admin: sa.Connection) -> int:
    """Terminate every other backend of this database: the app's pooled connections."""
    return len(
        admin.execute(
            sa.text(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                " WHERE datname = current_database() AND pid <> pg_backend_pid()"
            )
        ).all()
    )


def test_connections_killed_between_webhooks_in_steady_use(hooks, app, admin):
    """A connection in steady use is not pinged; its death shows on the next webhook's first
    statement, which is tried again on a new connection."""
    assert hooks.post(sms(id="loss:1", status="SUBMITTED")).status_code == 200
    assert kill_app_connections(admin) >= 1

    response = hooks.post(sms(id="loss:1", status="DELIVRD"))

    assert response.status_code == 200
    assert response.get_json()["message"] == "stored"
    assert row_counts(app)["message_events"] == 2


def statement_errors(app: Flask) -> list[BaseException]:
    """Every error a statement of the app's engine raises from now on."""
    errors: list[BaseException] = []
    sa.event.listen(
        app.extensions["receiver.db"].engine,
        "handle_error",
        lambda context: errors.append(context.original_exception),
    )
    return errors


def test_an_idle_connection_is_pinged_and_replaced(hooks, app, admin, monkeypatch):
    """The ping finds the dead connection before any statement runs on it: no retry needed."""
    monkeypatch.setattr("receiver.engine.IDLE_PING_SECONDS", 0.0)
    assert hooks.post(sms(id="idle:1")).status_code == 200
    assert kill_app_connections(admin) >= 1
    errors = statement_errors(app)

    response = hooks.post(sms(id="idle:2"))

    assert response.status_code == 200
    assert errors == []
    assert row_counts(app)["messages"] == 2


def test_a_failed_ping_renews_the_whole_pool(hooks, api, app, admin, monkeypatch):
    """After a restart every pooled connection is dead, including those used too recently to
    be pinged: the first failed ping renews them all. A CSV export (the key check's connection,
    then one of its own) shows it."""
    monkeypatch.setattr("receiver.engine.IDLE_PING_SECONDS", 1.0)
    assert hooks.post(sms(id="pool:1")).status_code == 200
    engine = app.extensions["receiver.db"].engine
    first, second = engine.connect(), engine.connect()
    first.exec_driver_sql("SELECT 1")
    second.exec_driver_sql("SELECT 1")
    first.close()  # back in the pool first: checked out first, and pinged
    time.sleep(1.2)
    second.close()  # too recent to be pinged
    assert kill_app_connections(admin) >= 2
    errors = statement_errors(app)

    response = api("/api/v1/messages?format=csv")

    assert response.status_code == 200
    assert "pool:1" in response.get_data(as_text=True)
    assert errors == []


def test_readiness_survives_the_connections_being_killed(client, admin):
    assert client.get("/readyz").status_code == 200
    assert kill_app_connections(admin) >= 1

    assert client.get("/readyz").status_code == 200


def test_a_connection_lost_inside_the_ingest_transaction_is_tried_again(hooks, app, admin):
    """The backend dies while storing (a trigger terminates it, once: a sequence is not rolled
    back): the transaction is lost whole, the second try stores the webhook once."""
    admin.execute(sa.text("CREATE SEQUENCE kill_once"))
    admin.execute(
        sa.text(
            "CREATE FUNCTION kill_once() RETURNS trigger AS $$ BEGIN "
            "IF nextval('kill_once') = 1 THEN PERFORM pg_terminate_backend(pg_backend_pid()); END IF; "
            "RETURN NEW; END $$ LANGUAGE plpgsql"
        )
    )
    admin.execute(
        sa.text(
            "CREATE TRIGGER kill_once BEFORE INSERT ON messages FOR EACH ROW EXECUTE FUNCTION kill_once()"
        )
    )
    try:
        response = hooks.post(sms(id="mid:1"))
        tries = admin.scalar(sa.text("SELECT last_value FROM kill_once"))
    finally:
        admin.execute(sa.text("DROP TRIGGER IF EXISTS kill_once ON messages"))
        admin.execute(sa.text("DROP FUNCTION IF EXISTS kill_once()"))
        admin.execute(sa.text("DROP SEQUENCE IF EXISTS kill_once"))

    assert tries == 2
    assert response.status_code == 200
    assert response.get_json()["message"] == "stored"
    (raw,) = raw_events(app)
    assert raw.state == RawState.processed
    assert row_counts(app)["messages"] == 1


def test_the_read_api_survives_its_connections_being_killed(hooks, api, admin):
    assert hooks.post(sms(id="api:1")).status_code == 200
    assert api("/api/v1/messages/api:1").status_code == 200
    assert kill_app_connections(admin) >= 1

    response = api("/api/v1/messages/api:1")

    assert response.status_code == 200
    assert response.get_json()["id"] == "api:1"
