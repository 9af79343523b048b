"""Call statistics: calls, answered calls, durations, billing and recordings, by group.

Read from the calls themselves (an index range on `start_at`): calls come in far smaller numbers
than messages, and their recordings change state long after the call.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Hashable, Sequence
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy import orm

from ..models import Call, Recording, RecordingState
from . import timekeys
from .grains import local_text
from .query import TIME_GROUPS, CallStatsQuery

# The provider's statuses of a call that was answered: `ANSWER` (outbound dialling) and
# `COMPLETED` (click-to-call, the second leg answered).
ANSWERED = ("ANSWER", "COMPLETED")
_WAITING = [state for state in RecordingState if state not in (RecordingState.stored, RecordingState.failed)]


@dataclass
class _Group:
    calls: int = 0
    answered: int = 0
    duration: int = 0
    timed: int = 0
    billing: int = 0
    stored: int = 0
    waiting: int = 0
    failed: int = 0


def call_stats(session: orm.Session, query: CallStatsQuery) -> list[dict[str, Any]]:
    """The rows of `GET /api/v1/stats/calls` for this query."""
    dialect = session.get_bind().dialect.name
    groups: defaultdict[tuple[Hashable, ...], _Group] = defaultdict(_Group)
    units = [name for name in query.group_by if name in TIME_GROUPS]
    parts = timekeys.pieces(query.zone, query.window.since, query.window.until) if units else []
    for piece in parts or [timekeys.Piece(query.window.since, query.window.until, 0)]:
        columns = [
            (
                local_text(Call.start_at, piece.offset, name, dialect)
                if name in TIME_GROUPS
                else getattr(Call, name)
            ).label(f"key_{index}")
            for index, name in enumerate(query.group_by)
        ]
        where = [
            Call.start_at >= piece.start,
            Call.start_at < piece.end,
            *(getattr(Call, name) == value for name, value in query.filters().items()),
        ]

        def key(values: Sequence[Any], offset: int = piece.offset) -> tuple[Hashable, ...]:
            return tuple(
                timekeys.key_of_text(name, offset, value) if name in TIME_GROUPS else value
                for name, value in zip(query.group_by, values, strict=True)
            )

        answered = sa.func.upper(Call.status).in_(ANSWERED)
        calls = sa.select(
            *columns,
            sa.func.count(),
            sa.func.count().filter(answered),
            sa.func.coalesce(sa.func.sum(Call.duration), 0),
            sa.func.count(Call.duration),
            sa.func.coalesce(sa.func.sum(Call.billing), 0),
        ).where(*where)
        width = len(columns)
        for row in session.execute(calls.group_by(*columns) if columns else calls):
            group = groups[key(row[:width])]
            group.calls, group.answered, group.duration, group.timed, group.billing = (
                int(value) for value in row[width:]
            )
        recordings = (
            sa.select(
                *columns,
                sa.func.count().filter(Recording.state == RecordingState.stored),
                sa.func.count().filter(Recording.state.in_(_WAITING)),
                sa.func.count().filter(Recording.state == RecordingState.failed),
            )
            .select_from(Call)  # with no group column, nothing else names the table to join from
            .join(Recording, Recording.call_id == Call.id)
            .where(*where)
        )
        for row in session.execute(recordings.group_by(*columns) if columns else recordings):
            if row[width:] == (0, 0, 0):
                continue
            group = groups[key(row[:width])]
            group.stored, group.waiting, group.failed = (int(value) for value in row[width:])
    return _rows(query, groups)


def _rows(query: CallStatsQuery, groups: dict[tuple[Hashable, ...], _Group]) -> list[dict[str, Any]]:
    ordered = sorted(
        (key for key, group in groups.items() if group.calls),
        key=lambda key: tuple((value is None, value if value is not None else "") for value in key),
    )
    rows = []
    for key in ordered:
        group = groups[key]
        row: dict[str, Any] = {
            name: timekeys.show(name, value) if name in TIME_GROUPS else value
            for name, value in zip(query.group_by, key, strict=True)
        }
        row.update(
            calls=group.calls,
            answered=group.answered,
            duration_seconds=group.duration,
            duration_seconds_avg=group.duration / group.timed if group.timed else None,
            billing=group.billing,
            recordings_stored=group.stored,
            recordings_waiting=group.waiting,
            recordings_failed=group.failed,
        )
        rows.append(row)
    return rows
