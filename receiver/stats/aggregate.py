"""Sums per group, from summaries and from messages alike, and the rows they make.

Every part of an answer (summary cells, messages read directly) adds into the same `Totals`, so
one rule says what a row holds: its counts per status, credits and units, and the delivery-time
percentiles computed exactly from every delivery's time (a histogram of exact microseconds).
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Hashable
from dataclasses import dataclass, field
from decimal import Decimal
from fractions import Fraction
from typing import Any

from ..models import FINAL_STATUSES, Status
from . import timekeys
from .query import STATUS_COUNTS, TIME_GROUPS

ANSWERED = frozenset({Status.delivered.value, Status.read.value})
FINAL = frozenset(status.value for status in FINAL_STATUSES)
CREDIT_PLACES = Decimal("0.0001")


def _ranked(histogram: Counter[int], fraction: Fraction) -> tuple[int, int, Fraction] | None:
    """The values at the two ranks around the percentile, and how far between them it lies."""
    n = sum(histogram.values())
    if n == 0:
        return None
    rank = fraction * (n - 1)
    low_rank = rank.numerator // rank.denominator
    high_rank = low_rank + 1 if rank > low_rank else low_rank
    low = high = None
    seen = 0
    for value in sorted(histogram):
        seen += histogram[value]
        if low is None and low_rank < seen:
            low = value
        if high_rank < seen:
            high = value
            break
    assert low is not None and high is not None
    return low, high, rank - low_rank


def percentile(histogram: Counter[int], fraction: Fraction) -> Fraction | None:
    """The percentile by linear interpolation between the two nearest ranks (as PostgreSQL's
    `percentile_cont` and most tools compute it), exactly, from counts of exact values."""
    ranked = _ranked(histogram, fraction)
    if ranked is None:
        return None
    low, high, between = ranked
    return low + (high - low) * between


def seconds(micros: Fraction | None) -> float | None:
    """Microseconds as seconds, rounded to the microsecond."""
    if micros is None:
        return None
    return round(micros) / 1_000_000


@dataclass
class Group:
    counts: Counter[str] = field(default_factory=Counter)
    credits_e4: int = 0
    units: int = 0
    delays: Counter[int] = field(default_factory=Counter)


PERCENTILES = (Fraction(1, 2), Fraction(9, 10))


class Totals:
    """Sums per group key (a tuple of the query's group values, in its order).

    With `cap`, delivery times over it are counted together as `overflow` (as the summaries keep
    them); `tail_needed` then says whether a percentile fell among them.
    """

    def __init__(self, group_by: tuple[str, ...], cap: int | None = None, overflow: int = 0) -> None:
        self.group_by = group_by
        self.groups: defaultdict[tuple[Hashable, ...], Group] = defaultdict(Group)
        self.cap = cap
        self.overflow = overflow

    def add_counts(
        self, key: tuple[Hashable, ...], status: str, total: int, credits: int, units: int
    ) -> None:
        group = self.groups[key]
        group.counts[status] += total
        group.credits_e4 += credits
        group.units += units

    def add_delays(self, key: tuple[Hashable, ...], delay_us: int, count: int) -> None:
        if self.cap is not None and delay_us > self.cap:
            delay_us = self.overflow
        self.groups[key].delays[delay_us] += count

    def tail_needed(self) -> list[tuple[Hashable, ...]]:
        """The groups one of whose percentiles lies among the delivery times counted together."""
        if self.cap is None:
            return []
        needy = []
        for key, group in self.groups.items():
            if not group.delays.get(self.overflow):
                continue
            for fraction in PERCENTILES:
                ranked = _ranked(group.delays, fraction)
                if ranked is not None and self.overflow in (ranked[0], ranked[1] if ranked[2] else ranked[0]):
                    needy.append(key)
                    break
        return needy

    def replace_delays(self, key: tuple[Hashable, ...], exact: Totals) -> None:
        """Take a group's delivery times from `exact` (read from the messages, uncapped)."""
        self.groups[key].delays = exact.groups[key].delays if key in exact.groups else Counter()

    def rows(self) -> list[dict[str, Any]]:
        """One flat row a group, ordered by the group values (missing values last)."""
        ordered = sorted(
            (key for key, group in self.groups.items() if sum(group.counts.values())),
            key=lambda key: tuple((value is None, value if value is not None else "") for value in key),
        )
        return [self._row(key, self.groups[key]) for key in ordered]

    def _row(self, key: tuple[Hashable, ...], group: Group) -> dict[str, Any]:
        row: dict[str, Any] = {}
        for name, value in zip(self.group_by, key, strict=True):
            row[name] = timekeys.show(name, value) if name in TIME_GROUPS else value
        row["total"] = sum(group.counts.values())
        for status in STATUS_COUNTS:
            row[status] = group.counts[status]
        final = sum(group.counts[status] for status in FINAL)
        answered = sum(group.counts[status] for status in ANSWERED)
        row["delivery_rate"] = answered / final if final else None
        row["credits"] = str((Decimal(group.credits_e4) / 10_000).quantize(CREDIT_PLACES))
        row["units"] = group.units
        p50, p90 = (percentile(group.delays, fraction) for fraction in PERCENTILES)
        row["delivery_seconds_p50"] = seconds(p50)
        row["delivery_seconds_p90"] = seconds(p90)
        return row
