"""Reconciliation with the provider's pull APIs: one row per run."""

from __future__ import annotations

from datetime import date, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column

from ..db import Base, BigId
from .common import bigid_pk, created


class ReconcileRun(Base):
    """One run of reconciliation with the provider's pull APIs: what it looked at and what it found.

    `pages_done` counts the pages stored without a gap from the first, committed with their rows:
    a run that stopped can be taken up again from there.
    """

    __tablename__ = "reconcile_runs"
    __table_args__ = (
        sa.Index("ix_reconcile_runs_kind_day_id", "kind", "day", "id"),
        sa.Index("ix_reconcile_runs_started_at_id", "started_at", "id"),
    )

    id: Mapped[bigid_pk]
    kind: Mapped[str] = mapped_column(sa.String(16))  # sms, stuck, calls, inbound, report
    day: Mapped[date | None]  # the provider's day (PROVIDER_TIMEZONE); none for `stuck`
    state: Mapped[str] = mapped_column(sa.String(16))  # running, done, failed, resumed
    host: Mapped[str | None] = mapped_column(sa.String(255))
    started_at: Mapped[created]
    heartbeat_at: Mapped[created]
    finished_at: Mapped[datetime | None]
    resumed_from: Mapped[int | None] = mapped_column(BigId)
    pages_done: Mapped[int] = mapped_column(default=0, server_default="0")
    pages_total: Mapped[int | None]
    seen: Mapped[int] = mapped_column(default=0, server_default="0")
    new_rows: Mapped[int] = mapped_column(default=0, server_default="0")  # messages, calls, inbound
    new_statuses: Mapped[int] = mapped_column(default=0, server_default="0")
    unchanged: Mapped[int] = mapped_column(default=0, server_default="0")
    recordings: Mapped[int] = mapped_column(default=0, server_default="0")
    # `report`: how many messages the provider and receiver count differently, by status code.
    differences: Mapped[int | None]
    details: Mapped[dict[str, Any] | None]
    error: Mapped[str | None] = mapped_column(sa.Text)
