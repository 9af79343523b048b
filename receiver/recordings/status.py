"""How the recordings stand: counts by state, the oldest still waiting, the latest failures.
`receiver recordings status` and the metrics' gauges both read them here."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy import orm

from ..models import WAITING_RECORDINGS, Recording, RecordingState

Reader = orm.Session | sa.Connection


def counts(reader: Reader) -> dict[RecordingState, int]:
    """How many recordings are in each state (a state with none is left out)."""
    rows = reader.execute(sa.select(Recording.state, sa.func.count()).group_by(Recording.state)).all()
    return {state: count for state, count in rows}


def oldest_waiting(reader: Reader) -> datetime | None:
    """When the oldest recording neither stored nor failed arrived; None when none waits."""
    return reader.execute(
        sa.select(Recording.created_at)
        .where(Recording.state.in_(WAITING_RECORDINGS))
        .order_by(Recording.created_at)
        .limit(1)
    ).scalar()


def waiting_past_expiry(reader: Reader, now: datetime) -> int:
    """How many waiting recordings' webhook URLs have expired (they go through the recordings API)."""
    r = Recording
    statement = sa.select(sa.func.count()).where(r.state.in_(WAITING_RECORDINGS), r.url_expires_at <= now)
    return int(reader.execute(statement).scalar() or 0)


def latest_failures(reader: Reader, limit: int) -> list[Any]:
    """The most recently failed recordings: id, call_id, attempts, last_error."""
    r = Recording
    return list(
        reader.execute(
            sa.select(r.id, r.call_id, r.attempts, r.last_error)
            .where(r.state == RecordingState.failed)
            .order_by(r.updated_at.desc())
            .limit(limit)
        ).all()
    )
