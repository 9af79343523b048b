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
from typing import Any

import sqlalchemy as sa
from sqlalchemy import orm
from sqlalchemy.dialects import postgresql, sqlite

from ..db import UTCDateTime, utcnow
from ..models import Message
from .grains import ANSWERED, GRAIN_IDS, Grain, build_order, capped, credits_e4, delay_us, hour_of
from .tables import StatsCell, StatsDelay, StatsRollupState

log = logging.getLogger(__name__)

HOUR = timedelta(hours=1)
DAY = timedelta(days=1)
STATE_ID = 1
_DIMS = ("channel", "source", "service", "sender", "operator", "region", "provider_status", "status")


@dataclass
class RollupRun:
    """What one run did: hours rebuilt, and whether history is all rolled up."""

    hours: int
    done: bool


def floor_hour(moment: datetime) -> datetime:
    return moment.replace(minute=0, second=0, microsecond=0)


def floor_day(moment: datetime) -> datetime:
    return moment.replace(hour=0, minute=0, second=0, microsecond=0)


def read_watermark(session: orm.Session) -> datetime | None:
    """The time up to which (less the grace) every change is in the summaries; None before the
    first roll-up has finished."""
    return session.scalar(sa.select(StatsRollupState.watermark).where(StatsRollupState.id == STATE_ID))


Executor = orm.Session | sa.Connection


def _dialect(executor: Executor) -> str:
    return executor.get_bind().dialect.name if isinstance(executor, orm.Session) else executor.dialect.name


def _take_turn(executor: Executor, now: datetime) -> None:
    """Take the state row's lock (a write lock on SQLite) for the rest of the transaction: roll-ups
    and bulk rebuilds of the same hours never interleave."""
    table = StatsRollupState.__table__
    insert = (postgresql if _dialect(executor) == "postgresql" else sqlite).insert(table)
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


def rebuild_hours(session: Executor, hours: Iterable[datetime]) -> None:
    """Rebuild the summaries of these UTC hours from the messages, then those of their days."""
    ordered = sorted(set(hours))
    for start, end in _runs(ordered):
        _rebuild_hour_run(session, start, end)
    for day in sorted({floor_day(hour) for hour in ordered}):
        _rebuild_day(session, day)


def rebuild_for(executor: Executor, created: Iterable[datetime]) -> None:
    """Rebuild, within the caller's transaction, the hours of messages first heard of at these
    times: for bulk deletes and restores (an archive's), which leave `updated_at` as it was."""
    hours = {floor_hour(moment) for moment in created}
    if hours:
        _take_turn(executor, utcnow())
        rebuild_hours(executor, hours)


def _runs(hours: list[datetime]) -> Iterable[tuple[datetime, datetime]]:
    """Consecutive hours as [start, end) spans."""
    run_start = previous = None
    for hour in hours:
        if previous is not None and hour != previous + HOUR:
            assert run_start is not None
            yield run_start, previous + HOUR
            run_start = None
        if run_start is None:
            run_start = hour
        previous = hour
    if run_start is not None and previous is not None:
        yield run_start, previous + HOUR


def _columns(model: type[Any], dims: tuple[str, ...]) -> list[Any]:
    return [getattr(model, name) for name in _DIMS if name in dims]


def _message_dims(dims: tuple[str, ...]) -> list[Any]:
    columns = []
    for name in _DIMS:
        if name in dims:
            column = getattr(Message, name)
            columns.append(sa.type_coerce(column, sa.String) if name == "status" else column)
    return columns


