"""Read side: the filters and keyset pagination shared by the JSON lists and the CSV export.

Every list is ordered newest first on a key that never changes once a row exists (a time, then
the row's id to break ties), and a page continues strictly after the last row of the previous
one. Rows that arrive while a client pages are therefore never shown twice and never push other
rows off a page, as offsets would.

A cursor is opaque to clients: a version, the list it belongs to, a fingerprint of the filters
it was issued for, the position, and a checksum. Anything else is refused (`CursorError`), so a
cursor from another list, another filter or another program is a 422, not a silent wrong page.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy import orm

from ..models import MAX_ID, Call, ContactEvent, InboundMessage, Message, OptOut, RawEvent, Recording

_CURSOR_VERSION = "c1"
_CHECK_BYTES = 8
_MAX_CURSOR_CHARS = 1024


class CursorError(ValueError):
    """A cursor receiver did not issue for this list and these filters."""


@dataclass(frozen=True)
class SortKey:
    """One column of a list's order. A nullable key sorts its NULLs first (as if +infinity)."""

    column: orm.InstrumentedAttribute[Any]
    kind: type
    nullable: bool = False


Predicate = Callable[[Any], sa.ColumnElement[bool]]


@dataclass(frozen=True)
class Listing:
    """How one resource is listed: its model, its order (newest first) and its filters."""

    name: str
    model: type[Any]
    order: tuple[SortKey, ...]
    filters: Mapping[str, Predicate] = field(default_factory=dict)

    def position_of(self, row: Any) -> tuple[Any, ...]:
        """The sort key values of a row, as a page continues after it."""
        return tuple(getattr(row, key.column.key) for key in self.order)


def _equals(column: Any) -> Predicate:
    return lambda value: column == value


def _since(column: Any) -> Predicate:
    return lambda value: column >= value


def _until(column: Any) -> Predicate:
    return lambda value: column < value


# A number filter's value comes canonical (receiver.numbers) from the query-string schema, and is
# matched against the canonical column.
MESSAGES = Listing(
    "messages",
    Message,
    (SortKey(Message.created_at, datetime), SortKey(Message.id, str)),
    {
        "mobile": _equals(Message.mobile_canonical),
        "status": _equals(Message.status),
        "provider_status": _equals(Message.provider_status),
        "operator": _equals(Message.operator),
        "region": _equals(Message.region),
        "sender": _equals(Message.sender),
        "channel": _equals(Message.channel),
        "custom": _equals(Message.custom),
        "source": _equals(Message.source),
        "since": _since(Message.created_at),
        "until": _until(Message.created_at),
    },
)

INBOUND = Listing(
    "inbound",
    InboundMessage,
    (SortKey(InboundMessage.received_at, datetime), SortKey(InboundMessage.id, str)),
    {
        "from": _equals(InboundMessage.from_canonical),
        "to": _equals(InboundMessage.to_canonical),
        "channel": _equals(InboundMessage.channel),
        "source": _equals(InboundMessage.source),
        "since": _since(InboundMessage.received_at),
        "until": _until(InboundMessage.received_at),
    },
)

CALLS = Listing(
    "calls",
    Call,
    (SortKey(Call.start_at, datetime, nullable=True), SortKey(Call.id, int)),
    {
        "from": _equals(Call.from_canonical),
        "to": _equals(Call.to_canonical),
        "mid": _equals(Call.mid),
        "status": _equals(Call.status),
        "source": _equals(Call.source),
        "since": _since(Call.start_at),
        "until": _until(Call.start_at),
    },
)

EVENTS = Listing(
    "events",
    RawEvent,
    (SortKey(RawEvent.id, int),),
    {
        "state": _equals(RawEvent.state),
        "source": _equals(RawEvent.source),
        "since": _since(RawEvent.received_at),
        "until": _until(RawEvent.received_at),
    },
)

OPT_OUTS = Listing(
    "opt-outs",
    OptOut,
    (SortKey(OptOut.received_at, datetime), SortKey(OptOut.id, int)),
    {
        "number": _equals(OptOut.number_canonical),
        "channel": _equals(OptOut.channel),
        "source": _equals(OptOut.source),
        "since": _since(OptOut.received_at),
        "until": _until(OptOut.received_at),
    },
)

RECORDINGS = Listing(
    "recordings",
    Recording,
    (SortKey(Recording.id, int),),
    {
        "state": _equals(Recording.state),
        "call_id": _equals(Recording.call_id),
        "since": _since(Recording.created_at),
        "until": _until(Recording.created_at),
    },
)

CONTACTS = Listing(
    "contacts",
    ContactEvent,
    (SortKey(ContactEvent.received_at, datetime), SortKey(ContactEvent.id, int)),
    {
        "number": _equals(ContactEvent.number_canonical),
        "identity": _equals(ContactEvent.identity),
        "contact_id": _equals(ContactEvent.contact_id),
        "source": _equals(ContactEvent.source),
        "since": _since(ContactEvent.received_at),
        "until": _until(ContactEvent.received_at),
    },
)


def opt_out_channels(session: orm.Session, number: str) -> list[str | None] | None:
    """The channels a (canonical) number opted out of, None standing for an opt-out that named
    none; None if the number never opted out."""
    found = list(
        session.scalars(sa.select(OptOut.channel).where(OptOut.number_canonical == number).distinct())
    )
    if not found:
        return None
    return sorted(found, key=lambda channel: (channel is None, channel or ""))


