"""Voice calls and their recordings."""

from __future__ import annotations

from datetime import datetime

import sqlalchemy as sa
from sqlalchemy import orm
from sqlalchemy.orm import Mapped, mapped_column

from ..db import Base, BigId
from .common import (
    Origin,
    RecordingState,
    bigid_pk,
    created,
    name64,
    origin_column,
    pulled_or_raw_event_id,
    string_enum,
    text,
)


class Call(Base):
    """A voice call record (outbound dialling or click-to-call)."""

    __tablename__ = "calls"
    __table_args__ = (
        sa.Index("ix_calls_start_at_id", "start_at", "id"),
        sa.Index("ix_calls_from_canonical_start_at_id", "from_canonical", "start_at", "id"),
        sa.Index("ix_calls_to_canonical_start_at_id", "to_canonical", "start_at", "id"),
    )

    id: Mapped[bigid_pk]
    # SHA-256 of the record less the fields that change between retries (`date`, `unixtime`).
    dedupe_key: Mapped[str] = mapped_column(sa.String(64), unique=True)
    source: Mapped[name64]
    raw_event_id: Mapped[int | None] = pulled_or_raw_event_id()
    origin: Mapped[Origin] = origin_column()
    service: Mapped[str | None] = mapped_column(sa.String(255))
    bridge: Mapped[str | None] = mapped_column(sa.String(255))
    from_number: Mapped[str | None] = mapped_column(sa.String(255))
    to_number: Mapped[str | None] = mapped_column(sa.String(255))
    from_canonical: Mapped[str | None] = mapped_column(sa.String(255))
    to_canonical: Mapped[str | None] = mapped_column(sa.String(255))
    mid: Mapped[str | None] = mapped_column(sa.String(255), index=True)
    flow_id: Mapped[str | None] = mapped_column(sa.String(255))
    start_at: Mapped[datetime | None]
    end_at: Mapped[datetime | None]
    duration: Mapped[int | None]
    billing: Mapped[int | None]
    status: Mapped[str | None] = mapped_column(sa.String(255))
    status1: Mapped[str | None] = mapped_column(sa.String(255))
    status2: Mapped[str | None] = mapped_column(sa.String(255))
    hangup_by: Mapped[str | None] = mapped_column(sa.String(255))
    received_at: Mapped[created]

    recordings: Mapped[list[Recording]] = orm.relationship(
        back_populates="call", order_by="Recording.id", lazy="raise"
    )


class Recording(Base):
    """A call recording; the row is the source of truth for its download."""

    __tablename__ = "recordings"
    __table_args__ = (
        sa.UniqueConstraint("call_id", "url_sha256"),
        sa.Index("ix_recordings_state_next_attempt_at", "state", "next_attempt_at"),
        sa.Index("ix_recordings_state_id", "state", "id"),
    )

    id: Mapped[bigid_pk]
    call_id: Mapped[int] = mapped_column(BigId, sa.ForeignKey("calls.id"))
    url: Mapped[text]
    url_sha256: Mapped[str] = mapped_column(sa.String(64))
    url_expires_at: Mapped[datetime]
    state: Mapped[RecordingState] = mapped_column(string_enum(RecordingState))
    attempts: Mapped[int] = mapped_column(default=0, server_default="0")
    last_error: Mapped[str | None] = mapped_column(sa.Text)
    next_attempt_at: Mapped[datetime | None]
    locked_until: Mapped[datetime | None]
    sha256: Mapped[str | None] = mapped_column(sa.String(64))
    size_bytes: Mapped[int | None] = mapped_column(sa.BigInteger)
    content_type: Mapped[str | None] = mapped_column(sa.String(128))
    stored_at: Mapped[datetime | None]
    created_at: Mapped[created]
    updated_at: Mapped[created]

    call: Mapped[Call] = orm.relationship(back_populates="recordings", lazy="raise")