def _rebuild_hour_run(session: Executor, start: datetime, end: datetime) -> None:
    dialect = _dialect(session)
    period = hour_of(Message.created_at, dialect)
    in_run = (Message.created_at >= start, Message.created_at < end)
    for model in (StatsCell, StatsDelay):
        session.execute(
            sa.delete(model).where(
                model.grain.in_(GRAIN_IDS),
                model.span == "h",
                model.period_start >= start,
                model.period_start < end,
            )
        )
    for grain in build_order("counts"):
        dims = (*grain.dims, "status")
        names = [name for name in _DIMS if name in dims]
        columns = ["grain", "span", "period_start", *names, "total", "credits_e4", "units"]
        if grain.counts_from is not None:
            session.execute(
                sa.insert(StatsCell).from_select(columns, _summed(StatsCell, grain, "h", start, end))
            )
            continue
        select = (
            sa.select(
                sa.literal(grain.id),
                sa.literal("h"),
                period,
                *_message_dims(dims),
                sa.func.count(),
                sa.func.coalesce(sa.func.sum(credits_e4(dialect)), 0),
                sa.func.coalesce(sa.func.sum(Message.units), 0),
            )
            .where(*in_run)
            .group_by(period, *_message_dims(dims))
        )
        session.execute(sa.insert(StatsCell).from_select(columns, select))
    for grain in build_order("delays"):
        names = [name for name in _DIMS if name in grain.dims]
        columns = ["grain", "span", "period_start", *names, "delay_us", "count"]
        if grain.delays_from is not None:
            session.execute(
                sa.insert(StatsDelay).from_select(columns, _summed(StatsDelay, grain, "h", start, end))
            )
            continue
        delay = capped(delay_us(dialect))
        select = (
            sa.select(
                sa.literal(grain.id),
                sa.literal("h"),
                period,
                *_message_dims(grain.dims),
                delay,
                sa.func.count(),
            )
            .where(
                *in_run,
                Message.status.in_(ANSWERED),
                Message.submitted_at.is_not(None),
                Message.delivered_at.is_not(None),
            )
            .group_by(period, *_message_dims(grain.dims), delay)
        )
        session.execute(sa.insert(StatsDelay).from_select(columns, select))


def _summed(
    model: type[StatsCell] | type[StatsDelay], grain: Grain, span: str, start: datetime, end: datetime
) -> Any:
    """The rows of `grain` for [start, end) as sums of the finer grain's it is built from."""
    source = grain.counts_from if model is StatsCell else grain.delays_from
    dims = _columns(model, (*grain.dims, "status") if model is StatsCell else grain.dims)
    if model is StatsCell:
        sums = [sa.func.sum(StatsCell.total), sa.func.sum(StatsCell.credits_e4), sa.func.sum(StatsCell.units)]
        keys = [*dims]
    else:
        sums = [sa.func.sum(StatsDelay.count)]
        keys = [*dims, StatsDelay.delay_us]
    return (
        sa.select(sa.literal(grain.id), sa.literal(span), model.period_start, *keys, *sums)
        .where(
            model.grain == source, model.span == span, model.period_start >= start, model.period_start < end
        )
        .group_by(model.period_start, *keys)
    )


def _rebuild_day(session: Executor, day: datetime) -> None:
    """A UTC day's summaries: the sums of its hours'."""
    day_value = sa.literal(day, UTCDateTime())
    for model in (StatsCell, StatsDelay):
        session.execute(
            sa.delete(model).where(model.grain.in_(GRAIN_IDS), model.span == "d", model.period_start == day)
        )
    in_day = (
        StatsCell.grain.in_(GRAIN_IDS),
        StatsCell.span == "h",
        StatsCell.period_start >= day,
        StatsCell.period_start < day + DAY,
    )
    dims = _columns(StatsCell, _DIMS)
    select = (
        sa.select(
            StatsCell.grain,
            sa.literal("d"),
            day_value,
            *dims,
            sa.func.sum(StatsCell.total),
            sa.func.sum(StatsCell.credits_e4),
            sa.func.sum(StatsCell.units),
        )
        .where(*in_day)
        .group_by(StatsCell.grain, *dims)
    )
    columns = ["grain", "span", "period_start", *_DIMS, "total", "credits_e4", "units"]
    session.execute(sa.insert(StatsCell).from_select(columns, select))
    in_day_delays = (
        StatsDelay.grain.in_(GRAIN_IDS),
        StatsDelay.span == "h",
        StatsDelay.period_start >= day,
        StatsDelay.period_start < day + DAY,
    )
    delay_dims = _columns(StatsDelay, _DIMS)
    select = (
        sa.select(
            StatsDelay.grain,
            sa.literal("d"),
            day_value,
            *delay_dims,
            StatsDelay.delay_us,
            sa.func.sum(StatsDelay.count),
        )
        .where(*in_day_delays)
        .group_by(StatsDelay.grain, *delay_dims, StatsDelay.delay_us)
    )
    columns = ["grain", "span", "period_start", *_DIMS, "delay_us", "count"]
    session.execute(sa.insert(StatsDelay).from_select(columns, select))
