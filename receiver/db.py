"""Database wiring: the declarative base, one session per request or job, and the statements
every backend must write its own way (INSERT ... ON CONFLICT). Engines: receiver.engine."""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, TypeVar

import sqlalchemy as sa
from flask import Flask, current_app, g
from sqlalchemy import orm
from sqlalchemy.dialects import postgresql, sqlite

from .deadline import Deadline
from .engine import DEADLINE, make_engine
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

    def bind_processor(self, dialect: sa.Dialect) -> Callable[[datetime | None], Any] | None:
        """On SQLite, the text SQLite's DATETIME writes (`YYYY-MM-DD HH:MM:SS.ffffff`, UTC) in one
        step: SQLAlchemy's way, this type's conversion then DATETIME's `%`-format, was 4% of a
        webhook's CPU (docs/benchmarks.md). Elsewhere, SQLAlchemy's way."""
        if dialect.name != "sqlite":
            return super().bind_processor(dialect)

        def process(value: datetime | None) -> str | None:
            utc = self.process_bind_param(value, dialect)
            return None if utc is None else utc.isoformat(" ", "microseconds")

        return process

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


def answering_within(session: orm.Session, seconds: float) -> AbstractContextManager[None]:
    """Give up on a database that stops answering: no wait of the block for a connection, a
    statement or a commit may last more than `seconds`.

    Past it, the session's connection is dropped without a word to the server (invalidated: no
    rollback sent to a server that would not answer it) and `Unavailable` is raised, which the
    web answers 503 with Retry-After; the transaction was not committed. Under the web's gevent
    worker only (receiver.deadline): elsewhere the connect and statement timeouts bound waits.
    """
    return within_deadline(seconds, session.invalidate)


@contextmanager
def within_deadline(seconds: float, drop: Callable[[], None]) -> Iterator[None]:
    """`answering_within` for any database work: past the deadline, `drop` its connections."""
    deadline = Deadline(seconds)
    token = DEADLINE.set(deadline)
    try:
        with deadline:
            yield
    finally:
        DEADLINE.reset(token)
    if deadline.expired:
        drop()
        raise Unavailable(f"the database did not answer within {seconds:g} s")


# INSERT ... ON CONFLICT is written by each dialect's own insert().
_INSERTS = {"postgresql": postgresql.insert, "sqlite": sqlite.insert}


def insert_for(bind: orm.Session | sa.Connection, table: sa.Table) -> Any:
    """An INSERT that supports ON CONFLICT on the dialect of `bind` (PostgreSQL or SQLite)."""
    dialect = bind.get_bind().dialect if isinstance(bind, orm.Session) else bind.dialect
    return _dialect_insert(dialect.name, table)


def _dialect_insert(dialect: str, table: sa.Table) -> Any:
    if dialect not in _INSERTS:
        raise RuntimeError(f"unsupported database: {dialect}")
    return _INSERTS[dialect](table)


@functools.cache
def _insert_new_returning(
    dialect: str, table: sa.Table, keys: tuple[str, ...], returning: tuple[str, ...]
) -> Any:
    return (
        _dialect_insert(dialect, table)
        .on_conflict_do_nothing(index_elements=list(keys))
        .returning(*(table.c[name] for name in returning))
    )


def insert_new_rows(
    bind: orm.Session | sa.Connection,
    table: Any,
    rows: list[dict[str, Any]],
    keys: list[str],
    returning: list[str],
) -> list[sa.Row[Any]]:
    """INSERT ... ON CONFLICT (keys) DO NOTHING of many rows (all with the same columns), at most
    PAGE a statement: the `returning` columns of the rows that were new, in no set order, as the
    driver gives them (no result processing: ids and text).

    What SQLAlchemy's executemany would store, without its execution context per row (an eighth
    of a webhook's CPU, docs/benchmarks.md): the values go through the columns' own type
    processors, and the columns' defaults are filled in. A page is padded with its last row up to
    a few sizes (`padded`): the padding is the same key again, which ON CONFLICT DO NOTHING skips,
    so a table has a dozen texts, each compiled once a process, rather than one for every count
    (compiling one for hundreds of rows takes longer than the webhook)."""
    if not rows:
        return []
    connection = bind.connection() if isinstance(bind, orm.Session) else bind
    shape = _RowsInsert.of(connection.dialect, table, tuple(keys), tuple(returning), tuple(rows[0]))
    found: list[sa.Row[Any]] = []
    for start in range(0, len(rows), PAGE):
        found += connection.exec_driver_sql(*shape.statement(rows[start : start + PAGE]))
    return found


# Rows an INSERT of insert_new_rows takes at most: ~2,000 parameters for our widest table.
PAGE = 64


