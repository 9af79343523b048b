"""Service: turn numbered changes into deliveries, claim the due ones, record how each went.

Every worker process may run these at once. A destination's row is the lock that orders its
fan-out and its claims, and holds what every worker shares: how far it was fanned out, its token
bucket (the rate limit), how long a 429 asked it to wait. A claim takes a lease (`locked_until`,
`next_attempt_at`) and bumps `attempts`, which then names the claim: the outcome of an attempt
whose lease was lost (a worker killed mid-request) changes nothing, and the delivery is sent
again once the lease runs out, with the same webhook-id.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy import orm

from ..db import insert_for, utcnow
from ..recordings.download import backoff
from .models import Change, Delivery, DeliveryState, Destination, DestinationState, deliveries_table

PENDING = DeliveryState.pending
# Deliveries made by one fan-out past which PostgreSQL's statistics of the table are renewed.
ANALYZE_AFTER = 2000


@dataclass(frozen=True)
class Claimed:
    """One attempt to make: what to send, and the claim that names it."""

    delivery_id: int
    attempt: int
    created_at: datetime  # of the delivery: the retry period runs from here
    change_id: int
    type: str
    timestamp: datetime
    data: dict[str, Any]


@dataclass(frozen=True)
class Outcome:
    """How an attempt went: an HTTP status (None: no answer), an error, a Retry-After in seconds."""

    claimed: Claimed
    status: int | None
    error: str | None = None
    retry_after: float | None = None

    @property
    def delivered(self) -> bool:
        return self.status is not None and 200 <= self.status < 300


@dataclass(frozen=True)
class RetryPolicy:
    base: float  # the first retry comes after between half of this and all of it
    cap: float  # no wait between attempts longer than this
    period: float  # give up this long after the first attempt
    lease: float  # an attempt's claim; past it, the delivery is sent again


def fan_out(session: orm.Session, destination_id: int, batch: int = 5000) -> int:
    """Make the deliveries of the next numbered changes of the destination's types; commit."""
    with session.begin():
        destination = session.get(Destination, destination_id, with_for_update=True, populate_existing=True)
        if destination is None:
            return 0
        until = session.scalar(
            sa.select(sa.func.max(Change.position)).where(
                Change.position > destination.position, Change.position <= destination.position + batch
            )
        )
        if until is None:
            return 0
        now = utcnow()
        chosen = sa.select(
            sa.literal(destination_id),
            Change.id,
            Change.position,
            Change.resource,
            sa.literal(PENDING.value),
            sa.literal(0),
            sa.literal(now, Delivery.next_attempt_at.type),
            sa.literal(now, Delivery.created_at.type),
        ).where(
            Change.position > destination.position,
            Change.position <= until,
            Change.type.in_(destination.event_types),
        )
        columns = ["destination_id", "change_id", "position", "resource", "state", "attempts"]
        statement = (
            insert_for(session, deliveries_table)
            .from_select([*columns, "next_attempt_at", "created_at"], chosen)
            .on_conflict_do_nothing(index_elements=["destination_id", "change_id"])
        )
        made = len(session.execute(statement.returning(deliveries_table.c.id)).all())
        destination.position = until
        if made >= ANALYZE_AFTER and session.get_bind().dialect.name == "postgresql":
            # A backlog grows the table faster than autovacuum notices; on stale statistics
            # the planner scans every waiting delivery for each claim instead of one probe.
            session.execute(sa.text("ANALYZE deliveries"))
    return made


