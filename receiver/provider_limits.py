"""Request slots for the provider's API, shared by every process and machine.

A sliding one-minute window in Redis when REDIS_URL is set, else a set of slot rows in the
database, each usable once a minute. A limiter has a bucket: the shared one (PROVIDER_RATE_LIMIT
requests a minute for the whole account) and one per endpoint the provider limits on its own
(`vmn/logs`: 30 a minute). A 429 blocks the bucket it came from for its Retry-After.
"""

from __future__ import annotations

import time
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol, cast

import sqlalchemy as sa
from sqlalchemy import orm

from .db import insert_for, utcnow
from .models import ProviderRateSlot

PERIOD = 60.0  # the provider counts requests per minute
# Slot rows of an endpoint's own bucket are numbered from its base, far above any shared limit.
BUCKET_SLOT_BASE = {"": 0, "vmn": 1_000_000}


class ProviderError(Exception):
    """The provider's API could not answer now; trying later may help."""


class RateLimited(ProviderError):
    """No request slot within the time the caller is willing to wait."""


class Limiter(Protocol):
    def acquire(self, max_wait: float) -> None: ...

    def block(self, seconds: float) -> None: ...


_REDIS_ACQUIRE = """
local now_parts = redis.call('TIME')
local now = tonumber(now_parts[1]) + tonumber(now_parts[2]) / 1000000
local period = tonumber(ARGV[1])
local limit = tonumber(ARGV[2])
local blocked = tonumber(redis.call('GET', KEYS[2]) or '0')
if blocked > now then
  return tostring(blocked - now)
end
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - period)
if redis.call('ZCARD', KEYS[1]) < limit then
  redis.call('ZADD', KEYS[1], now, ARGV[3])
  redis.call('PEXPIRE', KEYS[1], math.ceil(period * 1000))
  return '0'
end
local oldest = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
return tostring(tonumber(oldest[2]) + period - now)
"""

_REDIS_BLOCK = """
local now_parts = redis.call('TIME')
local now = tonumber(now_parts[1]) + tonumber(now_parts[2]) / 1000000
local until_ = now + tonumber(ARGV[1])
local current = tonumber(redis.call('GET', KEYS[1]) or '0')
if until_ > current then
  redis.call('SET', KEYS[1], tostring(until_), 'PX', math.ceil(tonumber(ARGV[1]) * 1000) + 1000)
end
return 1
"""


class RedisLimiter:
    """A sliding one-minute window in a Redis sorted set, timed by the Redis server's clock."""

    def __init__(self, url: str, prefix: str, limit: int, period: float = PERIOD, bucket: str = "") -> None:
        import redis

        self.redis = redis.Redis.from_url(url)
        base = f"{prefix}:provider:{bucket}:" if bucket else f"{prefix}:provider:"
        self.keys = [f"{base}requests", f"{base}blocked-until"]
        self.limit = limit
        self.period = period
        self._acquire = self.redis.register_script(_REDIS_ACQUIRE)
        self._block = self.redis.register_script(_REDIS_BLOCK)

    def acquire(self, max_wait: float) -> None:
        deadline = time.monotonic() + max_wait
        while True:
            wait = float(self._acquire(keys=self.keys, args=[self.period, self.limit, uuid.uuid4().hex]))
            if wait <= 0:
                return
            _sleep_or_give_up(wait, deadline)

    def block(self, seconds: float) -> None:
        self._block(keys=self.keys[1:], args=[seconds])


class SqlLimiter:
    """`limit` slot rows; taking one is a single conditional UPDATE, safe across processes."""

    def __init__(
        self,
        sessionmaker: orm.sessionmaker[orm.Session],
        limit: int,
        period: float = PERIOD,
        bucket: str = "",
    ) -> None:
        self.sessionmaker = sessionmaker
        self.limit = limit
        self.period = period
        self.first = BUCKET_SLOT_BASE[bucket]
        self._seeded = False

    def _mine(self) -> sa.ColumnElement[bool]:
        slot = ProviderRateSlot.slot
        return sa.and_(slot >= self.first, slot < self.first + self.limit)

    def _seed(self, session: orm.Session) -> None:
        epoch = datetime(1970, 1, 1, tzinfo=UTC)
        with session.begin():
            session.execute(
                insert_for(session, cast(sa.Table, ProviderRateSlot.__table__))
                .values([{"slot": self.first + n, "used_at": epoch} for n in range(self.limit)])
                .on_conflict_do_nothing(index_elements=["slot"])
            )
        self._seeded = True

    def _try(self, session: orm.Session) -> float:
        """Take a free slot (0.0), or say how long until one frees up."""
        now = utcnow()
        cutoff = now - timedelta(seconds=self.period)
        slot = ProviderRateSlot
        mine = (
            sa.select(slot.slot)
            .where(self._mine(), slot.used_at <= cutoff)
            .order_by(slot.used_at)
            .limit(1)
            .scalar_subquery()
        )
        with session.begin():
            taken = cast(
                "sa.CursorResult[Any]",
                session.execute(
                    sa.update(slot).where(slot.slot == mine, slot.used_at <= cutoff).values(used_at=now)
                ),
            ).rowcount
            if taken:
                return 0.0
            oldest = session.scalar(sa.select(sa.func.min(slot.used_at)).where(self._mine()))
        if oldest is None:
            return 0.01  # not seeded yet by anyone
        oldest = oldest if oldest.tzinfo else oldest.replace(tzinfo=UTC)
        return max(0.01, (oldest - cutoff).total_seconds())

    def acquire(self, max_wait: float) -> None:
        deadline = time.monotonic() + max_wait
        with self.sessionmaker() as session:
            if not self._seeded:
                self._seed(session)
            while True:
                wait = self._try(session)
                if wait <= 0:
                    return
                _sleep_or_give_up(wait, deadline)

    def block(self, seconds: float) -> None:
        """Make no slot free before `seconds` from now."""
        free_at = utcnow() + timedelta(seconds=seconds - self.period)
        slot = ProviderRateSlot
        with self.sessionmaker() as session, session.begin():
            session.execute(
                sa.update(slot).where(self._mine(), slot.used_at < free_at).values(used_at=free_at)
            )


def _sleep_or_give_up(wait: float, deadline: float) -> None:
    left = deadline - time.monotonic()
    if left <= 0:
        raise RateLimited(f"no request slot free within the wait allowed (next in {wait:.1f} s)")
    time.sleep(min(wait, left, 1.0))
