"""The roll-up's tables: message counts and delivery times summed by period and group.

A cell holds, for one period (a UTC hour, or a UTC day) and one combination of a grain's
dimensions and a canonical status, how many messages were first heard of in it, their credits
(in ten-thousandths, so that sums are exact on every database) and their units. A delay row holds
how many delivered or read messages took exactly `delay_us` microseconds from submission to
delivery. A dimension outside the cell's grain is NULL. Everything here can be rebuilt from the
messages at any time (`receiver stats rollup --rebuild`).
"""

from __future__ import annotations

from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column

from ..db import Base, BigId

DIMENSIONS = ("channel", "source", "service", "sender", "operator", "region", "provider_status")


class _Dimensions:
    channel: Mapped[str | None] = mapped_column(sa.String(32))
    source: Mapped[str | None] = mapped_column(sa.String(64))
    service: Mapped[str | None] = mapped_column(sa.String(255))
    sender: Mapped[str | None] = mapped_column(sa.String(255))
    operator: Mapped[str | None] = mapped_column(sa.String(255))
    region: Mapped[str | None] = mapped_column(sa.String(255))
    provider_status: Mapped[str | None] = mapped_column(sa.String(255))
    status: Mapped[str | None] = mapped_column(sa.String(16))


class StatsCell(_Dimensions, Base):
    """Messages of one period and group: their count per status, credits and units."""

    __tablename__ = "stats_message_cells"
    __table_args__ = (
        sa.Index("ix_stats_message_cells_grain_span_period_start", "grain", "span", "period_start"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    grain: Mapped[int] = mapped_column(sa.SmallInteger)
    span: Mapped[str] = mapped_column(sa.String(1))  # "h": a UTC hour; "d": a UTC day
    period_start: Mapped[datetime]
    total: Mapped[int] = mapped_column(sa.BigInteger)
    credits_e4: Mapped[int] = mapped_column(sa.BigInteger)
    units: Mapped[int] = mapped_column(sa.BigInteger)


class StatsDelay(_Dimensions, Base):
    """Delivered or read messages of one period and group that took exactly `delay_us` to arrive."""

    __tablename__ = "stats_message_delays"
    __table_args__ = (
        sa.Index("ix_stats_message_delays_grain_span_period_start", "grain", "span", "period_start"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    grain: Mapped[int] = mapped_column(sa.SmallInteger)
    span: Mapped[str] = mapped_column(sa.String(1))
    period_start: Mapped[datetime]
    delay_us: Mapped[int] = mapped_column(sa.BigInteger)
    count: Mapped[int] = mapped_column(sa.BigInteger)


class StatsRollupState(Base):
    """The roll-up's progress: one row. Its lock serializes roll-ups across processes."""

    __tablename__ = "stats_rollup_state"

    id: Mapped[int] = mapped_column(primary_key=True, autoincrement=False)
    # Every change to a message made at least ROLLUP_GRACE before this time is in the summaries.
    watermark: Mapped[datetime | None]
    # While the first roll-up works through history: the time it began, and how far it got.
    backfill_started_at: Mapped[datetime | None]
    backfill_done_until: Mapped[datetime | None]
    ran_at: Mapped[datetime | None]
