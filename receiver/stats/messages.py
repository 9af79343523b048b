"""Message statistics: summaries where they are current, the messages themselves elsewhere.

The window is cut into UTC hours. An hour is read from the summaries when it lies wholly inside
the window, inside one day or hour of the query's zone, and no message first heard of in it
changed since the roll-up's watermark (less its grace); runs of 24 such hours that make a UTC day
are read from the day's summary. Everything else (the window's ragged ends, hours that changed
a moment ago, an hour split by the zone's midnight) is read from the messages, so the sums are
exactly a full scan's.
"""

from __future__ import annotations

from collections.abc import Hashable
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

import sqlalchemy as sa
from flask import current_app, has_app_context
from sqlalchemy import orm

from ..models import Message
from . import timekeys
from .aggregate import Totals
from .grains import EXACT_UP_TO_US, OVERFLOW_US, grain_for
from .query import TIME_GROUPS, MessageStatsQuery
from .rollup import DAY, HOUR, floor_day, floor_hour, read_watermark
from .sources import read_summaries, scan_messages

DEFAULT_GRACE = timedelta(minutes=5)


def rollup_grace() -> timedelta:
    """How late a change may become visible (a long transaction, a clock behind): STATS_ROLLUP_GRACE."""
    if has_app_context():
        return timedelta(seconds=float(current_app.config.get("STATS_ROLLUP_GRACE", DEFAULT_GRACE.seconds)))
    return DEFAULT_GRACE


def message_stats(
    session: orm.Session, query: MessageStatsQuery, *, grace: timedelta | None = None
) -> list[dict[str, Any]]:
    """The rows of `GET /api/v1/stats/messages` for this query."""
    window = query.window
    needed = {name for name in query.group_by if name not in TIME_GROUPS} | set(query.filters())
    grains = grain_for(needed, counts=True), grain_for(needed, counts=False)
    watermark = read_watermark(session)
    if grains[0] is None or grains[1] is None or watermark is None:
        exact = Totals(query.group_by)
        scan_messages(session, query, exact, [(window.since, window.until)])
        return exact.rows()
    changed = _changed_hours(session, query, watermark - (grace if grace is not None else rollup_grace()))
    plan = _Plan(query, changed)
    totals = Totals(query.group_by, cap=EXACT_UP_TO_US, overflow=OVERFLOW_US)
    read_summaries(session, query, totals, (grains[0], grains[1]), plan.periods, plan.keys)
    scan_messages(session, query, totals, plan.scans)
    for key in totals.tail_needed():  # a percentile among the longest deliveries: read them exactly
        exact = Totals(query.group_by)
        spans, where = _group_bounds(query, key)
        scan_messages(session, query, exact, spans, counts=False, where=where)
        totals.replace_delays(key, exact)
    return totals.rows()


def _group_bounds(
    query: MessageStatsQuery, key: tuple[Hashable, ...]
) -> tuple[list[tuple[datetime, datetime]], list[Any]]:
    """Where one group's messages are: the part of the window its day or hour covers, and its values."""
    start, end = query.window.since, query.window.until
    where: list[Any] = []
    for name, value in zip(query.group_by, key, strict=True):
        if name == "day":
            assert isinstance(value, date)
            local = datetime.combine(value, time(), query.zone)
            following = datetime.combine(value + timedelta(days=1), time(), query.zone)
            start, end = max(start, local.astimezone(UTC)), min(end, following.astimezone(UTC))
        elif name == "hour":
            assert isinstance(value, tuple)
            start, end = max(start, value[0]), min(end, value[0] + HOUR)
        else:
            column = getattr(Message, name)
            where.append(column.is_(None) if value is None else column == value)
    return ([(start, end)] if start < end else []), where


def _changed_hours(session: orm.Session, query: MessageStatsQuery, since: datetime) -> set[datetime]:
    """The hours of the window holding a message changed at or after `since`."""
    created = session.scalars(
        sa.select(Message.created_at).where(
            Message.updated_at >= since,
            Message.created_at >= query.window.since,
            Message.created_at < query.window.until,
        )
    )
    return {floor_hour(moment) for moment in created}


class _Plan:
    """Which periods come from summaries (by span), with their time keys; which spans are scanned."""

    def __init__(self, query: MessageStatsQuery, changed: set[datetime]) -> None:
        self.units = [name for name in query.group_by if name in TIME_GROUPS]
        self.zone = query.zone
        self.periods: dict[str, list[tuple[datetime, datetime]]] = {"d": [], "h": []}
        self.keys: dict[tuple[str, datetime], dict[str, Hashable]] = {}
        self.scans: list[tuple[datetime, datetime]] = []
        since, until = query.window.since, query.window.until
        hour = floor_hour(since)
        while hour < until:
            day = floor_day(hour)
            if hour == day and since <= day and day + DAY <= until and self._summarized(day, DAY, changed):
                self._take("d", day, DAY)
                hour = day + DAY
                continue
            if since <= hour and hour + HOUR <= until and self._summarized(hour, HOUR, changed):
                self._take("h", hour, HOUR)
            else:
                self._scan(max(hour, since), min(hour + HOUR, until))
            hour += HOUR

    def _summarized(self, start: datetime, length: timedelta, changed: set[datetime]) -> bool:
        """Whether the period's summary can stand for it: unchanged, and of one day or hour."""
        if length == DAY:
            if any(start + HOUR * i in changed for i in range(24)):
                return False
        elif start in changed:
            return False
        keys = {}
        for unit in self.units:
            key = timekeys.period_key(unit, self.zone, start, start + length)
            if key is None:
                return False
            keys[unit] = key
        self._pending_keys = keys
        return True

    def _take(self, span: str, start: datetime, length: timedelta) -> None:
        ranges = self.periods[span]
        if ranges and ranges[-1][1] == start:
            ranges[-1] = (ranges[-1][0], start + length)
        else:
            ranges.append((start, start + length))
        if self.units:
            self.keys[(span, start)] = self._pending_keys

    def _scan(self, start: datetime, end: datetime) -> None:
        if self.scans and self.scans[-1][1] == start:
            self.scans[-1] = (self.scans[-1][0], end)
        else:
            self.scans.append((start, end))
