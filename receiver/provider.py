"""Adapter: one client for the provider's pull APIs (recordings and the rest).

Every request first takes a slot from a limiter shared by all processes and machines, so that
together they stay under PROVIDER_RATE_LIMIT requests a minute: a sliding window in Redis when
REDIS_URL is set, else PROVIDER_RATE_LIMIT rows in the database, each usable once a minute.
A 429 blocks every process's limiter for its Retry-After. The access token goes only to the
host of PROVIDER_BASE_URL and never into a log or an error message.
"""

from __future__ import annotations

import email.utils
import logging
import time
import uuid
from collections.abc import Iterator, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol, cast

import httpx
import sqlalchemy as sa
from sqlalchemy import orm

from .db import insert_for, utcnow
from .models import ProviderRateSlot

log = logging.getLogger(__name__)

PERIOD = 60.0  # the provider counts requests per minute
MAX_PAGES = 200


class ProviderError(Exception):
    """The provider's API could not answer now; trying later may help."""


class ProviderAuthError(ProviderError):
    """The provider refused the access token (401, or an HTML login page instead of JSON)."""


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

    def __init__(self, url: str, prefix: str, limit: int, period: float = PERIOD) -> None:
        import redis

        self.redis = redis.Redis.from_url(url)
        self.keys = [f"{prefix}:provider:requests", f"{prefix}:provider:blocked-until"]
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
    """PROVIDER_RATE_LIMIT slot rows; taking one is a single conditional UPDATE, safe across processes."""

    def __init__(
        self, sessionmaker: orm.sessionmaker[orm.Session], limit: int, period: float = PERIOD
    ) -> None:
        self.sessionmaker = sessionmaker
        self.limit = limit
        self.period = period
        self._seeded = False

    def _seed(self, session: orm.Session) -> None:
        epoch = datetime(1970, 1, 1, tzinfo=UTC)
        with session.begin():
            session.execute(
                insert_for(session, cast(sa.Table, ProviderRateSlot.__table__))
                .values([{"slot": n, "used_at": epoch} for n in range(self.limit)])
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
            .where(slot.slot < self.limit, slot.used_at <= cutoff)
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
            oldest = session.scalar(sa.select(sa.func.min(slot.used_at)).where(slot.slot < self.limit))
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
            session.execute(sa.update(slot).where(slot.used_at < free_at).values(used_at=free_at))


def _sleep_or_give_up(wait: float, deadline: float) -> None:
    left = deadline - time.monotonic()
    if left <= 0:
        raise RateLimited(f"no request slot free within the wait allowed (next in {wait:.1f} s)")
    time.sleep(min(wait, left, 1.0))


def retry_after(value: str | None, default: float) -> float:
    """Seconds from a Retry-After header (seconds or an HTTP date)."""
    if not value:
        return default
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return default
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - datetime.now(UTC)).total_seconds())


