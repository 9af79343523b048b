"""The provider's times and days, and the durations the commands take."""

from __future__ import annotations

import re
from datetime import UTC, date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

_DURATION = re.compile(r"\s*(\d+)\s*([smhd])\s*", re.IGNORECASE)
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def provider_time(value: Any, zone: ZoneInfo) -> datetime | None:
    """A time as the pull APIs give it: unix seconds, ISO 8601, or a zone-less text in `zone`."""
    if value is None:
        return None
    text = str(value).strip()
    if not text or text.startswith("0000-00-00"):
        return None
    if text.isdigit():
        return datetime.fromtimestamp(int(text), UTC)
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        return None
    return (parsed if parsed.tzinfo else parsed.replace(tzinfo=zone)).astimezone(UTC)


def seconds(value: Any) -> int | None:
    """Seconds from `"00:01:33"` or a number."""
    if value is None or value == "":
        return None
    text = str(value).strip()
    try:
        if ":" in text:
            total = 0
            for part in text.split(":"):
                total = total * 60 + int(part)
            return total
        return round(float(text))
    except ValueError:
        return None


def day_bounds(day: date, zone: ZoneInfo) -> tuple[datetime, datetime]:
    """The provider's day `day` (in its zone) as a UTC interval [start, end)."""
    start = datetime.combine(day, time(0), tzinfo=zone)
    end = datetime.combine(day + timedelta(days=1), time(0), tzinfo=zone)
    return start.astimezone(UTC), end.astimezone(UTC)


def today(zone: ZoneInfo, now: datetime | None = None) -> date:
    """Today in the provider's zone."""
    return (now or datetime.now(UTC)).astimezone(zone).date()


def parse_duration(text: str) -> timedelta:
    """`30s`, `90m`, `6h` or `2d`."""
    match = _DURATION.fullmatch(text)
    if match is None:
        raise ValueError(f"not a duration: {text!r} (say 30s, 90m, 6h or 2d)")
    return timedelta(seconds=int(match.group(1)) * _UNITS[match.group(2).lower()])


def parse_day(text: str) -> date:
    """A day as YYYY-MM-DD."""
    try:
        day = date.fromisoformat(text.strip())
    except ValueError:
        raise ValueError(f"not a day: {text!r} (say YYYY-MM-DD)") from None
    if day in (date.min, date.max):  # its bounds in the provider's zone fall off the calendar
        raise ValueError(f"not a day the provider can have: {text!r}")
    return day
