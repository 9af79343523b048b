"""Days and hours in a time zone: how a window splits where the zone's offset changes, and the
key of the day or hour a time or a whole period falls in.

A day key is the local date; an hour key is the UTC instant the local hour starts at, with the
offset in force then (so that the two 01:00 hours of a night the clocks go back stay apart, and
keys sort in time order).
"""

from __future__ import annotations

from collections.abc import Hashable
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta, timezone, tzinfo

ONE_US = timedelta(microseconds=1)
_STEP = timedelta(hours=1)


def offset_at(zone: tzinfo, moment: datetime) -> int:
    """The zone's UTC offset at a UTC moment, in seconds."""
    offset = moment.astimezone(zone).utcoffset()
    return int(offset.total_seconds()) if offset is not None else 0


@dataclass(frozen=True)
class Piece:
    """A span of time over which the zone's offset stays the same."""

    start: datetime
    end: datetime
    offset: int


def pieces(zone: tzinfo, start: datetime, end: datetime) -> list[Piece]:
    """Split [start, end) at every change of the zone's offset (found to the second)."""
    found: list[Piece] = []
    piece_start, offset = start, offset_at(zone, start)
    probe = start
    while probe < end:
        following = min(probe + _STEP, end)
        last = following - ONE_US
        if offset_at(zone, last) != offset:
            low, high = probe, last  # offset at low is `offset`, at high it is not
            while high - low > timedelta(seconds=1):
                middle = low + (high - low) / 2
                low, high = (middle, high) if offset_at(zone, middle) == offset else (low, middle)
            change = high.replace(microsecond=0) if high.microsecond else high
            if offset_at(zone, change) == offset:  # the change came at a fraction of a second
                change = high
            found.append(Piece(piece_start, change, offset))
            piece_start, offset = change, offset_at(zone, change)
            following = change
        probe = following
    found.append(Piece(piece_start, end, offset))
    return found


def key_of(unit: str, offset: int, moment: datetime) -> Hashable:
    """The day or hour key of a UTC moment, at a given offset."""
    local = moment + timedelta(seconds=offset)
    if unit == "day":
        return local.date()
    start = local.replace(minute=0, second=0, microsecond=0) - timedelta(seconds=offset)
    return (start, offset)


def key_of_text(unit: str, offset: int, text: str) -> Hashable:
    """The key of a local day (`YYYY-MM-DD`) or hour (`YYYY-MM-DD HH`) the database wrote."""
    if unit == "day":
        return date.fromisoformat(text)
    local = datetime.strptime(text, "%Y-%m-%d %H").replace(tzinfo=UTC)
    return (local - timedelta(seconds=offset), offset)


def period_key(unit: str, zone: tzinfo, start: datetime, end: datetime) -> Hashable | None:
    """The one key every moment of [start, end) has, or None when the period spans two."""
    offset = offset_at(zone, start)
    last = end - ONE_US
    if offset_at(zone, last) != offset:
        return None
    key = key_of(unit, offset, start)
    return key if key_of(unit, offset, last) == key else None


def show(unit: str, key: Hashable) -> str:
    """A key as the answer writes it: `2026-01-31`, or `2026-01-31T10:00:00+05:30`."""
    if unit == "day":
        assert isinstance(key, date)
        return key.isoformat()
    assert isinstance(key, tuple)
    start, offset = key
    return start.astimezone(timezone(timedelta(seconds=offset))).isoformat()