class ProviderClient:
    """GET JSON from the provider's REST API, paced by the shared limiter."""

    def __init__(
        self,
        base_url: str,
        token: str,
        limiter: Limiter,
        *,
        timeout: float = 30.0,
        max_wait: float = 120.0,
        max_429: int = 3,
    ) -> None:
        self.base = httpx.URL(base_url if base_url.endswith("/") else base_url + "/")
        self.limiter = limiter
        self.max_wait = max_wait
        self.max_429 = max_429
        self.client = httpx.Client(
            base_url=self.base,
            timeout=timeout,
            headers={"Authorization": f"Bearer {token}", "Accept": "application/json"},
            follow_redirects=False,
            trust_env=False,
        )

    def close(self) -> None:
        self.client.close()

    def get(self, path: str, params: Mapping[str, Any] | None = None) -> dict[str, Any]:
        """One JSON document; raises ProviderAuthError, RateLimited or ProviderError."""
        url = self.client.build_request("GET", path, params=params).url
        if (url.scheme, url.host, url.port) != (self.base.scheme, self.base.host, self.base.port):
            raise ProviderError(f"refusing to send the access token to {url.host}")
        for _ in range(self.max_429 + 1):
            self.limiter.acquire(self.max_wait)
            try:
                response = self.client.get(url)
            except httpx.TransportError as exc:
                raise ProviderError(f"{url.path}: {type(exc).__name__}") from None
            if response.status_code == 429:
                wait = retry_after(response.headers.get("retry-after"), PERIOD)
                log.warning("provider answered 429 on %s; pausing all requests for %.0f s", url.path, wait)
                self.limiter.block(wait)
                continue
            return _document(response)
        raise RateLimited(f"{url.path}: still 429 after {self.max_429} pauses")

    def paginate(self, path: str, params: Mapping[str, Any] | None = None) -> Iterator[dict[str, Any]]:
        """Every item of `data` across pages (Laravel `links.next` or `meta.last_page`)."""
        page_params = dict(params or {})
        target: str | httpx.URL = path
        for _ in range(MAX_PAGES):
            document = self.get(target, page_params) if isinstance(target, str) else self.get(str(target))
            data = document.get("data") or []
            yield from (item for item in data if isinstance(item, dict))
            links, meta = document.get("links"), document.get("meta")
            links = links if isinstance(links, dict) else {}
            meta = meta if isinstance(meta, dict) else {}
            if links.get("next"):
                target = httpx.URL(str(links["next"]))
                page_params = {}
            elif _int(meta.get("current_page")) < _int(meta.get("last_page")):
                page_params = {**(params or {}), "page": _int(meta.get("current_page")) + 1}
                target = path
            else:
                return
        log.warning("stopped paging %s after %d pages", path, MAX_PAGES)


def _int(value: Any) -> int:
    try:
        return int(value)
    except (TypeError, ValueError):
        return 0


def _document(response: httpx.Response) -> dict[str, Any]:
    path = response.request.url.path
    content_type = response.headers.get("content-type", "")
    body_start = response.content[:512].lstrip().lower()
    if response.status_code == 401:
        raise ProviderAuthError(
            f"{path}: the provider refused PROVIDER_ACCESS_TOKEN (401); check the token "
            "(portal: Developers → API Keys) and its IP allowlist"
        )
    if response.is_redirect or "html" in content_type or body_start.startswith((b"<!doctype", b"<html")):
        raise ProviderAuthError(
            f"{path}: the provider answered HTTP {response.status_code} with an HTML page (a login page?) "
            "instead of JSON; PROVIDER_ACCESS_TOKEN is probably invalid or not allowed from this IP"
        )
    if response.status_code >= 400:
        raise ProviderError(f"{path}: HTTP {response.status_code}")
    try:
        document = response.json()
    except ValueError:
        raise ProviderError(f"{path}: HTTP {response.status_code} with a body that is not JSON") from None
    if not isinstance(document, dict):
        raise ProviderError(f"{path}: expected a JSON object")
    return document


def make_limiter(config: Mapping[str, Any], sessionmaker: orm.sessionmaker[orm.Session]) -> Limiter:
    """Redis when REDIS_URL is set (several machines), else the database."""
    if config.get("REDIS_URL"):
        return RedisLimiter(config["REDIS_URL"], config["REDIS_PREFIX"], config["PROVIDER_RATE_LIMIT"])
    return SqlLimiter(sessionmaker, config["PROVIDER_RATE_LIMIT"])


def make_client(
    config: Mapping[str, Any], limiter: Limiter, max_wait: float = 120.0
) -> ProviderClient | None:
    """A client for the configured provider, or None without PROVIDER_ACCESS_TOKEN."""
    token = config.get("PROVIDER_ACCESS_TOKEN")
    if not token:
        return None
    return ProviderClient(
        config["PROVIDER_BASE_URL"], token, limiter, timeout=config["PROVIDER_TIMEOUT"], max_wait=max_wait
    )
