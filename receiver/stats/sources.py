"""Reading sums into `Totals`: from the messages themselves, and from the roll-up's summaries."""

from __future__ import annotations

from collections.abc import Callable, Hashable, Sequence
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy import orm

from ..models import Message
from . import timekeys
from .aggregate import Totals
from .grains import ANSWERED, Grain, credits_e4, delay_us, local_text
from .query import TIME_GROUPS, MessageStatsQuery
from .tables import StatsCell, StatsDelay


def _message_column(name: str) -> Any:
    column = getattr(Message, name)
    return sa.type_coerce(column, sa.String) if name == "status" else column


def scan_messages(
    session: orm.Session,
    query: MessageStatsQuery,
    totals: Totals,
    spans: Sequence[tuple[datetime, datetime]],
    *,
    counts: bool = True,
    where: Sequence[Any] = (),
) -> None:
    """Add the messages first heard of in each [start, end) span, read one by one (their delivery
    times only, without `counts`; only those `where` holds, when given)."""
    dialect = session.get_bind().dialect.name
    units = [name for name in query.group_by if name in TIME_GROUPS]
    filters = [getattr(Message, name) == value for name, value in query.filters().items()]
    filters += where
    # Spans at the same UTC offset go in one statement (a range each), as each time key needs one.
    by_offset: dict[int, list[tuple[datetime, datetime]]] = {}
    for span_start, span_end in spans:
        for piece in timekeys.pieces(query.zone, span_start, span_end) if units else []:
            by_offset.setdefault(piece.offset, []).append((piece.start, piece.end))
        if not units:
            by_offset.setdefault(0, []).append((span_start, span_end))
    for offset, ranges in by_offset.items():
        # Labelled: the status counted and the status grouped by may be the same expression.
        columns = [
            (
                local_text(Message.created_at, offset, name, dialect)
                if name in TIME_GROUPS
                else _message_column(name)
            ).label(f"key_{index}")
            for index, name in enumerate(query.group_by)
        ]
        within = sa.or_(*(sa.and_(Message.created_at >= a, Message.created_at < b) for a, b in ranges))

        def key(values: Sequence[Any], offset: int = offset) -> tuple[Hashable, ...]:
            return tuple(
                timekeys.key_of_text(name, offset, value) if name in TIME_GROUPS else value
                for name, value in zip(query.group_by, values, strict=True)
            )

        width = len(columns)
        if counts:
            _counts_and_delays(session, totals, columns, key, [within, *filters], dialect)
            continue
        delay = delay_us(dialect)
        delays = (
            sa.select(*columns, delay, sa.func.count())
            .where(within, *filters, _timed())
            .group_by(*columns, delay)
        )
        for row in session.execute(delays):
            totals.add_delays(key(row[:width]), int(row[width]), int(row[width + 1]))


def _timed() -> Any:
    """Whether a message's delivery time counts: delivered or read, with both times known.

    The statuses are written into the statement: PostgreSQL matches a GROUP BY expression to the
    selected one only when they are the same text, which two bound parameters are not.
    """
    answered: list[Any] = [sa.literal_column(f"'{status.value}'") for status in ANSWERED]
    return sa.and_(
        sa.type_coerce(Message.status, sa.String).in_(answered),
        Message.submitted_at.is_not(None),
        Message.delivered_at.is_not(None),
    )


def _counts_and_delays(
    session: orm.Session,
    totals: Totals,
    columns: list[Any],
    key: Callable[[Sequence[Any]], tuple[Hashable, ...]],
    where: list[Any],
    dialect: str,
) -> None:
    """Counts, sums and delivery times in one pass over the messages: by group, status and delay."""
    width = len(columns)
    status = _message_column("status").label("counted_status")
    delay = sa.case((_timed(), delay_us(dialect))).label("delay")
    statement = (
        sa.select(
            *columns,
            status,
            delay,
            sa.func.count(),
            sa.func.coalesce(sa.func.sum(credits_e4(dialect)), 0),
            sa.func.coalesce(sa.func.sum(Message.units), 0),
        )
        .where(*where)
        .group_by(*columns, status, delay)
    )
    for row in session.execute(statement):
        group = key(row[:width])
        counted, delay_value, count, credits, units = row[width:]
        totals.add_counts(group, counted, int(count), int(credits), int(units))
        if delay_value is not None:
            totals.add_delays(group, int(delay_value), int(count))


def read_summaries(
    session: orm.Session,
    query: MessageStatsQuery,
    totals: Totals,
    grains: tuple[Grain, Grain],
    periods: dict[str, list[tuple[datetime, datetime]]],
) -> None:
    """Add the summaries of whole periods: by span (`h`, `d`), spans of period starts.

    Each period lies within one day or hour of the query's zone (the plan saw to it), so the day
    or hour of its start, computed by the database, is its key: the sums come back by key, not by
    period.
    """
    dialect = session.get_bind().dialect.name
    units = [name for name in query.group_by if name in TIME_GROUPS]
    models: tuple[type[StatsCell] | type[StatsDelay], ...] = (StatsCell, StatsDelay)
    for span, ranges in periods.items():
        by_offset: dict[int, list[tuple[datetime, datetime]]] = {}
        for start, end in ranges:
            for piece in timekeys.pieces(query.zone, start, end) if units else []:
                by_offset.setdefault(piece.offset, []).append((piece.start, piece.end))
            if not units:
                by_offset.setdefault(0, []).append((start, end))
        for offset, pieces in by_offset.items():
            for model, grain in zip(models, grains, strict=True):
                _read(session, query, totals, model, grain, span, offset, pieces, dialect)


def _read(
    session: orm.Session,
    query: MessageStatsQuery,
    totals: Totals,
    model: type[StatsCell] | type[StatsDelay],
    grain: Grain,
    span: str,
    offset: int,
    ranges: list[tuple[datetime, datetime]],
    dialect: str,
) -> None:
    columns = [
        (
            local_text(model.period_start, offset, name, dialect)
            if name in TIME_GROUPS
            else getattr(model, name)
        ).label(f"key_{index}")
        for index, name in enumerate(query.group_by)
    ]
    within = sa.or_(*(sa.and_(model.period_start >= a, model.period_start < b) for a, b in ranges))
    where = [
        model.grain == grain.id,
        model.span == span,
        within,
        *(getattr(model, name) == value for name, value in query.filters().items()),
    ]
    if model is StatsCell:
        status = StatsCell.status.label("counted_status")
        sums = [sa.func.sum(StatsCell.total), sa.func.sum(StatsCell.credits_e4), sa.func.sum(StatsCell.units)]
        statement = sa.select(*columns, status, *sums).where(*where).group_by(*columns, status)
    else:
        sums = [sa.func.sum(StatsDelay.count)]
        statement = (
            sa.select(*columns, StatsDelay.delay_us, *sums)
            .where(*where)
            .group_by(*columns, StatsDelay.delay_us)
        )
    width = len(columns)
    for row in session.execute(statement):
        key = tuple(
            timekeys.key_of_text(name, offset, value) if name in TIME_GROUPS else value
            for name, value in zip(query.group_by, row[:width], strict=True)
        )
        rest = row[width:]
        if model is StatsCell:
            totals.add_counts(key, rest[0], int(rest[1]), int(rest[2]), int(rest[3]))
        else:
            totals.add_delays(key, int(rest[0]), int(rest[1]))
