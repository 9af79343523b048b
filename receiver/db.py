"""Database wiring: the declarative base, engines, one session per request or job."""

from __future__ import annotations

import functools
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext
from contextvars import ContextVar
from datetime import UTC, datetime
from typing import Any, TypeVar

import sqlalchemy as sa
from flask import Flask, current_app, g
from sqlalchemy import event, orm
from sqlalchemy.dialects import postgresql, sqlite

from .deadline import Deadline
from .errors import Unavailable


class UTCDateTime(sa.types.TypeDecorator[datetime]):
    """A timezone-aware UTC datetime on every database (SQLite keeps naive UTC text)."""

    impl = sa.DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: sa.Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to a UTC column")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: sa.Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


BigId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")

NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(orm.DeclarativeBase):
    metadata = sa.MetaData(naming_convention=NAMING_CONVENTION)
    type_annotation_map = {
        datetime: UTCDateTime(),
        dict[str, Any]: sa.JSON(),
        list[Any]: sa.JSON(),
    }


T = TypeVar("T")


def utcnow() -> datetime:
    return datetime.now(UTC)


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


# A pooled connection idle this long is checked before use: the database may have restarted or
# dropped it meanwhile. One in steady use is not, which spares a round trip a request; should it
# be dead anyway, its first statement fails, the pool renews every connection, and the request
# tries once more (first_read: the webhook's source lookup, the API's key check, /readyz; the
# ingest transaction in receiver.ingest.service).
IDLE_PING_SECONDS = 2.0


def first_read(session: orm.Session, read: Callable[[], T]) -> T:
    """Run a request's first statement; once more should its pooled connection prove dead.

    A connection the database dropped (a restart) fails on its first use; SQLAlchemy then renews
    the pool, so the second try gets a live connection. Nothing was done yet, so nothing is lost.
    """
    try:
        return read()
    except sa.exc.DBAPIError as exc:
        session.rollback()
        if not exc.connection_invalidated:
            raise
    return read()


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
_DEADLINE: ContextVar[Deadline | None] = ContextVar("receiver_db_deadline", default=None)


def _restart_deadline_on_answers(engine: sa.Engine) -> None:
    """Each statement, commit or rollback starts the deadline's count again: it bounds one wait
    for the database, not a request's whole work (a large batch is many quick statements)."""

    def restart(*_args: Any) -> None:
        deadline = _DEADLINE.get()
        if deadline is not None:
            deadline.restart()

    for name in ("before_cursor_execute", "after_cursor_execute", "commit", "rollback"):
        event.listen(engine, name, restart)


@contextmanager
def answering_within(session: orm.Session, seconds: float) -> Iterator[None]:
    """Give up on a database that stops answering: no wait of the block for a connection, a
    statement or a commit may last more than `seconds`.

    Past it, the session's connection is dropped without a word to the server (invalidated: no
    rollback sent to a server that would not answer it) and `Unavailable` is raised, which the
    web answers 503 with Retry-After; the transaction was not committed. Under the web's gevent
    worker only (receiver.deadline): elsewhere the connect and statement timeouts bound waits.
    """
    deadline = Deadline(seconds)
    token = _DEADLINE.set(deadline)
    try:
        with deadline:
            yield
    finally:
        _DEADLINE.reset(token)
    if deadline.expired:
        session.invalidate()
        raise Unavailable(f"the database did not answer within {seconds:g} s")


def insert_for(session: orm.Session, table: sa.Table) -> Any:
    """An INSERT that supports ON CONFLICT on the session's dialect (PostgreSQL or SQLite)."""
    name = session.get_bind().dialect.name
    if name == "postgresql":
        return postgresql.insert(table)
    if name == "sqlite":
        return sqlite.insert(table)
    raise RuntimeError(f"unsupported database: {name}")


@functools.cache
def _insert_new(dialect: str, table: sa.Table, keys: tuple[str, ...]) -> Any:
    dialects = {"postgresql": postgresql, "sqlite": sqlite}
    if dialect not in dialects:
        raise RuntimeError(f"unsupported database: {dialect}")
    (primary_key,) = table.primary_key.columns
    return (
        dialects[dialect]
        .insert(table)
        .on_conflict_do_nothing(index_elements=list(keys))
        .returning(primary_key)
    )


def insert_new(session: orm.Session, table: Any, values: dict[str, Any], keys: list[str]) -> Any:
    """INSERT ... ON CONFLICT (keys) DO NOTHING: the new row's primary key, or None if it existed.

    The statement is built once per table and key, and the values go as execution parameters,
    which spares building and compiling a statement on every webhook.
    """
    statement = _insert_new(session.get_bind().dialect.name, table, tuple(keys))
    return session.execute(statement, values).scalar_one_or_none()


_SQLITE_WRITER = threading.Lock()


def local_writer(session: orm.Session) -> AbstractContextManager[Any]:
    """On SQLite, take turns for write transactions within this process.

    SQLite has one writer at a time; threads that queue on a lock get it as soon as it is free,
    where SQLite's busy handler would sleep them 1, 2, 5 ... 100 ms between tries. Other
    processes still wait through the busy handler. On PostgreSQL this does nothing.
    """
    if session.get_bind().dialect.name == "sqlite":
        return _SQLITE_WRITER
    return nullcontext()


class Database:
    """The engine and session factory of one app; `session` is per request or per job."""

    def __init__(self) -> None:
        self.engine: sa.Engine | None = None
        self.sessionmaker: orm.sessionmaker[orm.Session] | None = None
        self.read_sessionmaker: orm.sessionmaker[orm.Session] | None = None

    def init_app(self, app: Flask) -> None:
        self.engine = make_engine(
            app.config["DATABASE_URL"],
            pool_size=app.config["DB_POOL_SIZE"],
            sqlite_synchronous=app.config["SQLITE_SYNCHRONOUS"],
            connect_timeout=app.config["DB_CONNECT_TIMEOUT"],
            statement_timeout=app.config["DB_STATEMENT_TIMEOUT"],
        )
        self.sessionmaker = orm.sessionmaker(self.engine, expire_on_commit=False)
        self.read_sessionmaker = orm.sessionmaker(
            self.engine.execution_options(isolation_level="AUTOCOMMIT"), expire_on_commit=False
        )
        app.extensions["receiver.db"] = self
        app.teardown_appcontext(_close_session)

    @contextmanager
    def new_session(self) -> Iterator[orm.Session]:
        """A session of its own, for jobs and commands; closed (and rolled back) at the end."""
        assert self.sessionmaker is not None, "init_app was not called"
        with self.sessionmaker() as session:
            yield session

    @contextmanager
    def read_session(self) -> Iterator[orm.Session]:
        """A session for a quick read outside any transaction (autocommit: no BEGIN, no ROLLBACK);
        its connection goes back to the pool when the block ends. Its objects stay readable."""
        assert self.read_sessionmaker is not None, "init_app was not called"
        with self.read_sessionmaker() as session:
            yield session


def get_db() -> Database:
    db: Database = current_app.extensions["receiver.db"]
    return db


def get_session() -> orm.Session:
    """The session of the current request, created on first use."""
    if "db_session" not in g:
        factory = get_db().sessionmaker
        assert factory is not None
        g.db_session = factory()
    session: orm.Session = g.db_session
    return session


def _close_session(_exc: BaseException | None) -> None:
    session = g.pop("db_session", None)
    if session is not None:
        session.close()
