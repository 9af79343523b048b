"""Rebuilding the summaries of given hours, and of their days, from the messages (in SQL)."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy import orm

from ..db import UTCDateTime
from ..models import Message
from .grains import ANSWERED, GRAIN_IDS, Grain, build_order, capped, credits_e4, delay_us, hour_of
from .tables import StatsCell, StatsDelay

HOUR = timedelta(hours=1)
DAY = timedelta(days=1)
_DIMS = ("channel", "source", "service", "sender", "operator", "region", "provider_status", "status")

Executor = orm.Session | sa.Connection


def dialect_of(executor: Executor) -> str:
    return executor.get_bind().dialect.name if isinstance(executor, orm.Session) else executor.dialect.name


def floor_hour(moment: datetime) -> datetime:
    return moment.replace(minute=0, second=0, microsecond=0)


def floor_day(moment: datetime) -> datetime:
    return moment.replace(hour=0, minute=0, second=0, microsecond=0)


def rebuild_hours(session: Executor, hours: Iterable[datetime]) -> None:
    """Rebuild the summaries of these UTC hours from the messages, then those of their days."""
    ordered = sorted(set(hours))
    for start, end in _runs(ordered):
        _rebuild_hour_run(session, start, end)
    for day in sorted({floor_day(hour) for hour in ordered}):
        _rebuild_day(session, day)


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
    dialect = dialect_of(session)
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
