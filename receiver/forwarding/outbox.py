"""The outbox: each change written beside the rows it changed, then numbered in commit order.

`record_changes` is the one place the write paths (webhook ingest, recording downloads) hand
their changes over. It runs inside their transaction, so a change and its outbox row commit or
roll back together, and the database copies each changed resource into the row as the
transaction sees it (receiver.forwarding.snapshots): `data` is the resource as it stood when
the change committed, shown later exactly as the query API shows it.

Ids are taken before commit, so on PostgreSQL a reader going by id could pass over a row that
commits late. `sequence` numbers only rows it can see, in id order, under a lock, so positions
are handed out in the order rows became visible: a reader going by position misses nothing,
and two changes of one resource (whose transactions the resource's row lock orders) keep their
order.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any, NamedTuple

import sqlalchemy as sa
from sqlalchemy import orm

from ..db import utcnow
from . import snapshots
from .models import Change, Delivery, DeliveryState, changes_table

# The change types of the webhook's event kinds (contact events are not forwarded).
TYPE_OF_KIND = {
    "sms-status": "message.status",
    "channel-status": "message.status",
    "inbound": "inbound",
    "voice": "call",
    "unsubscription": "opt_out",
}
# pg_try_advisory_xact_lock key of the sequencer: one at a time across every process.
_SEQUENCER_LOCK = 0x72656376_66776431


class StoredChange(NamedTuple):
    """A change a write path committed (or is about to): its type and the resource's id."""

    type: str
    id: Any


def changes_of(events: Sequence[Any], results: Sequence[tuple[Any, bool]]) -> list[StoredChange]:
    """The changes of a webhook's stored events: each new one of a forwarded kind."""
    return [
        StoredChange(TYPE_OF_KIND[event.kind], ref)
        for event, (ref, is_new) in zip(events, results, strict=True)
        if is_new and event.kind in TYPE_OF_KIND
    ]


def record_changes(connection: sa.Connection, stored: Iterable[StoredChange]) -> None:
    """Write the outbox rows of changes made in the connection's open transaction (no commit):
    one INSERT ... SELECT a change type, the database taking each resource's snapshot."""
    ids_by_type: dict[str, dict[Any, None]] = {}
    for change in stored:  # one change a resource a transaction, in the order first named
        ids_by_type.setdefault(change.type, {})[change.id] = None
    now = utcnow()
    for change_type, ids in ids_by_type.items():
        snapshots.insert_changes(connection, change_type, list(ids), now)


def sequence(session: orm.Session, batch: int = 5000) -> int:
    """Number the changes not numbered yet, in id order, after the last position; commit.

    One sequencer at a time: on PostgreSQL an advisory lock (another holder: return 0 at once),
    on SQLite the single writer, and in any case `position IS NULL` and the unique position.
    """
    with session.begin():
        if session.get_bind().dialect.name == "postgresql":
            if not session.scalar(sa.select(sa.func.pg_try_advisory_xact_lock(_SEQUENCER_LOCK))):
                return 0
        ids = session.scalars(
            sa.select(Change.id).where(Change.position.is_(None)).order_by(Change.id).limit(batch)
        ).all()
        if not ids:
            return 0
        last = session.scalar(sa.select(sa.func.max(Change.position))) or 0
        # One statement: the next `batch` unnumbered rows by id get last+1, last+2, ...
        numbered = (
            sa.select(
                changes_table.c.id,
                (sa.func.row_number().over(order_by=changes_table.c.id) + last).label("new_position"),
            )
            .where(changes_table.c.position.is_(None))
            .order_by(changes_table.c.id)
            .limit(len(ids))
            .subquery()
        )
        session.execute(
            sa.update(changes_table)
            .where(changes_table.c.id == numbered.c.id, changes_table.c.position.is_(None))
            .values(position=numbered.c.new_position)
        )
    return len(ids)


def read(session: orm.Session, after: int, types: Iterable[str] | None, limit: int) -> list[Change]:
    """The numbered changes after position `after`, oldest first, of `types` (all when None)."""
    query = sa.select(Change).where(Change.position > after)
    if types is not None:
        query = query.where(Change.type.in_(list(types)))
    return list(session.scalars(query.order_by(Change.position).limit(limit)))


def prune(session: orm.Session, before: datetime, batch: int = 5000) -> int:
    """Delete changes committed before `before`, with their deliveries, but none a destination
    still waits to receive; in short transactions. Return how many.

    Walks the changes by id, the oldest first (ids follow time closely enough), and stops at the
    first batch that starts after `before`: no index on the time is needed.
    """
    waiting = (
        sa.select(Delivery.id)
        .where(Delivery.change_id == Change.id, Delivery.state == DeliveryState.pending)
        .exists()
    )
    removed, after = 0, 0
    while True:
        with session.begin():
            rows = session.execute(
                sa.select(Change.id, Change.created_at, waiting)
                .where(Change.id > after)
                .order_by(Change.id)
                .limit(batch)
            ).all()
            if not rows or rows[0].created_at >= before:
                return removed
            ids = [row.id for row in rows if row.created_at < before and not row[2]]
            if ids:
                session.execute(sa.delete(Delivery).where(Delivery.change_id.in_(ids)))
                session.execute(sa.delete(Change).where(Change.id.in_(ids)))
        removed += len(ids)
        after = rows[-1].id
