"""ORM classes: what receiver stores. No Flask imports, no commits."""

from __future__ import annotations

import enum
from datetime import datetime
from decimal import Decimal
from typing import Annotated, Any

import sqlalchemy as sa
from sqlalchemy import orm
from sqlalchemy.orm import Mapped, mapped_column

from .db import Base, BigId, utcnow

MAX_ID = 2**63 - 1  # the largest id a row can have (a 64-bit signed integer)
bigid_pk = Annotated[int, mapped_column(BigId, primary_key=True, autoincrement=True)]
created = Annotated[datetime, mapped_column(default=utcnow)]
name64 = Annotated[str, mapped_column(sa.String(64))]
text = Annotated[str, mapped_column(sa.Text)]


def _enum(cls: type[enum.Enum]) -> sa.Enum:
    return sa.Enum(
        cls,
        native_enum=False,
        length=16,
        values_callable=lambda members: [m.value for m in members],
        validate_strings=True,
    )


class RawState(enum.StrEnum):
    processed = "processed"  # normalized into rows
    duplicate = "duplicate"  # a distinct request whose events were all known already
    pending = "pending"  # kept, not understood yet: replay after a fix
    quarantined = "quarantined"  # failed validation


class Status(enum.StrEnum):
    accepted = "accepted"
    sent = "sent"
    delivered = "delivered"
    read = "read"
    failed = "failed"
    rejected = "rejected"
    expired = "expired"
    deleted = "deleted"
    unknown = "unknown"


FINAL_STATUSES = frozenset(
    {Status.delivered, Status.read, Status.failed, Status.rejected, Status.expired, Status.deleted}
)


class RecordingState(enum.StrEnum):
    pending = "pending"
    downloading = "downloading"
    retrying = "retrying"
    fallback = "fallback"
    stored = "stored"
    failed = "failed"


class ApiScope(enum.StrEnum):
    read = "read"  # the read API only
    operate = "operate"  # also the writing routes: replay events, retry recordings


class Source(Base):
    """A webhook registered in the provider's portal."""

    __tablename__ = "sources"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[name64] = mapped_column(unique=True)
    secret_digest: Mapped[str] = mapped_column(sa.String(200))
    previous_secret_digest: Mapped[str | None] = mapped_column(sa.String(200))
    previous_secret_expires_at: Mapped[datetime | None]
    validation_key_digest: Mapped[str | None] = mapped_column(sa.String(200))
    # Kept as given: an HMAC over the body can only be checked with the key itself.
    signing_key: Mapped[str | None] = mapped_column(sa.String(500))
    auth_failures: Mapped[int] = mapped_column(default=0, server_default="0")
    created_at: Mapped[created]
    rotated_at: Mapped[datetime | None]


