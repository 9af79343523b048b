"""Service: the destinations changes are forwarded to (add, list, pause, resume, remove, replay,
rotate). Each function runs in a transaction of its own and commits it."""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy import orm
from sqlalchemy.exc import IntegrityError

from .. import fetcher
from ..db import insert_for, utcnow
from ..errors import Conflict, NotFound, Unprocessable
from . import signing
from .models import (
    CHANGE_TYPES,
    Change,
    Delivery,
    DeliveryState,
    Destination,
    DestinationState,
    deliveries_table,
)

NAME_PATTERN = re.compile(r"[a-z0-9][a-z0-9_-]{0,63}")


def url_policy(config: Mapping[str, Any]) -> fetcher.FetchPolicy:
    """The address rules of destinations: those of recording downloads (DOWNLOAD_ALLOW_HTTP,
    DOWNLOAD_ALLOW_PRIVATE; cloud metadata addresses always refused), with no host list."""
    return fetcher.FetchPolicy(
        allow_http=config["DOWNLOAD_ALLOW_HTTP"],
        allow_private=config["DOWNLOAD_ALLOW_PRIVATE"],
        timeout=config["FORWARD_TIMEOUT"],
        ca_bundle=config["DOWNLOAD_CA_BUNDLE"],
    )


def parse_types(value: str | Iterable[str] | None) -> list[str]:
    """Change types from a comma-separated list (every type when None); refuse an unknown one."""
    if value is None:
        return list(CHANGE_TYPES)
    names = [part.strip() for part in (value.split(",") if isinstance(value, str) else value)]
    names = [name for name in names if name]
    unknown = [name for name in names if name not in CHANGE_TYPES]
    if unknown or not names:
        raise Unprocessable(
            f"unknown event type {', '.join(unknown) or '(none given)'}; one of {', '.join(CHANGE_TYPES)}"
        )
    return list(dict.fromkeys(names))


@dataclass(frozen=True)
class Listed:
    """A destination as `destinations list` shows it."""

    name: str
    url: str
    event_types: list[str]
    state: str
    paused_reason: str | None
    backlog: int
    failed: int
    rate_limit: float
    concurrency: int


def _get(session: orm.Session, name: str, *, lock: bool = False) -> Destination:
    query = sa.select(Destination).where(Destination.name == name)
    destination = session.scalars(query.with_for_update() if lock else query).one_or_none()
    if destination is None:
        raise NotFound(f"no destination {name!r}")
    return destination


def add(
    session: orm.Session,
    name: str,
    url: str,
    types: list[str],
    *,
    rate_limit: float,
    concurrency: int,
    policy: fetcher.FetchPolicy,
) -> str:
    """Create a destination that gets the changes from now on; return its secret (shown once)."""
    if NAME_PATTERN.fullmatch(name) is None:
        raise Unprocessable("a name is 1 to 64 of a-z, 0-9, _ and -, starting with a letter or digit")
    if rate_limit <= 0 or concurrency < 1:
        raise Unprocessable("the rate limit must be above 0 and the concurrency at least 1")
    try:
        fetcher.check_reachable(url, policy)
    except fetcher.Refused as exc:
        raise Unprocessable(f"URL refused: {exc}") from None
    secret = signing.new_secret()
    try:
        with session.begin():
            position = session.scalar(sa.select(sa.func.max(Change.position))) or 0
            session.add(
                Destination(
                    name=name,
                    url=url,
                    secret=secret,
                    event_types=types,
                    state=DestinationState.active,
                    rate_limit=rate_limit,
                    concurrency=concurrency,
                    position=position,
                    tokens=rate_limit,
                    tokens_at=utcnow(),
                )
            )
    except IntegrityError:
        raise Conflict(f"destination {name!r} exists already") from None
    return secret


