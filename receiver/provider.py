"""Adapter: one client for the provider's pull APIs (recordings, reconciliation).

Every request first takes a slot from the limiters of receiver.provider_limits, shared by all
processes and machines: the endpoint's own bucket where the provider limits it on its own
(`vmn/logs`), then the account's (PROVIDER_RATE_LIMIT a minute). A 429 blocks the bucket for
its Retry-After; a 5xx or a lost connection is tried again after a pause that doubles each time
(or the Retry-After given). Paged answers are Laravel paginators whose `links` carry `?page=N`
alone, without the filters: every page is asked for with the filters again, never by following
`links.next`. The access token goes only to the host of PROVIDER_BASE_URL and never into a log
or an error message.
"""

from __future__ import annotations

import email.utils
import logging
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, TypeVar

import httpx
from sqlalchemy import orm

from .provider_limits import (
    PERIOD,
    Limiter,
    ProviderError,
    RateLimited,
    RedisLimiter,
    SqlLimiter,
)

__all__ = [
    "Limiter",
    "Page",
    "ProviderAuthError",
    "ProviderClient",
    "ProviderError",
    "RateLimited",
    "RedisLimiter",
    "SqlLimiter",
    "make_client",
    "make_limiter",
    "retry_after",
]

log = logging.getLogger(__name__)

MAX_PAGES = 200  # the most pages `paginate` reads (the recordings fallback's bound)
MAX_PAUSE = 60.0  # the longest pause before trying a failed request again
# Endpoints the provider limits on their own, beside the account's limit: path -> (bucket, per minute).
OWN_LIMITS = {"vmn/logs": ("vmn", 30)}


class ProviderAuthError(ProviderError):
    """The provider refused the access token (401, or an HTML login page instead of JSON)."""


D = TypeVar("D")


def retry_after(value: str | None, default: D) -> float | D:
    """Seconds from a Retry-After header (seconds or an HTTP date); `default` when it gives none.
    The one reading of the header, for the provider's answers and forwarding's destinations."""
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


@dataclass
class Page:
    """One page of a paged answer: its items, and what it says about the pages after it."""

    number: int
    items: list[dict[str, Any]]
    last: int | None  # the last page's number, when the answer gives it
    has_next: bool
    next_number: int