class ApiKey(Base):
    """A key for the query API; its scope says whether it may also replay and retry."""

    __tablename__ = "api_keys"
    __table_args__ = (
        # One active key per name; a revoked key keeps its row (and name), so the name can be reused.
        sa.Index(
            "uq_api_keys_name_active",
            "name",
            unique=True,
            sqlite_where=sa.text("revoked_at IS NULL"),
            postgresql_where=sa.text("revoked_at IS NULL"),
        ),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[name64]
    key_id: Mapped[str] = mapped_column(sa.String(32), unique=True)
    key_digest: Mapped[str] = mapped_column(sa.String(200))
    scope: Mapped[ApiScope] = mapped_column(_enum(ApiScope), default=ApiScope.read, server_default="read")
    created_at: Mapped[created]
    revoked_at: Mapped[datetime | None]


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
    state: Mapped[RawState] = mapped_column(_enum(RawState))
    kinds: Mapped[list[Any] | None]
    errors: Mapped[dict[str, Any] | None]
    processed_at: Mapped[datetime | None]
    # How many times it was replayed (by the API or `receiver replay`), and the latest time.
    replays: Mapped[int] = mapped_column(default=0, server_default="0")
    replayed_at: Mapped[datetime | None]


class Message(Base):
    """An outbound message (SMS, WhatsApp, RCS, Viber), keyed by the provider's id."""

    __tablename__ = "messages"
    __table_args__ = (
        sa.Index("ix_messages_created_at_id", "created_at", "id"),
        # With `id` last, a keyset page (created_at, id) < cursor is one backward index range scan.
        sa.Index("ix_messages_mobile_canonical_created_at_id", "mobile_canonical", "created_at", "id"),
        sa.Index("ix_messages_status_created_at_id", "status", "created_at", "id"),
        sa.Index("ix_messages_provider_status_created_at_id", "provider_status", "created_at", "id"),
    )

    id: Mapped[str] = mapped_column(sa.String(255), primary_key=True)
    source: Mapped[name64]
    channel: Mapped[str] = mapped_column(sa.String(32))
    mobile: Mapped[str | None] = mapped_column(sa.String(255))
    # receiver.numbers.canonical(mobile): what the `mobile` filter matches.
    mobile_canonical: Mapped[str | None] = mapped_column(sa.String(255))
    sender: Mapped[str | None] = mapped_column(sa.String(255))
    service: Mapped[str | None] = mapped_column(sa.String(255))
    custom: Mapped[str | None] = mapped_column(sa.String(255), index=True)
    custom1: Mapped[str | None] = mapped_column(sa.String(255))
    custom2: Mapped[str | None] = mapped_column(sa.String(255))
    cid: Mapped[str | None] = mapped_column(sa.String(255), index=True)
    foreign_id: Mapped[str | None] = mapped_column(sa.String(255), index=True)
    credits: Mapped[Decimal | None] = mapped_column(sa.Numeric(14, 4))
    units: Mapped[int | None]
    operator: Mapped[str | None] = mapped_column(sa.String(255))
    operator_code: Mapped[str | None] = mapped_column(sa.String(255))
    region: Mapped[str | None] = mapped_column(sa.String(255))
    region_code: Mapped[str | None] = mapped_column(sa.String(255))
    country: Mapped[str | None] = mapped_column(sa.String(255))
    country_code: Mapped[str | None] = mapped_column(sa.String(255))
    submitted_at: Mapped[datetime | None]
    sent_at: Mapped[datetime | None]
    delivered_at: Mapped[datetime | None]
    read_at: Mapped[datetime | None]
    status: Mapped[Status] = mapped_column(_enum(Status))
    provider_status: Mapped[str] = mapped_column(sa.String(255))
    # The provider's time of the current status, to order late and out-of-order reports.
    status_at: Mapped[datetime | None]
    created_at: Mapped[created]
    updated_at: Mapped[created]

    events: Mapped[list[MessageEvent]] = orm.relationship(
        back_populates="message", order_by="MessageEvent.id", lazy="raise"
    )

    @property
    def history(self) -> list[MessageEvent]:
        """The events oldest first, by the provider's time (arrival time where it gave none)."""
        return sorted(self.events, key=lambda e: (e.occurred_at or e.received_at, e.id))


class MessageEvent(Base):
    """One status report of a message; a retry of the same status is not a new event."""

    __tablename__ = "message_events"
    __table_args__ = (sa.UniqueConstraint("message_id", "provider_status"),)

    id: Mapped[bigid_pk]
    message_id: Mapped[str] = mapped_column(sa.ForeignKey("messages.id"))
    raw_event_id: Mapped[int] = mapped_column(BigId, sa.ForeignKey("raw_events.id"), index=True)
    source: Mapped[name64]
    status: Mapped[Status] = mapped_column(_enum(Status))
    provider_status: Mapped[str] = mapped_column(sa.String(255))
    occurred_at: Mapped[datetime | None]
    received_at: Mapped[created]

    message: Mapped[Message] = orm.relationship(back_populates="events", lazy="raise")


class InboundMessage(Base):
    """A message a person sent to the customer (SMS long code or keyword, WhatsApp, RCS, Viber)."""

    __tablename__ = "inbound_messages"
    __table_args__ = (
        sa.Index("ix_inbound_messages_received_at_id", "received_at", "id"),
        sa.Index("ix_inbound_messages_from_canonical_received_at_id", "from_canonical", "received_at", "id"),
        sa.Index("ix_inbound_messages_to_canonical_received_at_id", "to_canonical", "received_at", "id"),
    )

    id: Mapped[str] = mapped_column(sa.String(255), primary_key=True)
    source: Mapped[name64]
    raw_event_id: Mapped[int] = mapped_column(BigId, sa.ForeignKey("raw_events.id"), index=True)
    channel: Mapped[str] = mapped_column(sa.String(32))
    from_number: Mapped[str | None] = mapped_column(sa.String(255))
    to_number: Mapped[str | None] = mapped_column(sa.String(255))
    from_canonical: Mapped[str | None] = mapped_column(sa.String(255))
    to_canonical: Mapped[str | None] = mapped_column(sa.String(255))
    type: Mapped[str | None] = mapped_column(sa.String(255))
    text: Mapped[str | None] = mapped_column(sa.Text)
    media_url: Mapped[str | None] = mapped_column(sa.Text)
    caption: Mapped[str | None] = mapped_column(sa.Text)
    file_name: Mapped[str | None] = mapped_column(sa.String(255))
    keyword1: Mapped[str | None] = mapped_column(sa.String(255))
    keyword2: Mapped[str | None] = mapped_column(sa.String(255))
    occurred_at: Mapped[datetime | None]
    contact: Mapped[dict[str, Any] | None]
    received_at: Mapped[created]


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
    raw_event_id: Mapped[int] = mapped_column(BigId, sa.ForeignKey("raw_events.id"), index=True)
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
    state: Mapped[RecordingState] = mapped_column(_enum(RecordingState))
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


class ProviderRateSlot(Base):
    """One of PROVIDER_RATE_LIMIT request slots, each usable once a minute (the limiter without Redis)."""

    __tablename__ = "provider_rate_slots"

    slot: Mapped[int] = mapped_column(primary_key=True, autoincrement=False)
    used_at: Mapped[datetime] = mapped_column(index=True)


class OptOut(Base):
    """An unsubscription the platform reported."""

    __tablename__ = "opt_outs"
    __table_args__ = (
        sa.Index("ix_opt_outs_received_at_id", "received_at", "id"),
        sa.Index("ix_opt_outs_number_canonical_received_at_id", "number_canonical", "received_at", "id"),
    )

    id: Mapped[bigid_pk]
    # The provider's id when it sends one, else a SHA-256 of the record.
    key: Mapped[str] = mapped_column(sa.String(300), unique=True)
    provider_id: Mapped[str | None] = mapped_column(sa.String(255))
    source: Mapped[name64]
    raw_event_id: Mapped[int] = mapped_column(BigId, sa.ForeignKey("raw_events.id"), index=True)
    # The envelope's event name (`whatsapp:unsubscription`), the URL (`/hooks/<source>/whatsapp`,
    # `?channel=sms`) or the payload's `channel`; null when none of them says.
    channel: Mapped[str | None] = mapped_column(sa.String(32))
    receiver: Mapped[str | None] = mapped_column(sa.String(255))
    number_canonical: Mapped[str | None] = mapped_column(sa.String(255))
    type: Mapped[str | None] = mapped_column(sa.String(255))
    value: Mapped[str | None] = mapped_column(sa.String(255))
    status: Mapped[str | None] = mapped_column(sa.Text)
    occurred_at: Mapped[datetime | None]
    received_at: Mapped[created]


class ContactEvent(Base):
    """A contact created or updated in the provider's contact book (`contacts:subscriber:subscription`)."""

    __tablename__ = "contact_events"
    __table_args__ = (
        sa.Index("ix_contact_events_received_at_id", "received_at", "id"),
        sa.Index(
            "ix_contact_events_number_canonical_received_at_id", "number_canonical", "received_at", "id"
        ),
    )

    id: Mapped[bigid_pk]
    # SHA-256 of the event: the contact's id stays the same across its create and update events.
    key: Mapped[str] = mapped_column(sa.String(64), unique=True)
    source: Mapped[name64]
    raw_event_id: Mapped[int] = mapped_column(BigId, sa.ForeignKey("raw_events.id"), index=True)
    contact_id: Mapped[str | None] = mapped_column(sa.String(255))
    identity: Mapped[str | None] = mapped_column(sa.String(255))
    number: Mapped[str | None] = mapped_column(sa.String(255))
    number_canonical: Mapped[str | None] = mapped_column(sa.String(255))
    email: Mapped[str | None] = mapped_column(sa.String(255))
    first_name: Mapped[str | None] = mapped_column(sa.String(255))
    last_name: Mapped[str | None] = mapped_column(sa.String(255))
    # The provider's text, e.g. "Subscriber created successfully" or "Subscriber updated successfully".
    status: Mapped[str | None] = mapped_column(sa.Text)
    # The contact's own `updated_at` (else `created_at`).
    occurred_at: Mapped[datetime | None]
    # The whole contact object as received (attributes and all).
    contact: Mapped[dict[str, Any] | None]
    received_at: Mapped[created]