def listing(session: orm.Session) -> list[Listed]:
    """Every destination with its backlog (changes not delivered yet) and failed deliveries."""
    d = Delivery
    counts: dict[tuple[int, str], int] = {
        (row[0], row[1]): row[2]
        for row in session.execute(
            sa.select(d.destination_id, d.state, sa.func.count())
            .where(d.state.in_([DeliveryState.pending, DeliveryState.failed]))
            .group_by(d.destination_id, d.state)
        )
    }
    result = []
    for destination in session.scalars(sa.select(Destination).order_by(Destination.name)):
        # Changes not turned into deliveries yet: numbered past its position, or not numbered.
        unfanned = session.scalar(
            sa.select(sa.func.count())
            .select_from(Change)
            .where(
                sa.or_(Change.position > destination.position, Change.position.is_(None)),
                Change.type.in_(destination.event_types),
            )
        )
        result.append(
            Listed(
                destination.name,
                destination.url,
                list(destination.event_types),
                destination.state.value,
                destination.paused_reason,
                counts.get((destination.id, DeliveryState.pending), 0) + (unfanned or 0),
                counts.get((destination.id, DeliveryState.failed), 0),
                destination.rate_limit,
                destination.concurrency,
            )
        )
    return result


def pause(session: orm.Session, name: str, reason: str = "paused by hand") -> None:
    """Stop sending to a destination; its changes wait (and count in its backlog)."""
    with session.begin():
        destination = _get(session, name, lock=True)
        destination.state, destination.paused_reason = DestinationState.paused, reason


def resume(session: orm.Session, name: str) -> None:
    """Send to a destination again, what waited first."""
    with session.begin():
        destination = _get(session, name, lock=True)
        destination.state, destination.paused_reason = DestinationState.active, None
        destination.throttled_until = None


def remove(session: orm.Session, name: str) -> int:
    """Delete a destination and its deliveries; return how many were not delivered."""
    with session.begin():
        destination = _get(session, name, lock=True)
        waiting = session.scalar(
            sa.select(sa.func.count()).where(
                Delivery.destination_id == destination.id, Delivery.state != DeliveryState.delivered
            )
        )
        session.execute(sa.delete(Delivery).where(Delivery.destination_id == destination.id))
        session.delete(destination)
    return waiting or 0


def replay(session: orm.Session, name: str, since: datetime) -> int:
    """Send again every change of the destination's types committed since `since` (delivered,
    failed or never sent); return how many. Each keeps its webhook-id."""
    with session.begin():
        destination = _get(session, name, lock=True)
        now = utcnow()
        chosen = sa.select(
            sa.literal(destination.id),
            Change.id,
            Change.position,
            Change.resource,
            sa.literal(DeliveryState.pending.value),
            sa.literal(0),
            sa.literal(now, Delivery.next_attempt_at.type),
            sa.literal(now, Delivery.created_at.type),
        ).where(
            Change.created_at >= since,
            Change.position.is_not(None),
            Change.position <= destination.position,
            Change.type.in_(destination.event_types),
        )
        columns = ["destination_id", "change_id", "position", "resource", "state", "attempts"]
        statement = insert_for(session, deliveries_table).from_select(
            [*columns, "next_attempt_at", "created_at"], chosen
        )
        statement = statement.on_conflict_do_update(
            index_elements=["destination_id", "change_id"],
            set_={
                "state": DeliveryState.pending.value,
                "attempts": 0,
                "next_attempt_at": now,
                "created_at": now,
                "locked_until": None,
                "last_error": None,
            },
        )
        count = len(session.execute(statement.returning(deliveries_table.c.id)).all())
    return count


def rotate(session: orm.Session, name: str, grace: timedelta) -> str:
    """Give a destination a new secret; requests carry a signature by the old one too for `grace`."""
    secret = signing.new_secret()
    with session.begin():
        destination = _get(session, name, lock=True)
        destination.previous_secret = destination.secret
        destination.previous_secret_expires_at = utcnow() + grace
        destination.secret = secret
    return secret
