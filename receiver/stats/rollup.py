"""The background roll-up: summaries of messages by hour and by day, kept current from the side.

Ingest is not touched: every change to a message sets its `updated_at`, and the roll-up, run each
minute by the worker (and by `receiver stats rollup`), finds the messages changed since its last
run through an index on that column, and rebuilds whole the hours they were first heard of in (a
message counts in the hour of its `created_at`, which never changes), then the days of those
hours. Its watermark says: every change made more than ROLLUP_GRACE before it is in the
summaries. A change whose transaction commits late, or whose machine's clock runs a little
behind, still has an `updated_at` within that grace of it, so the next run, and every query
meanwhile, treats its hour as changed. Queries (receiver.stats.messages) read the messages
themselves for such hours, so an answer never waits for the roll-up.

The first run works through history a few days a transaction, oldest first; until it finishes
there is no watermark and queries read the messages. Runs take turns on the state row's lock.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta

import sqlalchemy as sa
from sqlalchemy import orm
from sqlalchemy.dialects import postgresql, sqlite

from ..db import utcnow
from ..models import Message
from .build import DAY, HOUR, Executor, dialect_of, floor_day, floor_hour, rebuild_hours
from .tables import StatsRollupState

log = logging.getLogger(__name__)

STATE_ID = 1


@dataclass
class RollupRun:
    """What one run did: hours rebuilt, and whether history is all rolled up."""

    hours: int
    done: bool


def read_watermark(session: orm.Session) -> datetime | None:
    """The time up to which (less the grace) every change is in the summaries; None before the
    first roll-up has finished."""
    return session.scalar(sa.select(StatsRollupState.watermark).where(StatsRollupState.id == STATE_ID))


def _take_turn(executor: Executor, now: datetime) -> None:
    """Take the state row's lock (a write lock on SQLite) for the rest of the transaction: roll-ups
    and bulk rebuilds of the same hours never interleave."""
    table = StatsRollupState.__table__
    insert = (postgresql if dialect_of(executor) == "postgresql" else sqlite).insert(table)
    executor.execute(insert.on_conflict_do_nothing(), {"id": STATE_ID})
    executor.execute(sa.update(StatsRollupState).where(StatsRollupState.id == STATE_ID).values(ran_at=now))


def _lock_state(session: orm.Session, now: datetime) -> StatsRollupState:
    _take_turn(session, now)
    statement = sa.select(StatsRollupState).where(StatsRollupState.id == STATE_ID)
    return session.execute(statement.execution_options(populate_existing=True)).scalar_one()


def roll_up(session: orm.Session, *, grace: timedelta, backfill_days: int = 1) -> RollupRun:
    """One run: the hours changed since the watermark, or the next few days of history."""
    with session.begin():
        started = utcnow()
        state = _lock_state(session, started)
        if state.watermark is None:
            return _backfill_step(session, state, started, backfill_days)
        changed = session.scalars(
            sa.select(Message.created_at).where(Message.updated_at >= state.watermark - grace)
        )
        hours = sorted({floor_hour(created) for created in changed})
        rebuild_hours(session, hours)
        state.watermark = started
        return RollupRun(len(hours), True)


def _backfill_step(session: orm.Session, state: StatsRollupState, started: datetime, days: int) -> RollupRun:
    if state.backfill_started_at is None:
        state.backfill_started_at = started
    first = state.backfill_done_until or session.scalar(sa.select(sa.func.min(Message.created_at)))
    last = session.scalar(sa.select(sa.func.max(Message.created_at)))
    if first is None or last is None or first > last:
        state.watermark = state.backfill_started_at
        state.backfill_started_at = state.backfill_done_until = None
        return RollupRun(0, True)
    start = floor_hour(first)
    end = min(floor_day(start) + DAY * days, floor_hour(last) + HOUR)
    hours = []
    hour = start
    while hour < end:
        hours.append(hour)
        hour += HOUR
    rebuild_hours(session, hours)
    state.backfill_done_until = end
    log.info("stats roll-up: history rolled up to %s", end.isoformat())
    return RollupRun(len(hours), False)


def rebuild_for(executor: Executor, created: Iterable[datetime]) -> None:
    """Rebuild, within the caller's transaction, the hours of messages first heard of at these
    times: for bulk deletes and restores (an archive's), which leave `updated_at` as it was."""
    hours = {floor_hour(moment) for moment in created}
    if hours:
        _take_turn(executor, utcnow())
        rebuild_hours(executor, hours)
