"""A `limits` storage in receiver's own database, for the sign-in rate limit without Redis.

Flask-Limiter keeps its counters in a `limits` storage. Its in-memory one is per process, so with
several gunicorn workers each would allow the full rate; with REDIS_URL set the counters are in
Redis, and without it here, in the `rate_counters` table, which every process (and every machine
on PostgreSQL) shares. Each hit is one atomic upsert: a window's count starts again once expired.
Fixed windows only (the strategy the console asks for).
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import sqlalchemy as sa
from limits.storage import Storage
from sqlalchemy.dialects import postgresql, sqlite

from ..db import utcnow
from ..models import RateCounter

SCHEME = "receiver-db"


class DatabaseStorage(Storage):
    """Counters in the `rate_counters` table of the engine given as the `engine` option."""

    STORAGE_SCHEME = [SCHEME]

    def __init__(self, uri: str | None = None, wrap_exceptions: bool = False, **options: Any) -> None:
        super().__init__(uri, wrap_exceptions=wrap_exceptions)
        self.engine: sa.Engine = options["engine"]

    @property
    def base_exceptions(self) -> type[Exception]:
        return sa.exc.SQLAlchemyError

    def _insert(self) -> Any:
        dialect = {"postgresql": postgresql, "sqlite": sqlite}[self.engine.dialect.name]
        return dialect.insert(RateCounter.__table__)

    def incr(self, key: str, expiry: int, amount: int = 1) -> int:
        now = utcnow()
        insert = self._insert().values(key=key, count=amount, expires_at=now + timedelta(seconds=expiry))
        table = insert.excluded
        current = RateCounter.__table__.c
        expired = current.expires_at <= now
        statement = insert.on_conflict_do_update(
            index_elements=["key"],
            set_={
                "count": sa.case((expired, table["count"]), else_=current["count"] + amount),
                "expires_at": sa.case((expired, table.expires_at), else_=current.expires_at),
            },
        ).returning(current["count"])
        with self.engine.begin() as connection:
            return int(connection.execute(statement).scalar_one())

    def _live(self, key: str) -> Any:
        with self.engine.connect() as connection:
            return connection.execute(
                sa.select(RateCounter.count, RateCounter.expires_at).where(
                    RateCounter.key == key, RateCounter.expires_at > utcnow()
                )
            ).one_or_none()

    def get(self, key: str) -> int:
        row = self._live(key)
        return 0 if row is None else int(row.count)

    def get_expiry(self, key: str) -> float:
        row = self._live(key)
        return (row.expires_at if row is not None else utcnow()).timestamp()

    def check(self) -> bool:
        with self.engine.connect() as connection:
            connection.execute(sa.select(1))
        return True

    def reset(self) -> int | None:
        with self.engine.begin() as connection:
            return int(connection.execute(sa.delete(RateCounter)).rowcount)

    def clear(self, key: str) -> None:
        with self.engine.begin() as connection:
            connection.execute(sa.delete(RateCounter).where(RateCounter.key == key))

    def purge_expired(self) -> None:
        """Drop counters whose window is over (called now and then; they are dead weight)."""
        with self.engine.begin() as connection:
            connection.execute(sa.delete(RateCounter).where(RateCounter.expires_at <= utcnow()))
