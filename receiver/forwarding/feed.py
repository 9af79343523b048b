"""Service: the pull feed of changes (`GET /api/v1/changes`), oldest first, by position."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import orm

from . import outbox, snapshots


def change_id(change_id: int) -> str:
    """A change's public id: its webhook-id when forwarded, its `id` in the pull feed."""
    return f"chg_{change_id}"


def timestamp(when: datetime) -> str:
    """A change's time as the API writes times: ISO 8601, UTC, with a Z."""
    return when.astimezone(UTC).isoformat().replace("+00:00", "Z")


def page(session: orm.Session, after: int, types: Iterable[str] | None, limit: int) -> dict[str, Any]:
    """The changes after position `after`, and the cursor to ask for what comes next.

    Numbers what committed since the worker last did (so the feed moves without a worker), then
    reads. `next_cursor` is always given: the last position of the page, else the one asked for.
    """
    if session.in_transaction():
        session.commit()  # the request's reads so far (its API key): nothing was written
    outbox.sequence(session)
    with session.begin():
        changes = outbox.read(session, after, types, limit)
        data = [
            {
                "id": change_id(change.id),
                "type": change.type,
                "timestamp": timestamp(change.created_at),
                "data": snapshots.api_data(change.type, change.data),
            }
            for change in changes
        ]
    last = changes[-1].position if changes else after
    return {"data": data, "next_cursor": str(last)}