# -- statements -------------------------------------------------------------------------------


def _ordering(listing: Listing) -> list[sa.UnaryExpression[Any]]:
    # NULLS FIRST in a descending order is PostgreSQL's own order, so its btree indexes serve it.
    return [key.column.desc().nulls_first() if key.nullable else key.column.desc() for key in listing.order]


def _after(listing: Listing, position: Sequence[Any]) -> sa.ColumnElement[bool]:
    """Rows strictly after `position` in the list's (descending) order."""
    columns = [key.column for key in listing.order]
    if len(columns) == 1:
        return columns[0] < position[0]
    rest = (
        sa.tuple_(*columns[1:]) < sa.tuple_(*position[1:]) if len(columns) > 2 else columns[1] < position[1]
    )
    if listing.order[0].nullable and position[0] is None:
        # Still among the NULL keys (which come first): the rest of them, then every non-NULL key.
        return sa.or_(sa.and_(columns[0].is_(None), rest), columns[0].is_not(None))
    # A row value comparison, which both PostgreSQL and SQLite match against a composite index.
    return sa.tuple_(*columns) < sa.tuple_(*position)


def filtered(listing: Listing, filters: Mapping[str, Any], *columns: Any) -> sa.Select[Any]:
    """SELECT the listing's rows (or the given columns of them) matching `filters`, in order."""
    statement = sa.select(*columns) if columns else sa.select(listing.model)
    for name, value in filters.items():
        if value is not None:
            statement = statement.where(listing.filters[name](value))
    return statement.order_by(*_ordering(listing))


@dataclass
class Page:
    rows: list[Any]
    next_position: tuple[Any, ...] | None


def fetch_page(
    session: orm.Session,
    listing: Listing,
    filters: Mapping[str, Any],
    columns: Sequence[Any],
    *,
    limit: int,
    after: Sequence[Any] | None = None,
) -> Page:
    """One page of at most `limit` rows (of `columns`, which hold the sort keys) after `after`,
    and where the next page starts (or None)."""
    statement = filtered(listing, filters, *columns)
    if after is not None:
        statement = statement.where(_after(listing, after))
    rows = list(session.execute(statement.limit(limit + 1)))
    more = len(rows) > limit
    rows = rows[:limit]
    return Page(rows, listing.position_of(rows[-1]) if more else None)


# -- cursors ----------------------------------------------------------------------------------


def _plain(value: Any) -> Any:
    if isinstance(value, datetime | date):
        return value.isoformat()
    return getattr(value, "value", value)  # enums by their value


def fingerprint(filters: Mapping[str, Any]) -> str:
    """A short digest of the filters a cursor was issued for."""
    plain = {name: _plain(value) for name, value in sorted(filters.items()) if value is not None}
    text = json.dumps(plain, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _check(payload: bytes) -> bytes:
    return hashlib.sha256(b"receiver cursor\n" + payload).digest()[:_CHECK_BYTES]


def encode_cursor(listing: Listing, filters: Mapping[str, Any], position: Sequence[Any]) -> str:
    """The opaque cursor of the page after `position`."""
    document = [_CURSOR_VERSION, listing.name, fingerprint(filters), [_plain(v) for v in position]]
    payload = json.dumps(document, separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(payload + _check(payload)).rstrip(b"=").decode()


def decode_cursor(listing: Listing, filters: Mapping[str, Any], cursor: str) -> tuple[Any, ...]:
    """The position a cursor stands for; CursorError unless receiver issued it for this query."""
    if not cursor or len(cursor) > _MAX_CURSOR_CHARS:
        raise CursorError("not a cursor issued by receiver")
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
    except (binascii.Error, ValueError):
        raise CursorError("not a cursor issued by receiver") from None
    payload, check = raw[:-_CHECK_BYTES], raw[-_CHECK_BYTES:]
    if len(raw) <= _CHECK_BYTES or check != _check(payload):
        raise CursorError("not a cursor issued by receiver")
    try:
        version, name, prints, values = json.loads(payload)
    except ValueError:
        raise CursorError("not a cursor issued by receiver") from None
    if version != _CURSOR_VERSION or name != listing.name:
        raise CursorError(f"not a cursor of the {listing.name} list")
    if prints != fingerprint(filters):
        raise CursorError("issued for other filters: keep the filters of the first page")
    if not isinstance(values, list) or len(values) != len(listing.order):
        raise CursorError("not a cursor issued by receiver")
    return tuple(_position_value(key, value) for key, value in zip(listing.order, values, strict=True))


def _position_value(key: SortKey, value: Any) -> Any:
    if value is None and key.nullable:
        return None
    if key.kind is datetime and isinstance(value, str):
        try:
            moment = datetime.fromisoformat(value)
        except ValueError:
            raise CursorError("not a cursor issued by receiver") from None
        if moment.tzinfo is not None:
            return moment
    if key.kind is int and type(value) is int and 0 <= value <= MAX_ID:
        return value
    if key.kind is str and isinstance(value, str) and 0 < len(value) <= 256:
        return value
    raise CursorError("not a cursor issued by receiver")
