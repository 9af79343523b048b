"""Service: webhook sources and API keys. Owns its transactions.

A webhook's checks read its source through `SourceCache`: a source is read from the database at
most once every SOURCE_CACHE_SECONDS (2 by default) in each process, so a secret's rotation or a
source's removal takes effect within that time everywhere.
"""

from __future__ import annotations

import re
import secrets
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import cast

import sqlalchemy as sa
from sqlalchemy import orm
from sqlalchemy.exc import IntegrityError

from . import keys
from .db import utcnow
from .models import ApiKey, ApiScope, Source

NAME_PATTERN = re.compile(r"[a-z0-9][a-z0-9_-]{0,63}")
# A rotated secret's grace period: at most a year (a longer one is hardly a rotation).
MAX_GRACE_HOURS = 24 * 365


# Sources changed by this process (added, rotated, removed): its cached sources are stale at once,
# where other processes' expire within SOURCE_CACHE_SECONDS.
_changes = 0


def callback_url(name: str, public_url: str | None, fallback: str) -> str:
    """The address to register in the portal for source `name`: under PUBLIC_URL when it is set,
    else under `fallback` (the console's own address, or a placeholder for the CLI)."""
    return f"{(public_url or fallback).rstrip('/')}/hooks/{name}"


def _changed() -> None:
    global _changes
    _changes += 1


class SourceError(Exception):
    """A command on sources or keys that cannot be done (name taken, unknown, invalid)."""


@dataclass(frozen=True)
class Credentials:
    name: str
    secret: str


def possible_name(name: str) -> bool:
    """Whether a source or API key may have this name (a URL may carry any text)."""
    return NAME_PATTERN.fullmatch(name) is not None


def _check_name(name: str) -> None:
    if not possible_name(name):
        raise SourceError(f"invalid name {name!r}: use 1 to 64 lower-case letters, digits, '-' or '_'")


def add_source(
    session: orm.Session,
    name: str,
    *,
    secret: str | None = None,
    validation_key: str | None = None,
    signing_key: str | None = None,
) -> Credentials:
    """Create a source; return its secret (generated when not given), which is stored hashed."""
    _check_name(name)
    if secret is not None and len(secret) < 8:
        raise SourceError("a secret must be at least 8 characters long")
    secret = secret or keys.generate_secret()
    source = Source(
        name=name,
        secret_digest=keys.digest(secret),
        validation_key_digest=keys.digest(validation_key) if validation_key else None,
        signing_key=signing_key or None,
    )
    try:
        with session.begin():
            session.add(source)
    except IntegrityError:
        raise SourceError(f"a source named {name!r} exists already") from None
    _changed()
    return Credentials(name, secret)


def list_sources(session: orm.Session) -> list[Source]:
    return list(session.scalars(sa.select(Source).order_by(Source.name)))


def grace_period(hours: float) -> timedelta:
    """How long a rotated secret keeps working: 0 (it stops now) to MAX_GRACE_HOURS."""
    if not 0 <= hours <= MAX_GRACE_HOURS:  # NaN too
        raise SourceError(f"a grace period is 0 to {MAX_GRACE_HOURS} hours, not {hours:g}")
    return timedelta(hours=hours)


def rotate_source(session: orm.Session, name: str, *, grace: timedelta) -> Credentials:
    """Give the source a new secret; the old one keeps working for `grace`."""
    secret = keys.generate_secret()
    now = utcnow()
    with session.begin():
        source = session.scalars(sa.select(Source).where(Source.name == name).with_for_update()).one_or_none()
        if source is None:
            raise SourceError(f"no source named {name!r}")
        source.previous_secret_digest = source.secret_digest
        source.previous_secret_expires_at = now + grace
        source.secret_digest = keys.digest(secret)
        source.rotated_at = now
    _changed()
    return Credentials(name, secret)


def remove_source(session: orm.Session, name: str) -> None:
    """Delete the source: its webhooks are refused from now on; what it delivered stays."""
    with session.begin():
        result = session.execute(sa.delete(Source).where(Source.name == name))
        if result.rowcount == 0:  # type: ignore[attr-defined]
            raise SourceError(f"no source named {name!r}")
    _changed()


@dataclass(frozen=True)
class SourceKeys:
    """What a webhook's checks need of a source, as read from the database."""

    id: int
    name: str
    secret_digest: str
    previous_secret_digest: str | None
    previous_secret_expires_at: datetime | None
    validation_key_digest: str | None
    signing_key: str | None