def padded(count: int) -> int:
    """The rows a statement for `count` rows names: the next power of two up to 8, then the next
    multiple of 8 (at most 7 repeated rows past 8)."""
    return 1 << (count - 1).bit_length() if count <= 8 else -(-count // 8) * 8


@dataclass(frozen=True)
class _RowsInsert:
    """The multi-row INSERT ... ON CONFLICT DO NOTHING of one table, key and set of columns."""

    insert: Any  # the statement without its VALUES
    dialect: sa.Dialect
    given: tuple[str, ...]  # the rows' columns
    defaulted: tuple[tuple[str, Callable[[], Any]], ...]  # other columns with a default of ours
    columns: tuple[str, ...]  # given then defaulted: a row's parameters in order
    processors: tuple[Callable[[Any], Any] | None, ...]  # each column's, given then defaulted
    texts: dict[int, tuple[str, list[str], list[int] | None]] = field(default_factory=dict)

    @classmethod
    @functools.cache
    def of(
        cls,
        dialect: sa.Dialect,
        table: sa.Table,
        keys: tuple[str, ...],
        returning: tuple[str, ...],
        given: tuple[str, ...],
    ) -> _RowsInsert:
        defaulted = tuple(
            (column.key, _default_of(column))
            for column in table.columns
            if column.key not in given and column.default is not None
        )
        columns = (*given, *(name for name, _ in defaulted))
        return cls(
            insert=_insert_new_returning(dialect.name, table, keys, returning),
            dialect=dialect,
            given=given,
            defaulted=defaulted,
            columns=columns,
            # What SQLAlchemy does to a column's value before the driver has it.
            processors=tuple(
                table.c[name].type.dialect_impl(dialect).bind_processor(dialect) for name in columns
            ),
        )

    def statement(self, rows: list[dict[str, Any]]) -> tuple[str, Any]:
        """The text for as many rows (padded), and its parameters in the driver's style."""
        size = padded(len(rows))
        text, names, order = self._compiled(size)
        values: list[Any] = []
        for row in rows:
            try:
                given = [row[name] for name in self.given] + [default() for _, default in self.defaulted]
                values += [
                    value if convert is None else convert(value)
                    for value, convert in zip(given, self.processors, strict=True)
                ]
            except Exception as exc:  # as SQLAlchemy reports a value it cannot bind
                raise sa.exc.StatementError(
                    f"a row for {self.insert.table.name} cannot be bound: {exc!r}", text, None, exc
                ) from exc
        width = len(self.columns)
        values += values[-width:] * (size - len(rows))
        if order is not None:
            return text, tuple(values[index] for index in order)
        return text, dict(zip(names, values, strict=True))

    def _compiled(self, count: int) -> tuple[str, list[str], list[int] | None]:
        """The text for `count` rows; its parameters' names row by row; for a positional driver,
        where each of its parameters is in that list. Compiled once (a race compiles it twice)."""
        known = self.texts.get(count)
        if known is not None:
            return known
        table = self.insert.table
        names = [f"r{index}c{column}" for index in range(count) for column in range(len(self.columns))]
        rows = [
            {
                name: sa.bindparam(f"r{index}c{column}", type_=table.c[name].type)
                for column, name in enumerate(self.columns)
            }
            for index in range(count)
        ]
        compiled = self.insert.values(rows).compile(dialect=self.dialect)
        order = None
        if compiled.positional:
            place = {name: index for index, name in enumerate(names)}
            order = [place[name] for name in compiled.positiontup]
        self.texts[count] = (compiled.string, names, order)
        return self.texts[count]


def _default_of(column: sa.Column[Any]) -> Callable[[], Any]:
    """A column's Python-side default as a function of nothing (ours: constants and utcnow)."""
    default: Any = column.default
    if default.is_scalar:
        return lambda: default.arg
    if default.is_callable:
        return lambda: default.arg(None)  # SQLAlchemy's wrapper: it takes an execution context
    raise NotImplementedError(f"default of {column}: {default!r}")


def insert_new(connection: sa.Connection, table: Any, values: dict[str, Any], keys: list[str]) -> Any:
    """INSERT ... ON CONFLICT (keys) DO NOTHING: the new row's primary key, or None if it existed.

    The statement is built once per table and key, and the values go as execution parameters,
    which spares building and compiling a statement on every webhook.
    """
    (primary_key,) = table.primary_key.columns
    statement = _insert_new_returning(connection.dialect.name, table, tuple(keys), (primary_key.key,))
    return connection.execute(statement, values).scalar_one_or_none()


class Database:
    """The engine and session factory of one app; `session` is per request or per job."""

    def __init__(self) -> None:
        self.engine: sa.Engine | None = None
        self.sessionmaker: orm.sessionmaker[orm.Session] | None = None

    def init_app(self, app: Flask) -> None:
        self.engine = make_engine(
            app.config["DATABASE_URL"],
            pool_size=app.config["DB_POOL_SIZE"],
            sqlite_synchronous=app.config["SQLITE_SYNCHRONOUS"],
            connect_timeout=app.config["DB_CONNECT_TIMEOUT"],
            statement_timeout=app.config["DB_STATEMENT_TIMEOUT"],
        )
        self.sessionmaker = orm.sessionmaker(self.engine, expire_on_commit=False)
        app.extensions["receiver.db"] = self
        app.teardown_appcontext(_close_session)

    @contextmanager
    def new_session(self) -> Iterator[orm.Session]:
        """A session of its own, for jobs and commands; closed (and rolled back) at the end."""
        assert self.sessionmaker is not None, "init_app was not called"
        with self.sessionmaker() as session:
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
