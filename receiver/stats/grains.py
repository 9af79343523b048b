"""Which summaries the roll-up keeps (grains), and SQL that reads the same on both databases.

A grain is the set of dimensions its rows keep. Counts always keep the canonical status too, so
for counts a grain naming `status` is the same as one without it. Delay histograms are kept for
fewer grains than counts: with many distinct delivery times, a histogram of a fine grain holds
about as many rows as there are messages, and reading it would be no faster than the messages.
A query is answered from the smallest grain holding every dimension it groups or filters by; for
what no grain holds (grouping by `custom`; the delivery times of operator and region together)
the messages themselves are read.

Coarse grains are summed from finer ones (`counts_from`, `delays_from`) rather than from the
messages: each roll-up reads a period's messages once per grain that needs them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa

from ..models import Message, Status

BASE = ("channel", "source", "service")


@dataclass(frozen=True)
class Grain:
    id: int
    dims: tuple[str, ...]
    counts: bool = True
    delays: bool = True
    # The grain whose rows this one's are sums of; None: the messages.
    counts_from: int | None = None
    delays_from: int | None = None

    def covers(self, needed: set[str]) -> bool:
        return needed <= set(self.dims)

    def keeps(self, kind: str) -> bool:
        return self.counts if kind == "counts" else self.delays

    def source(self, kind: str) -> int | None:
        return self.counts_from if kind == "counts" else self.delays_from


# Smallest first: the first that covers a query answers it. Ids are stored in the summaries.
GRAINS = (
    Grain(0, (), counts_from=8, delays_from=9),
    Grain(1, ("status",), counts=False, delays_from=9),
    Grain(2, ("operator",), counts_from=10),
    Grain(3, ("region",), counts_from=11),
    Grain(4, ("provider_status",), delays=False, counts_from=12),
    Grain(5, ("provider_status", "status"), counts=False),
    Grain(6, ("sender",), counts_from=13),
    Grain(14, ("source", "operator"), counts_from=10),
    Grain(15, ("source", "provider_status", "status"), counts_from=12),
    Grain(7, ("operator", "region"), delays=False),
    Grain(8, BASE, delays_from=9),
    Grain(9, (*BASE, "status"), counts=False),
    Grain(10, (*BASE, "operator"), delays=False),
    Grain(11, (*BASE, "region"), delays=False),
    Grain(12, (*BASE, "provider_status", "status"), delays=False),
    Grain(13, (*BASE, "sender"), delays=False),
)
GRAIN_IDS = [grain.id for grain in GRAINS]
BY_ID = {grain.id: grain for grain in GRAINS}


def grain_for(needed: set[str], *, counts: bool) -> Grain | None:
    """The smallest grain holding `needed`, among those that keep counts (or delays)."""
    if counts:
        needed = needed - {"status"}
    for grain in GRAINS:
        if grain.keeps("counts" if counts else "delays") and grain.covers(needed):
            return grain
    return None


def build_order(kind: str) -> list[Grain]:
    """The grains that keep `kind`, each after the one it is summed from."""
    kept = [grain for grain in GRAINS if grain.keeps(kind)]
    return sorted(kept, key=lambda grain: grain.source(kind) is not None)


ANSWERED = (Status.delivered, Status.read)


def _sql(constant: str) -> Any:
    """A constant written into the statement: PostgreSQL matches a GROUP BY expression to the
    selected one only when they are the same text, which two bound parameters are not."""
    return sa.literal_column(constant)


def delay_us(dialect: str) -> Any:
    """Microseconds from submission to delivery, exactly (integers on both databases)."""
    delivered, submitted = Message.delivered_at, Message.submitted_at
    if dialect == "postgresql":
        return sa.cast(sa.extract("epoch", delivered - submitted) * _sql("1000000"), sa.BigInteger)

    def micros(column: Any) -> Any:  # SQLite keeps `YYYY-MM-DD HH:MM:SS.ffffff`
        text = sa.type_coerce(column, sa.String)
        seconds = sa.cast(sa.func.strftime("%s", text), sa.Integer)
        return seconds * 1_000_000 + sa.cast(sa.func.substr(text, 21), sa.Integer)

    return micros(delivered) - micros(submitted)


# Summaries keep delivery times exactly up to this long; longer ones are counted together under
# OVERFLOW_US. A percentile that falls among those is computed from the messages instead: rare, as
# it means a tenth of the deliveries took longer than this.
EXACT_UP_TO_US = 600 * 1_000_000
OVERFLOW_US = 2**62


def capped(delay: Any) -> Any:
    """A delay as the summaries keep it: exact up to EXACT_UP_TO_US, else OVERFLOW_US."""
    return sa.case((delay > _sql(str(EXACT_UP_TO_US)), _sql(str(OVERFLOW_US))), else_=delay)


def credits_e4(dialect: str) -> Any:
    """Credits in ten-thousandths, an integer (SQLite keeps the column as a floating number)."""
    if dialect == "postgresql":
        return sa.cast(Message.credits * 10_000, sa.BigInteger)
    return sa.cast(sa.func.round(Message.credits * 10_000), sa.Integer)


def hour_of(column: Any, dialect: str) -> Any:
    """The UTC hour a time falls in, as a value of the column's own type."""
    if dialect == "postgresql":
        return sa.func.date_trunc(_sql("'hour'"), column, _sql("'UTC'"))
    return sa.func.strftime("%Y-%m-%d %H:00:00.000000", column)


def day_of(column: Any, dialect: str) -> Any:
    """The UTC day a time falls in, as a value of the column's own type."""
    if dialect == "postgresql":
        return sa.func.date_trunc(_sql("'day'"), column, _sql("'UTC'"))
    return sa.func.strftime("%Y-%m-%d 00:00:00.000000", column)


def local_text(column: Any, offset_seconds: int, unit: str, dialect: str) -> Any:
    """The local hour (`YYYY-MM-DD HH`) or day (`YYYY-MM-DD`) of a time, at a fixed UTC offset."""
    if dialect == "postgresql":
        # An integer we computed, written as a literal: an interval of a fixed number of seconds.
        shifted = sa.func.timezone(_sql("'UTC'"), column) + _sql(f"interval '{int(offset_seconds)} seconds'")
        return sa.func.to_char(shifted, _sql("'YYYY-MM-DD HH24'" if unit == "hour" else "'YYYY-MM-DD'"))
    pattern = "%Y-%m-%d %H" if unit == "hour" else "%Y-%m-%d"
    return sa.func.strftime(pattern, column, f"{offset_seconds:+d} seconds")
