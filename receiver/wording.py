"""Counts in messages: "1 hour", "2 hours", never "1 hours" or "hour(s)"."""

from __future__ import annotations


def plural(count: float, noun: str, nouns: str | None = None) -> str:
    """`count` and `noun`, the noun in the plural unless the count is one (`nouns` if irregular)."""
    if isinstance(count, float) and count.is_integer():
        count = int(count)
    shown = f"{count:g}" if isinstance(count, float) else str(count)
    return f"{shown} {noun if count == 1 else nouns or noun + 's'}"


def duration(seconds: float) -> str:
    """A duration in the largest whole unit: "2 hours", "90 minutes", "45 seconds"."""
    for size, unit in ((3600, "hour"), (60, "minute")):
        if seconds >= size and seconds % size == 0:
            return plural(seconds // size, unit)
    return plural(seconds, "second")