class ProviderClient:
    """GET JSON from the provider's REST API, paced by the shared limiters."""

    def __init__(
        self,
        base_url: str,
        token: str,
        limiter: Limiter,
        *,
        timeout: float = 30.0,
        max_wait: float = 120.0,
        max_429: int = 3,
        max_retries: int = 4,
        pause: float = 1.0,
        own_limiters: Mapping[str, Limiter] | None = None,
    ) -> None:
        self.base = httpx.URL(base_url if base_url.endswith("/") else base_url + "/")
        self.limiter = limiter
        self.own_limiters = dict(own_limiters or {})
        self.max_wait = max_wait
        self.max_429 = max_429
        self.max_retries = max_retries
        self.pause = pause
        self.client = httpx.Client(
            base_url=self.base,
            timeout=timeout,
            headers={"Authorization": f"Bearer {token}", "Accept": "application/json"},
            follow_redirects=False,
            trust_env=False,
            limits=httpx.Limits(max_connections=32, max_keepalive_connections=32),
        )

    def close(self) -> None:
        self.client.close()

    def _limiters(self, path: str) -> list[Limiter]:
        own = [limiter for prefix, limiter in self.own_limiters.items() if path.startswith(prefix)]
        return [*own, self.limiter]

    def _pause(self, failures: int, header: str | None) -> float:
        return min(retry_after(header, self.pause * 2 ** (failures - 1)), MAX_PAUSE, self.max_wait)

    def get(self, path: str, params: Mapping[str, Any] | None = None) -> dict[str, Any]:
        """One JSON document; raises ProviderAuthError, RateLimited or ProviderError."""
        url = self.client.build_request("GET", path, params=params).url
        if (url.scheme, url.host, url.port) != (self.base.scheme, self.base.host, self.base.port):
            raise ProviderError(f"refusing to send the access token to {url.host}")
        limiters = self._limiters(path)
        pauses = failures = 0
        while True:
            for limiter in limiters:
                limiter.acquire(self.max_wait)
            try:
                response = self.client.get(url)
            except httpx.TransportError as exc:
                failures += 1
                if failures > self.max_retries:
                    raise ProviderError(f"{url.path}: {type(exc).__name__} after {failures} tries") from None
                time.sleep(self._pause(failures, None))
                continue
            if response.status_code == 429:
                pauses += 1
                if pauses > self.max_429:
                    raise RateLimited(f"{url.path}: still 429 after {self.max_429} pauses")
                wait = retry_after(response.headers.get("retry-after"), PERIOD)
                log.warning("provider answered 429 on %s; pausing its requests for %.0f s", url.path, wait)
                limiters[0].block(wait)
                continue
            if response.status_code >= 500:
                failures += 1
                if failures > self.max_retries:
                    raise ProviderError(f"{url.path}: HTTP {response.status_code} after {failures} tries")
                wait = self._pause(failures, response.headers.get("retry-after"))
                log.warning(
                    "provider answered %d on %s; trying again in %.1f s", response.status_code, url.path, wait
                )
                time.sleep(wait)
                continue
            return _document(response)

    def page(self, path: str, params: Mapping[str, Any], number: int = 1) -> Page:
        """Page `number` of a paged answer, asked for with the filters `params`."""
        query = dict(params) if number == 1 else {**params, "page": number}
        document = self.get(path, query)
        data = document.get("data") or []
        links, meta = document.get("links"), document.get("meta")
        links = links if isinstance(links, dict) else {}
        meta = meta if isinstance(meta, dict) else {}
        last = _int(meta.get("last_page")) or None
        following = links.get("next")
        next_number = _page_of(following) or number + 1
        has_next = bool(following) or (last is not None and number < last)
        items = [item for item in data if isinstance(item, dict)] if isinstance(data, list) else []
        return Page(number, items, last, has_next and bool(items), next_number)

    def paginate(self, path: str, params: Mapping[str, Any] | None = None) -> Iterator[dict[str, Any]]:
        """Every item of `data` across pages, each page asked for with the filters again."""
        number = 1
        for _ in range(MAX_PAGES):
            page = self.page(path, params or {}, number)
            yield from page.items
            if not page.has_next:
                return
            number = page.next_number
        log.warning("stopped paging %s after %d pages", path, MAX_PAGES)


def _page_of(link: Any) -> int:
    """The `page` a Laravel `links.next` URL names (0 when it names none)."""
    if not isinstance(link, str) or not link:
        return 0
    try:
        return _int(httpx.URL(link).params.get("page"))
    except (httpx.InvalidURL, ValueError):
        return 0


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


def make_limiter(
    config: Mapping[str, Any], sessionmaker: orm.sessionmaker[orm.Session], bucket: str = "", limit: int = 0
) -> Limiter:
    """Redis when REDIS_URL is set (several machines), else the database; the account's bucket
    unless `bucket` (with its own `limit`) is named."""
    limit = limit or config["PROVIDER_RATE_LIMIT"]
    if config.get("REDIS_URL"):
        return RedisLimiter(config["REDIS_URL"], config["REDIS_PREFIX"], limit, bucket=bucket)
    return SqlLimiter(sessionmaker, limit, bucket=bucket)


def make_client(
    config: Mapping[str, Any],
    limiter: Limiter,
    max_wait: float = 120.0,
    sessionmaker: orm.sessionmaker[orm.Session] | None = None,
) -> ProviderClient | None:
    """A client for the configured provider, or None without PROVIDER_ACCESS_TOKEN.

    With `sessionmaker`, endpoints with a limit of their own (`vmn/logs`) get their own bucket too.
    """
    token = config.get("PROVIDER_ACCESS_TOKEN")
    if not token:
        return None
    own = {}
    if sessionmaker is not None:
        own = {
            path: make_limiter(config, sessionmaker, bucket, limit)
            for path, (bucket, limit) in OWN_LIMITS.items()
        }
    return ProviderClient(
        config["PROVIDER_BASE_URL"],
        token,
        limiter,
        timeout=config["PROVIDER_TIMEOUT"],
        max_wait=max_wait,
        own_limiters=own,
    )
