"""ORM classes of forwarding: the changes to forward, the destinations, and each delivery."""

from __future__ import annotations

import enum
from datetime import datetime
from typing import Any, cast

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column

from ..db import Base, BigId
from ..models.common import bigid_pk, created, name64, string_enum

# The types of change a destination can ask for, in the order `destinations add` lists them.
CHANGE_TYPES = ("message.status", "inbound", "call", "recording", "opt_out")


class DestinationState(enum.StrEnum):
    active = "active"
    paused = "paused"


class DeliveryState(enum.StrEnum):
    pending = "pending"  # waiting for its next attempt, or under way (`locked_until` in the future)
    delivered = "delivered"
    failed = "failed"  # given up after the retry period; `destinations replay` sends it again


class Change(Base):
    """A change receiver committed, with the resource as the query API showed it right after.

    Written in the transaction of the change itself. `position` is given later, in the order the
    rows become visible to the worker (receiver.forwarding.outbox.sequence): it orders the feed and
    never goes back, where ids can commit out of order.
    """

    __tablename__ = "changes"
    # No index on created_at: every index is written by every webhook. Rows come in time order
    # closely enough that pruning walks them by id, and a replay is a rare command.
    __table_args__ = (
        sa.Index(
            "ix_changes_unsequenced",
            "id",
            sqlite_where=sa.text("position IS NULL"),
            postgresql_where=sa.text("position IS NULL"),
        ),
    )

    id: Mapped[bigid_pk]
    position: Mapped[int | None] = mapped_column(sa.BigInteger, unique=True)
    type: Mapped[str] = mapped_column(sa.String(16))
    # The resource's kind and id, e.g. `message:abc`: the unit of ordering.
    resource: Mapped[str] = mapped_column(sa.String(300))
    created_at: Mapped[created]
    data: Mapped[dict[str, Any]]


class Destination(Base):
    """A customer endpoint that receives the changes of the types it asked for, signed."""

    __tablename__ = "destinations"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[name64] = mapped_column(unique=True)
    url: Mapped[str] = mapped_column(sa.Text)
    # Kept as given (whsec_...): an HMAC can only be made with the key itself.
    secret: Mapped[str] = mapped_column(sa.String(100))
    previous_secret: Mapped[str | None] = mapped_column(sa.String(100))
    previous_secret_expires_at: Mapped[datetime | None]
    event_types: Mapped[list[Any]]
    state: Mapped[DestinationState] = mapped_column(string_enum(DestinationState))
    paused_reason: Mapped[str | None] = mapped_column(sa.Text)
    rate_limit: Mapped[float] = mapped_column(sa.Float)  # requests a second
    concurrency: Mapped[int]  # requests under way at once, across every worker
    # The last change position fanned out into deliveries.
    position: Mapped[int] = mapped_column(sa.BigInteger, default=0, server_default="0")
    # A token bucket for `rate_limit`, shared by every worker through this row.
    tokens: Mapped[float] = mapped_column(sa.Float, default=0.0, server_default="0")
    tokens_at: Mapped[datetime | None]
    # No request before this time (a 429 or a Retry-After that said so).
    throttled_until: Mapped[datetime | None]
    delivered_total: Mapped[int] = mapped_column(sa.BigInteger, default=0, server_default="0")
    retried_total: Mapped[int] = mapped_column(sa.BigInteger, default=0, server_default="0")
    failed_total: Mapped[int] = mapped_column(sa.BigInteger, default=0, server_default="0")
    created_at: Mapped[created]


class Delivery(Base):
    """One change for one destination: its attempts until delivered or given up."""

    __tablename__ = "deliveries"
    __table_args__ = (
        sa.UniqueConstraint("destination_id", "change_id"),
        # What is due, soonest first, in the order a claim takes it (no sort, however long the backlog).
        sa.Index("ix_deliveries_due", "destination_id", "state", "next_attempt_at", "position"),
        # Whether an earlier change of the same resource still waits (the order per resource): one
        # probe a candidate, an index that matches every condition of the probe, so that no
        # planner estimate (stale statistics on a table that grows fast) picks a scan instead.
        sa.Index("ix_deliveries_resource", "destination_id", "resource", "state", "position"),
        # What is under way (the concurrency limit).
        sa.Index("ix_deliveries_locked", "destination_id", "locked_until"),
    )

    id: Mapped[bigid_pk]
    destination_id: Mapped[int] = mapped_column(sa.ForeignKey("destinations.id", ondelete="CASCADE"))
    change_id: Mapped[int] = mapped_column(BigId, sa.ForeignKey("changes.id", ondelete="CASCADE"), index=True)
    position: Mapped[int] = mapped_column(sa.BigInteger)
    resource: Mapped[str] = mapped_column(sa.String(300))
    state: Mapped[DeliveryState] = mapped_column(string_enum(DeliveryState))
    attempts: Mapped[int] = mapped_column(default=0, server_default="0")
    next_attempt_at: Mapped[datetime]
    locked_until: Mapped[datetime | None]
    last_status: Mapped[int | None]
    last_error: Mapped[str | None] = mapped_column(sa.Text)
    # The retry period runs from here (fan-out, or the latest replay).
    created_at: Mapped[created]
    delivered_at: Mapped[datetime | None]


# The Core tables, for the statements that run on many rows at once.
changes_table = cast(sa.Table, Change.__table__)
deliveries_table = cast(sa.Table, Delivery.__table__)
