"""Every webhook request as it arrived, kept whatever became of it."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column

from ..db import Base
from .common import RawState, bigid_pk, created, name64, string_enum, text


class RawEvent(Base):
    """One authenticated webhook request, exactly as received. Its request columns never change."""

    __tablename__ = "raw_events"
    __table_args__ = (
        sa.UniqueConstraint("source", "fingerprint"),
        sa.Index("ix_raw_events_state_id", "state", "id"),
        sa.Index("ix_raw_events_received_at_id", "received_at", "id"),
        # The console's health page: the last webhook of each source.
        sa.Index("ix_raw_events_source_received_at", "source", "received_at"),
    )

    id: Mapped[bigid_pk]
    source: Mapped[name64]
    received_at: Mapped[created]
    method: Mapped[str] = mapped_column(sa.String(8))
    path: Mapped[text]
    kind_hint: Mapped[str | None] = mapped_column(sa.String(32))
    query_string: Mapped[text]
    headers: Mapped[dict[str, Any]]
    body: Mapped[bytes] = mapped_column(sa.LargeBinary)
    remote_addr: Mapped[str | None] = mapped_column(sa.String(64))
    sha256: Mapped[str] = mapped_column(sa.String(64))
    # SHA-256 of method, redacted query and body: the same request twice is one row.
    fingerprint: Mapped[str] = mapped_column(sa.String(64))
    # Processing outcome: changes on replay; the request columns above do not.
    state: Mapped[RawState] = mapped_column(string_enum(RawState))
    kinds: Mapped[list[Any] | None]
    errors: Mapped[dict[str, Any] | None]
    processed_at: Mapped[datetime | None]
    # How many times it was replayed (by the API or `receiver replay`), and the latest time.
    replays: Mapped[int] = mapped_column(default=0, server_default="0")
    replayed_at: Mapped[datetime | None]