_SOURCES = cast(sa.Table, Source.__table__)
_SOURCE_KEYS = sa.select(*(_SOURCES.c[name] for name in SourceKeys.__dataclass_fields__)).where(
    _SOURCES.c.name == sa.bindparam("name")
)


def read_source_keys(connection: sa.Connection, name: str) -> SourceKeys | None:
    row = connection.execute(_SOURCE_KEYS, {"name": name}).one_or_none()
    return None if row is None else SourceKeys(**row._mapping)


class SourceCache:
    """Sources by name (and names of none) as read at most `seconds` ago, in this process.

    At most `size` names are kept: a flood of made-up names empties the cache rather than
    growing it.
    """

    def __init__(self, seconds: float, size: int = 1024) -> None:
        self.seconds = seconds
        self.size = size
        self._entries: dict[str, tuple[float, SourceKeys | None]] = {}
        self._lock = threading.Lock()
        self._reading: dict[str, threading.Event] = {}
        self._changes = _changes

    def get(self, name: str, read: Callable[[str], SourceKeys | None]) -> SourceKeys | None:
        """The source named `name`, from `read` when not read within `seconds`. One read a name
        at a time: requests that find it expired meanwhile wait for that read's answer."""
        while True:
            with self._lock:
                if self._changes != _changes:
                    self._entries.clear()
                    self._changes = _changes
                entry = self._entries.get(name)
                if entry is not None and entry[0] > time.monotonic():
                    return entry[1]
                under_way = self._reading.get(name)
                if under_way is None:
                    under_way = self._reading[name] = threading.Event()
                    break
            under_way.wait()  # then it is fresh, or the read failed and this request tries
        try:
            found = read(name)
            with self._lock:
                if len(self._entries) >= self.size:
                    self._entries.clear()
                self._entries[name] = (time.monotonic() + self.seconds, found)
            return found
        finally:
            with self._lock:
                del self._reading[name]
            under_way.set()


def secret_accepted(source: SourceKeys, secret: str | None, now: datetime) -> bool:
    """Whether `secret` is the source's current one, or its previous one within the grace period."""
    if keys.matches(secret, source.secret_digest):
        return True
    expires = source.previous_secret_expires_at
    return expires is not None and now < expires and keys.matches(secret, source.previous_secret_digest)


def count_auth_failure(connection: sa.Connection, source_id: int) -> None:
    """Add one to the source's failed-check counter (a single atomic UPDATE; the caller commits)."""
    connection.execute(
        sa.update(_SOURCES)
        .where(_SOURCES.c.id == source_id)
        .values(auth_failures=_SOURCES.c.auth_failures + 1)
    )


def create_api_key(session: orm.Session, name: str, scope: ApiScope = ApiScope.read) -> str:
    """Create an API key and return it; only its digest is kept.

    Names are unique among active keys: a revoked key's name can be given to a new key.
    """
    _check_name(name)
    key_id = secrets.token_hex(8)
    secret = keys.generate_secret()
    try:
        with session.begin():
            session.add(
                ApiKey(name=name, key_id=key_id, key_digest=keys.digest(secret), scope=ApiScope(scope))
            )
    except IntegrityError:
        raise SourceError(f"an active API key named {name!r} exists already (revoke it first)") from None
    return f"rk_{key_id}_{secret}"


def revoke_api_key(session: orm.Session, name: str) -> None:
    with session.begin():
        result = session.execute(
            sa.update(ApiKey)
            .where(ApiKey.name == name, ApiKey.revoked_at.is_(None))
            .values(revoked_at=utcnow())
        )
        if result.rowcount == 0:  # type: ignore[attr-defined]
            raise SourceError(f"no active API key named {name!r}")


def list_api_keys(session: orm.Session) -> list[ApiKey]:
    """Every key, active and revoked, by name (and age within a name)."""
    return list(session.scalars(sa.select(ApiKey).order_by(ApiKey.name, ApiKey.id)))


def api_key_scope(session: orm.Session, presented: str | None) -> ApiScope | None:
    """The scope of `presented` if it is a live API key, else None."""
    if not presented or not presented.startswith("rk_") or presented.count("_") < 2:
        return None
    _, key_id, secret = presented.split("_", 2)
    stored = session.scalars(
        sa.select(ApiKey).where(ApiKey.key_id == key_id, ApiKey.revoked_at.is_(None))
    ).one_or_none()
    if stored is None or not keys.matches(secret, stored.key_digest):
        return None
    return stored.scope
