"""Pulled inbound SMS (`vmn/logs`): messages people sent that no webhook brought.

A log row is an inbound message receiver has when its id is one receiver stored, or when one
with the same numbers and text arrived from a little before the row's time to LATE after it (the
platform tries a webhook for up to an hour and a half). Whether the log's `id` is the webhook's
`payload.id` is not documented, hence the second test. A row matching none is stored with
`origin: pull`, keyed by its id, so that two runs at once store it once.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any, cast
from zoneinfo import ZoneInfo

import sqlalchemy as sa
from sqlalchemy import orm

from .. import forwarding
from ..db import insert_for, utcnow
from ..models import PULL_SOURCE, InboundMessage, Origin
from ..numbers import canonical as canonical_number
from .runs import Counts
from .times import provider_time

EARLY = timedelta(minutes=15)
LATE = timedelta(hours=2)


def inbound_row(row: dict[str, Any], zone: ZoneInfo, country_code: str) -> dict[str, Any] | None:
    """One row of `vmn/logs` as an inbound message's columns."""
    given = row.get("id")
    if given in (None, ""):
        return None
    sender, number = _text(row.get("mobile")), _text(row.get("number"))
    text = _text(row.get("body"))
    return {
        "id": str(given),
        "channel": "sms",
        "from_number": sender,
        "to_number": number,
        "from_canonical": canonical_number(sender, country_code),
        "to_canonical": canonical_number(number, country_code),
        "type": "text" if text is not None else None,
        "text": text,
        "keyword1": _text(row.get("first_keyword")),
        "keyword2": _text(row.get("second_keyword")),
        "occurred_at": provider_time(row.get("created_at"), zone),
    }


def _text(value: Any) -> str | None:
    return None if value is None or value == "" else str(value)


def store(session: orm.Session, rows: list[dict[str, Any] | None]) -> Counts:
    """Write a page of pulled inbound messages in the session's transaction; count the new ones."""
    pulled = {row["id"]: row for row in rows if row is not None}
    counts = Counts(seen=len(pulled))
    seen_before = _known(session, list(pulled.values()))
    now = utcnow()
    fresh = [
        {**row, "source": PULL_SOURCE, "raw_event_id": None, "origin": Origin.pull, "received_at": now}
        for key, row in sorted(pulled.items())
        if key not in seen_before
    ]
    created = 0
    if fresh:
        table = cast(sa.Table, InboundMessage.__table__)
        statement = (
            insert_for(session, table).on_conflict_do_nothing(index_elements=["id"]).returning(table.c.id)
        )
        new_ids = list(session.execute(statement, fresh).scalars())
        created = len(new_ids)
        # As a webhook's new inbound messages: changes to forward.
        changes = [forwarding.StoredChange("inbound", i) for i in new_ids]
        forwarding.record_changes(session.connection(), changes)
    counts.new_rows = created
    counts.unchanged = len(pulled) - created
    return counts


def _known(session: orm.Session, rows: list[dict[str, Any]]) -> set[str]:
    """The ids of the rows receiver has already, by id or by numbers, text and time."""
    if not rows:
        return set()
    table = InboundMessage
    have = set(session.scalars(sa.select(table.id).where(table.id.in_([r["id"] for r in rows]))))
    timed = [r for r in rows if r["id"] not in have and r["occurred_at"] is not None and r["from_canonical"]]
    if not timed:
        return have
    lo = min(r["occurred_at"] for r in timed) - EARLY
    hi = max(r["occurred_at"] for r in timed) + LATE
    when = sa.func.coalesce(table.occurred_at, table.received_at)
    candidates = session.execute(
        sa.select(table.from_canonical, table.to_canonical, table.text, when)
        .where(table.from_canonical.in_(sorted({r["from_canonical"] for r in timed})))
        .where(table.received_at.between(lo, hi + LATE))
    ).all()
    used: set[int] = set()  # one stored message answers for one log row (two "YES" are two)
    for row in timed:
        wanted = (row["from_canonical"], row["to_canonical"], row["text"])
        for index, (from_canonical, to_canonical, text, at) in enumerate(candidates):
            if index in used or (from_canonical, to_canonical, text) != wanted or at is None:
                continue
            if _within(at, row["occurred_at"]):
                have.add(row["id"])
                used.add(index)
                break
    return have


def _within(at: datetime, occurred: datetime) -> bool:
    at = at if at.tzinfo else at.replace(tzinfo=UTC)
    return occurred - EARLY <= at <= occurred + LATE
