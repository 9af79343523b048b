"""Reading sums into `Totals`: from the messages themselves, and from the roll-up's summaries."""

from __future__ import annotations

from collections.abc import Hashable, Sequence
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
        status = _message_column("status").label("counted_status")
        counting = (
            sa.select(
                *columns,
                status,
                sa.func.count(),
                sa.func.coalesce(sa.func.sum(credits_e4(dialect)), 0),
                sa.func.coalesce(sa.func.sum(Message.units), 0),
            )
            .where(within, *filters)
            .group_by(*columns, status)
        )
        for row in session.execute(counting) if counts else ():
            totals.add_counts(key(row[:width]), row[width], *(int(v) for v in row[width + 1 :]))
        delay = delay_us(dialect)
        delays = (
            sa.select(*columns, delay, sa.func.count())
            .where(
                within,
                *filters,
                Message.status.in_(ANSWERED),
                Message.submitted_at.is_not(None),
                Message.delivered_at.is_not(None),
            )
            .group_by(*columns, delay)
        )
        for row in session.execute(delays):
            totals.add_delays(key(row[:width]), int(row[width]), int(row[width + 1]))


def read_summaries(
    session: orm.Session,
    query: MessageStatsQuery,
    totals: Totals,
    grains: tuple[Grain, Grain],
    periods: dict[str, list[tuple[datetime, datetime]]],
    period_keys: dict[tuple[str, datetime], dict[str, Hashable]],
) -> None:
    """Add the summaries of whole periods: by span (`h`, `d`), spans of period starts.

    `period_keys` gives each period's day or hour key where the query groups by time.
    """
    units = [name for name in query.group_by if name in TIME_GROUPS]
    models: tuple[type[StatsCell] | type[StatsDelay], ...] = (StatsCell, StatsDelay)
    for model, grain in zip(models, grains, strict=True):
        for span, ranges in periods.items():
            if not ranges:
                continue
            dims = [
                getattr(model, name).label(f"key_{index}")
                for index, name in enumerate(query.group_by)
                if name not in TIME_GROUPS
            ]
            grouped = [model.period_start, *dims] if units else dims
            within = sa.or_(*(sa.and_(model.period_start >= a, model.period_start < b) for a, b in ranges))
            where = [
                model.grain == grain.id,
                model.span == span,
                within,
                *(getattr(model, name) == value for name, value in query.filters().items()),
            ]
            if model is StatsCell:
                selected = [
                    *grouped,
                    StatsCell.status.label("counted_status"),
                    sa.func.sum(StatsCell.total),
                    sa.func.sum(StatsCell.credits_e4),
                    sa.func.sum(StatsCell.units),
                ]
                statement = sa.select(*selected).where(*where).group_by(*grouped, StatsCell.status)
            else:
                selected = [*grouped, StatsDelay.delay_us, sa.func.sum(StatsDelay.count)]
                statement = sa.select(*selected).where(*where).group_by(*grouped, StatsDelay.delay_us)
            for row in session.execute(statement):
                values = list(row)
                keys = period_keys[(span, values.pop(0))] if units else {}
                dim_values = iter(values[: len(dims)])
                key = tuple(
                    keys[name] if name in TIME_GROUPS else next(dim_values) for name in query.group_by
                )
                rest = values[len(dims) :]
                if model is StatsCell:
                    totals.add_counts(key, rest[0], int(rest[1]), int(rest[2]), int(rest[3]))
                else:
                    totals.add_delays(key, int(rest[0]), int(rest[1]))