def claim(session: orm.Session, destination_id: int, wanted: int, policy: RetryPolicy) -> list[Claimed]:
    """Take up to `wanted` due deliveries of an active destination, within its concurrency and
    rate limits, never one whose resource has an earlier change still waiting; commit."""
    with session.begin():
        destination = session.get(Destination, destination_id, with_for_update=True, populate_existing=True)
        now = utcnow()
        if destination is None or destination.state != DestinationState.active:
            return []
        if destination.throttled_until is not None and destination.throttled_until > now:
            return []
        d = Delivery
        under_way = (
            session.scalar(
                sa.select(sa.func.count()).where(d.destination_id == destination_id, d.locked_until > now)
            )
            or 0
        )
        elapsed = (now - destination.tokens_at).total_seconds() if destination.tokens_at else 1.0
        burst = max(1.0, destination.rate_limit)  # a second's worth
        tokens = min(burst, destination.tokens + max(0.0, elapsed) * destination.rate_limit)
        count = min(wanted, destination.concurrency - under_way, math.floor(tokens))
        destination.tokens, destination.tokens_at = tokens, now
        if count <= 0:
            return []
        earlier = orm.aliased(Delivery)
        waiting_before = (
            sa.select(earlier.id)
            .where(
                earlier.destination_id == d.destination_id,
                earlier.resource == d.resource,
                earlier.state == PENDING,
                earlier.position < d.position,
            )
            .exists()
        )
        ids = session.scalars(
            sa.select(d.id)
            .where(d.destination_id == destination_id, d.state == PENDING, d.next_attempt_at <= now)
            .where(~waiting_before)
            .order_by(d.next_attempt_at, d.position)
            .limit(count)
        ).all()
        if not ids:
            return []
        lease = now + timedelta(seconds=policy.lease)
        # Still due and pending: on SQLite another process may have claimed them since the read.
        session.execute(
            sa.update(d)
            .where(d.id.in_(ids), d.state == PENDING, d.next_attempt_at <= now)
            .values(attempts=d.attempts + 1, locked_until=lease, next_attempt_at=lease)
            .execution_options(synchronize_session=False)
        )
        rows = session.execute(
            sa.select(d.id, d.attempts, d.created_at, Change.id, Change.type, Change.created_at, Change.data)
            .join(Change, Change.id == d.change_id)
            .where(d.id.in_(ids), d.locked_until == lease)
            .order_by(d.position)
        ).all()
        destination.tokens = tokens - len(rows)
    return [Claimed(*row) for row in rows]


def record(
    session: orm.Session, destination_id: int, outcomes: list[Outcome], policy: RetryPolicy
) -> dict[str, int]:
    """Write how attempts went: delivered, to be tried again (backoff, Retry-After), given up,
    or the destination paused (410) or held back (429); commit. Return the count of each."""
    now = utcnow()
    table = deliveries_table
    fence = sa.and_(
        table.c.id == sa.bindparam("delivery_id"),
        table.c.attempts == sa.bindparam("attempt"),
        table.c.state == PENDING.value,
    )
    updates: list[dict[str, Any]] = []
    counts = {"delivered": 0, "retried": 0, "failed": 0}
    hold_until: datetime | None = None
    gone: Outcome | None = None
    for outcome in outcomes:
        claimed = outcome.claimed
        row: dict[str, Any] = {
            "delivery_id": claimed.delivery_id,
            "attempt": claimed.attempt,
            "new_status": outcome.status,
            "new_error": outcome.error,
            "new_delivered_at": None,
        }
        if outcome.delivered:
            row.update(new_state=DeliveryState.delivered.value, new_next=now, new_delivered_at=now)
            counts["delivered"] += 1
        elif outcome.status == 410:
            gone = outcome  # kept pending: sent once the destination is resumed
            row.update(new_state=PENDING.value, new_next=now)
            counts["retried"] += 1
        else:
            wait = backoff(claimed.attempt, policy.base, policy.cap)
            if outcome.retry_after is not None:
                wait = max(wait, min(outcome.retry_after, policy.period))
            when = now + timedelta(seconds=wait)
            if outcome.status == 429:
                hold_until = max(hold_until or when, when)
            if (when - claimed.created_at).total_seconds() > policy.period:
                row.update(new_state=DeliveryState.failed.value, new_next=now)
                counts["failed"] += 1
            else:
                row.update(new_state=PENDING.value, new_next=when)
                counts["retried"] += 1
        updates.append(row)
    with session.begin():
        if updates:
            session.execute(
                sa.update(table)
                .where(fence)
                .values(
                    state=sa.bindparam("new_state"),
                    next_attempt_at=sa.bindparam("new_next"),
                    locked_until=None,
                    last_status=sa.bindparam("new_status"),
                    last_error=sa.bindparam("new_error"),
                    delivered_at=sa.bindparam("new_delivered_at"),
                ),
                updates,
            )
        values: dict[str, Any] = {
            "delivered_total": Destination.delivered_total + counts["delivered"],
            "retried_total": Destination.retried_total + counts["retried"],
            "failed_total": Destination.failed_total + counts["failed"],
        }
        if hold_until is not None:
            values["throttled_until"] = hold_until
        if gone is not None:
            values["state"] = DestinationState.paused
            values["paused_reason"] = f"answered 410 Gone at {now:%Y-%m-%d %H:%M:%S}Z"
        session.execute(sa.update(Destination).where(Destination.id == destination_id).values(**values))
    return counts
