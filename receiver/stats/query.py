"""What a statistics request asks: the window, the groups, the filters; and the rules they follow.

The same query objects serve the API (`/api/v1/stats/...`) and the console's dashboard, so that a
number on a chart is the number the API answers.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from ..models import Status

DEFAULT_DAYS = 7
MAX_DAYS = 400
# Bounds of any window: far enough from the ends of the calendar to count days and hours in.
EARLIEST = datetime(1970, 1, 1, tzinfo=UTC)
LATEST = datetime(9000, 1, 1, tzinfo=UTC)

# What a message row can be grouped by; `day` and `hour` in the query's time zone.
MESSAGE_GROUPS = (
    "day",
    "hour",
    "channel",
    "source",
    "service",
    "sender",
    "operator",
    "region",
    "status",
    "provider_status",
    "custom",
)
CALL_GROUPS = ("day", "status", "service", "hangup_by")
TIME_GROUPS = frozenset({"day", "hour"})
STATUS_COUNTS = tuple(status.value for status in Status)
# The columns of a row after its group values.
MESSAGE_MEASURES = [
    "total",
    *STATUS_COUNTS,
    "delivery_rate",
    "credits",
    "units",
    "delivery_seconds_p50",
    "delivery_seconds_p90",
]
CALL_MEASURES = [
    "calls",
    "answered",
    "duration_seconds",
    "duration_seconds_avg",
    "billing",
    "recordings_stored",
    "recordings_waiting",
    "recordings_failed",
]


class StatsQueryError(ValueError):
    """A query the rules refuse; `field` names the parameter at fault."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field


@dataclass(frozen=True)
class Window:
    """A half-open span of time [since, until), both UTC."""

    since: datetime
    until: datetime


def _window(since: datetime | None, until: datetime | None, now: datetime | None) -> Window:
    """Default: the last DEFAULT_DAYS days up to `until` (now when not given); at most MAX_DAYS."""
    for name, moment in (("since", since), ("until", until)):
        if moment is not None and moment.tzinfo is None:
            raise StatsQueryError(name, "a time with its zone is needed")
    for name, moment in (("since", since), ("until", until)):
        if moment is not None and not EARLIEST <= moment <= LATEST:
            raise StatsQueryError(name, f"must be between {EARLIEST.date()} and {LATEST.date()}")
    end = (until or now or datetime.now(UTC)).astimezone(UTC)
    start = (since or end - timedelta(days=DEFAULT_DAYS)).astimezone(UTC)
    if start >= end:
        raise StatsQueryError("until", "must be later than since")
    if end - start > timedelta(days=MAX_DAYS):
        raise StatsQueryError("since", f"the window may span at most {MAX_DAYS} days")
    return Window(start, end)


def _zone(name: str) -> ZoneInfo:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise StatsQueryError("tz", f"not a time zone: {name!r}") from None


def _groups(given: tuple[str, ...], allowed: tuple[str, ...]) -> tuple[str, ...]:
    unknown = [name for name in given if name not in allowed]
    if unknown:
        choices = ", ".join(allowed)
        raise StatsQueryError("group_by", f"cannot group by {', '.join(unknown)}; one of {choices}")
    # Each named once, in the order given.
    return tuple(dict.fromkeys(given))


@dataclass(frozen=True)
class MessageStatsQuery:
    """Outbound messages counted by group, over a window on `created_at`."""

    since: datetime | None = None
    until: datetime | None = None
    group_by: tuple[str, ...] = ()
    tz: str = "UTC"
    channel: str | None = None
    source: str | None = None
    service: str | None = None
    sender: str | None = None
    window: Window = field(init=False, repr=False, compare=False)
    zone: ZoneInfo = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "group_by", _groups(tuple(self.group_by), MESSAGE_GROUPS))
        object.__setattr__(self, "zone", _zone(self.tz))
        object.__setattr__(self, "window", _window(self.since, self.until, None))

    def filters(self) -> dict[str, str]:
        """The dimension filters given, by column name."""
        given = {
            "channel": self.channel,
            "source": self.source,
            "service": self.service,
            "sender": self.sender,
        }
        return {name: value for name, value in given.items() if value is not None}

    def at(self, now: datetime) -> MessageStatsQuery:
        """The same query with its default window ending at `now` (for tests and repeatable runs)."""
        query = replace(self)
        object.__setattr__(query, "window", _window(self.since, self.until, now))
        return query


@dataclass(frozen=True)
class CallStatsQuery:
    """Calls counted by group, over a window on `start_at`."""

    since: datetime | None = None
    until: datetime | None = None
    group_by: tuple[str, ...] = ()
    tz: str = "UTC"
    source: str | None = None
    service: str | None = None
    window: Window = field(init=False, repr=False, compare=False)
    zone: ZoneInfo = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "group_by", _groups(tuple(self.group_by), CALL_GROUPS))
        object.__setattr__(self, "zone", _zone(self.tz))
        object.__setattr__(self, "window", _window(self.since, self.until, None))

    def filters(self) -> dict[str, str]:
        given = {"source": self.source, "service": self.service}
        return {name: value for name, value in given.items() if value is not None}
