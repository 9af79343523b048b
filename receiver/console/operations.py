"""The console's operational side: raw events waiting for a replay, replaying them, and health."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy import orm

from ..api import cursors, queries
from ..ingest import replay
from ..ingest import service as ingest
from ..models import RawEvent, RawState, Recording, RecordingState, Source
from ..reconcile import latest_runs

WAITING_COLUMNS = (
    RawEvent.id,
    RawEvent.source,
    RawEvent.received_at,
    RawEvent.state,
    RawEvent.kind_hint,
    RawEvent.errors,
    RawEvent.replays,
    RawEvent.replayed_at,
)
# A click replays at most this many events; the page then says how many still wait.
REPLAY_BATCH = 500


@dataclass
class WaitingPage:
    rows: list[Any]
    next_cursor: str | None
    total: int


def waiting_events(
    session: orm.Session, states: list[RawState], source: str | None, cursor: str | None, limit: int = 50
) -> WaitingPage:
    """Pending and quarantined raw events (or those of one state, or source), newest first;
    cursors.CursorError for a cursor not issued for these filters."""
    filters: dict[str, Any] = {"source": source}
    if len(states) == 1:
        filters["state"] = states[0]
    after = cursors.decode_cursor(queries.EVENTS, filters, cursor) if cursor else None
    statement = queries.filtered(queries.EVENTS, filters, *WAITING_COLUMNS).where(RawEvent.state.in_(states))
    if after is not None:
        statement = statement.where(RawEvent.id < after[0])
    rows = list(session.execute(statement.limit(limit + 1)))
    next_cursor = None
    if len(rows) > limit:
        rows = rows[:limit]
        next_cursor = cursors.encode_cursor(queries.EVENTS, filters, (rows[-1].id,))
    count = sa.select(sa.func.count()).select_from(RawEvent).where(RawEvent.state.in_(states))
    if source is not None:
        count = count.where(RawEvent.source == source)
    return WaitingPage(rows, next_cursor, session.scalar(count) or 0)


@dataclass
class ReplayRun:
    counts: Counter[str] = field(default_factory=Counter)
    remaining: int = 0


def replay_matching(
    session: orm.Session, states: list[RawState], source: str | None, settings: ingest.Settings
) -> ReplayRun:
    """Replay up to REPLAY_BATCH waiting events (oldest first) of these states and source; say
    how many still wait. Each replay is the replay service's own transaction."""
    run = ReplayRun()
    with session.begin():
        upto = session.scalar(sa.select(sa.func.max(RawEvent.id))) or 0
    ids = replay.waiting_ids(session, states, None, 0, upto, REPLAY_BATCH, source=source)
    for raw_id in ids:
        try:
            outcome = replay.replay_one(session, raw_id, settings)
        except (LookupError, replay.NotReplayable):
            run.counts["skipped"] += 1
            continue
        run.counts[outcome.outcome] += 1
    with session.begin():
        remaining = sa.select(sa.func.count()).select_from(RawEvent).where(RawEvent.state.in_(states))
        if source is not None:
            remaining = remaining.where(RawEvent.source == source)
        run.remaining = session.scalar(remaining) or 0
    return run


WAITING_RECORDINGS = (
    RecordingState.pending,
    RecordingState.downloading,
    RecordingState.retrying,
    RecordingState.fallback,
)


@dataclass
class SourceHealth:
    name: str
    auth_failures: int
    last_webhook_at: datetime | None


@dataclass
class Health:
    recordings: dict[str, int]
    waiting: int
    failed: int
    oldest_waiting_at: datetime | None
    sources: list[SourceHealth]
    events: dict[str, int]
    reconciliation: list[Any]


def health(session: orm.Session) -> Health:
    counts = sa.select(Recording.state, sa.func.count()).group_by(Recording.state)
    by_state = {state: count for state, count in session.execute(counts)}
    recordings = {state.value: int(by_state.get(state, 0)) for state in RecordingState}
    oldest = session.scalar(
        sa.select(sa.func.min(Recording.created_at)).where(Recording.state.in_(WAITING_RECORDINGS))
    )
    sources = []
    for source in session.scalars(sa.select(Source).order_by(Source.name)):
        last = session.scalar(
            sa.select(sa.func.max(RawEvent.received_at)).where(RawEvent.source == source.name)
        )
        sources.append(SourceHealth(source.name, source.auth_failures, last))
    events = {
        state.value: session.scalar(
            sa.select(sa.func.count()).select_from(RawEvent).where(RawEvent.state == state)
        )
        or 0
        for state in replay.REPLAYABLE
    }
    return Health(
        recordings,
        sum(recordings[state.value] for state in WAITING_RECORDINGS),
        recordings[RecordingState.failed.value],
        oldest,
        sources,
        events,
        reconciliation_runs(session),
    )


def reconciliation_runs(session: orm.Session) -> list[Any]:
    """The latest reconciliation runs with the provider's pull APIs, newest first."""
    return list(latest_runs(session, limit=20))
