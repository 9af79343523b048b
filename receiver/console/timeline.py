"""A number's timeline: its messages, inbound messages, calls and opt-outs, newest first, paged.

Each kind is read from its own index on (canonical number, time, id) in keyset order, at most a
page of rows each, and the streams are merged here. A page therefore costs a few index range
scans whatever the number's history holds. The order is (time, kind rank, id) descending, and a
page continues strictly after the last item shown, so items never repeat or go missing between
pages.

The time of each kind: a message, when receiver first heard of it; an inbound message, when it
was received; a call, when it started (calls without a start time come last); an opt-out, when
it was received.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy import orm

from ..models import Call, InboundMessage, Message, MessageEvent, OptOut, Recording
from . import cursors

EARLIEST = datetime.min.replace(tzinfo=UTC)  # where calls without a start time sort


@dataclass(frozen=True)
class Stream:
    kind: str
    rank: int  # breaks ties of time between kinds
    model: type[Any]
    time: Any
    id: Any
    matches: Callable[[str], sa.ColumnElement[bool]]


STREAMS = (
    Stream("call", 3, Call, Call.start_at, Call.id, lambda n: Call.from_canonical == n),
    Stream("call", 3, Call, Call.start_at, Call.id, lambda n: Call.to_canonical == n),
    Stream(
        "inbound",
        2,
        InboundMessage,
        InboundMessage.received_at,
        InboundMessage.id,
        lambda n: InboundMessage.from_canonical == n,
    ),
    Stream(
        "inbound",
        2,
        InboundMessage,
        InboundMessage.received_at,
        InboundMessage.id,
        lambda n: InboundMessage.to_canonical == n,
    ),
    Stream("message", 1, Message, Message.created_at, Message.id, lambda n: Message.mobile_canonical == n),
    Stream("opt_out", 0, OptOut, OptOut.received_at, OptOut.id, lambda n: OptOut.number_canonical == n),
)
RANK_KINDS: dict[int, tuple[type, ...]] = {3: (int,), 2: (str,), 1: (str,), 0: (int,)}


@dataclass(frozen=True)
class Position:
    time: datetime  # EARLIEST for a call without a start time
    rank: int
    id: Any

    def key(self) -> tuple[datetime, int, Any]:
        return (self.time, self.rank, self.id)


@dataclass
class Item:
    kind: str
    position: Position
    row: Any
    events: list[MessageEvent] | None = None
    recordings: list[Recording] | None = None


@dataclass
class TimelinePage:
    number: str
    items: list[Item]
    next_cursor: str | None


def _after(stream: Stream, after: Position) -> sa.ColumnElement[bool]:
    if stream.rank < after.rank:
        return stream.time <= after.time
    if stream.rank > after.rank:
        return stream.time < after.time
    return sa.tuple_(stream.time, stream.id) < sa.tuple_(after.time, after.id)


def _timed(
    session: orm.Session, stream: Stream, number: str, after: Position | None, limit: int
) -> list[Any]:
    statement = sa.select(stream.model).where(stream.matches(number))
    if stream.kind == "call":  # the only kind whose time may be missing
        statement = statement.where(stream.time.is_not(None))
    if after is not None:
        if after.time == EARLIEST:
            return []  # past every timed row already
        statement = statement.where(_after(stream, after))
    statement = statement.order_by(stream.time.desc(), stream.id.desc()).limit(limit)
    return list(session.scalars(statement))


def _untimed(
    session: orm.Session, stream: Stream, number: str, after: Position | None, limit: int
) -> list[Any]:
    """Calls without a start time, which come after every timed item."""
    statement = sa.select(stream.model).where(stream.matches(number), stream.time.is_(None))
    if after is not None and after.time == EARLIEST:
        if stream.rank > after.rank:
            return []
        if stream.rank == after.rank:
            statement = statement.where(stream.id < after.id)
    return list(session.scalars(statement.order_by(stream.id.desc()).limit(limit)))


def _position(stream: Stream, row: Any) -> Position:
    return Position(getattr(row, stream.time.key) or EARLIEST, stream.rank, getattr(row, stream.id.key))


def decode_cursor(cursor: str) -> Position:
    moment, rank = cursors.decode(cursor, [datetime, int, (int, str)])[:2]
    if rank not in RANK_KINDS:
        raise cursors.BadCursor("not a timeline cursor")
    (identifier,) = cursors.decode(cursor, [datetime, int, RANK_KINDS[rank]])[2:]
    return Position(moment, rank, identifier)


def timeline(session: orm.Session, number: str, cursor: str | None = None, limit: int = 50) -> TimelinePage:
    """One page of a (canonical) number's timeline; cursors.BadCursor for a cursor not issued here."""
    after = decode_cursor(cursor) if cursor else None
    found: dict[tuple[str, Any], Item] = {}
    for stream in STREAMS:
        rows = _timed(session, stream, number, after, limit + 1)
        if stream.kind == "call":
            rows += _untimed(session, stream, number, after, limit + 1)
        for row in rows:
            position = _position(stream, row)
            found.setdefault((stream.kind, position.id), Item(stream.kind, position, row))
    items = sorted(found.values(), key=lambda item: item.position.key(), reverse=True)
    more = len(items) > limit
    items = items[:limit]
    _attach_details(session, items)
    last = items[-1].position if more else None
    next_cursor = cursors.encode([last.time, last.rank, last.id]) if last is not None else None
    return TimelinePage(number, items, next_cursor)


def _attach_details(session: orm.Session, items: list[Item]) -> None:
    """Each message's status history and each call's recordings, in one query per kind."""
    message_ids = [item.row.id for item in items if item.kind == "message"]
    call_ids = [item.row.id for item in items if item.kind == "call"]
    events: dict[str, list[MessageEvent]] = {}
    if message_ids:
        for event in session.scalars(
            sa.select(MessageEvent)
            .where(MessageEvent.message_id.in_(message_ids))
            .order_by(sa.func.coalesce(MessageEvent.occurred_at, MessageEvent.received_at), MessageEvent.id)
        ):
            events.setdefault(event.message_id, []).append(event)
    recordings: dict[int, list[Recording]] = {}
    if call_ids:
        for recording in session.scalars(
            sa.select(Recording).where(Recording.call_id.in_(call_ids)).order_by(Recording.id)
        ):
            recordings.setdefault(recording.call_id, []).append(recording)
    for item in items:
        if item.kind == "message":
            item.events = events.get(item.row.id, [])
        elif item.kind == "call":
            item.recordings = recordings.get(item.row.id, [])
