"""Engines with the settings receiver relies on for each backend: SQLite's pragmas; PostgreSQL's
connect and statement timeouts and keepalives, a pooled connection checked after it sat idle, and
every answer of the database restarting the deadline of the work waiting for it (answering_within
in receiver.db)."""

from __future__ import annotations

import time
from contextvars import ContextVar
from typing import Any

import sqlalchemy as sa
from sqlalchemy import event

from .deadline import Deadline, cooperative


def _sqlite_pragmas(synchronous: str) -> Any:
    def on_connect(dbapi_connection: Any, _record: Any) -> None:
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA busy_timeout=30000")
        cursor.execute(f"PRAGMA synchronous={synchronous}")
        cursor.close()

    return on_connect


def make_engine(
    url: str,
    *,
    pool_size: int = 5,
    sqlite_synchronous: str = "FULL",
    connect_timeout: float = 5.0,
    statement_timeout: float = 0.0,
) -> sa.Engine:
    """Create an engine with the settings receiver relies on for each backend."""
    parsed = sa.make_url(url)
    if parsed.get_backend_name() == "sqlite":
        # No folder or file is made here: an engine connects lazily, and only the migrations
        # create a SQLite database (a command's first check finds a missing one without opening it).
        if sqlite_synchronous.upper() not in {"OFF", "NORMAL", "FULL", "EXTRA"}:
            raise RuntimeError("SQLITE_SYNCHRONOUS must be OFF, NORMAL, FULL or EXTRA")
        engine = sa.create_engine(url, connect_args={"timeout": 30})
        event.listen(engine, "connect", _sqlite_pragmas(sqlite_synchronous.upper()))
        return engine
    engine = sa.create_engine(
        url,
        pool_size=pool_size,
        max_overflow=pool_size * 2,
        connect_args=_postgresql_timeouts(parsed, connect_timeout, statement_timeout),
    )
    _ping_when_idle(engine)
    _restart_deadline_on_answers(engine)
    if parsed.get_driver_name() == "psycopg":
        event.listen(engine, "connect", _keep_prepared)
    if cooperative() and parsed.get_driver_name() == "psycopg":
        from . import pgwait

        pgwait.wait_on_the_loop(engine)
    return engine


def _postgresql_timeouts(url: sa.URL, connect_timeout: float, statement_timeout: float) -> dict[str, Any]:
    """libpq's connect timeout, TCP keepalives and the server's statement timeout.

    Keepalives find a peer that is gone (a dead machine, a dropped route) in about a minute;
    a server that hangs (its kernel still acknowledges them) is the web's deadline's to find
    (`answering_within`). A parameter the URL sets itself is left as it is.
    """
    wanted: dict[str, Any] = {
        "connect_timeout": max(2, round(connect_timeout)),  # whole seconds, at least 2 (libpq)
        "keepalives": 1,
        "keepalives_idle": 30,
        "keepalives_interval": 10,
        "keepalives_count": 3,
    }
    args = {name: value for name, value in wanted.items() if name not in url.query}
    if statement_timeout > 0:
        options = f"-c statement_timeout={round(statement_timeout * 1000)}"
        given = url.query.get("options")
        args["options"] = f"{options} {given}" if isinstance(given, str) else options
    return args


# Statements psycopg keeps prepared on a connection (its default, 100, is fewer than ingest's texts:
# a multi-row INSERT of raw requests, messages and status events for each batch size, the outbox's
# in 7 sizes a type, and the API's; past it, texts evicted and prepared again were parsed and
# planned anew: 10% of ingest's database CPU, docs/benchmarks.md). Bounded: the server keeps a
# plan for each.
PREPARED_MAX = 500


def _keep_prepared(dbapi_connection: Any, _record: Any) -> None:
    dbapi_connection.prepared_max = PREPARED_MAX


# A pooled connection idle this long is checked before use: the database may have restarted or
# dropped it meanwhile. One in steady use is not, which spares a round trip a request; should it
# be dead anyway, its first statement fails, the pool renews every connection, and the request
# tries once more (receiver.db.first_read: the API's key check, /readyz; the webhook's source
# lookup in receiver.ingest.service and its transaction in receiver.ingest.commit).
IDLE_PING_SECONDS = 2.0


def _ping_when_idle(engine: sa.Engine) -> None:
    @event.listens_for(engine, "checkin")
    def idle_from(_dbapi_connection: Any, record: Any) -> None:
        record.info["idle_since"] = time.monotonic()

    @event.listens_for(engine, "checkout")
    def ping_if_idle(dbapi_connection: Any, record: Any, _proxy: Any) -> None:
        idle_since = record.info.pop("idle_since", None)
        if idle_since is None or time.monotonic() - idle_since < IDLE_PING_SECONDS:
            return
        try:
            engine.dialect.do_ping(dbapi_connection)
        except engine.dialect.loaded_dbapi.Error as exc:
            # The database went away (a restart): every pooled connection is as dead as this
            # one. The pool renews them all, then checks out a new one.
            raise sa.exc.InvalidatePoolError(str(exc)) from exc


# The deadline of the database work under way in this greenlet (answering_within), if any.
DEADLINE: ContextVar[Deadline | None] = ContextVar("receiver_db_deadline", default=None)


def _restart_deadline_on_answers(engine: sa.Engine) -> None:
    """Each statement, commit or rollback starts the deadline's count again: it bounds one wait
    for the database, not a request's whole work (a large batch is many quick statements)."""

    def restart(*_args: Any) -> None:
        deadline = DEADLINE.get()
        if deadline is not None:
            deadline.restart()

    for name in ("before_cursor_execute", "after_cursor_execute", "commit", "rollback"):
        event.listen(engine, name, restart)
