"""Messages and their status history, inbound messages, opt-outs and the contact history."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Any

import sqlalchemy as sa
from sqlalchemy import orm
from sqlalchemy.orm import Mapped, mapped_column

from ..db import Base, BigId
from .common import (
    Origin,
    Status,
    bigid_pk,
    created,
    name64,
    origin_column,
    pulled_or_raw_event_id,
    string_enum,
)


class Message(Base):
    """An outbound message (SMS, WhatsApp, RCS, Viber), keyed by the provider's id."""

    __tablename__ = "messages"
    __table_args__ = (
        sa.Index("ix_messages_created_at_id", "created_at", "id"),
        # With `id` last, a keyset page (created_at, id) < cursor is one backward index range scan.
        sa.Index("ix_messages_mobile_canonical_created_at_id", "mobile_canonical", "created_at", "id"),
        sa.Index("ix_messages_status_created_at_id", "status", "created_at", "id"),
        sa.Index("ix_messages_provider_status_created_at_id", "provider_status", "created_at", "id"),
        # The statistics roll-up finds the messages changed since its last run by this.
        sa.Index("ix_messages_updated_at", "updated_at"),
        # Messages by reference, newest first, whatever the value's frequency (the API's `custom`
        # filter, the console's search).
        sa.Index("ix_messages_custom_created_at_id", "custom", "created_at", "id"),
        sa.Index("ix_messages_cid_created_at_id", "cid", "created_at", "id"),
        sa.Index("ix_messages_foreign_id_created_at_id", "foreign_id", "created_at", "id"),
    )

    id: Mapped[str] = mapped_column(sa.String(255), primary_key=True)
    source: Mapped[name64]
    channel: Mapped[str] = mapped_column(sa.String(32))
    mobile: Mapped[str | None] = mapped_column(sa.String(255))
    # receiver.numbers.canonical(mobile): what the `mobile` filter matches.
    mobile_canonical: Mapped[str | None] = mapped_column(sa.String(255))
    sender: Mapped[str | None] = mapped_column(sa.String(255))
    service: Mapped[str | None] = mapped_column(sa.String(255))
    custom: Mapped[str | None] = mapped_column(sa.String(255))
    custom1: Mapped[str | None] = mapped_column(sa.String(255))
    custom2: Mapped[str | None] = mapped_column(sa.String(255))
    cid: Mapped[str | None] = mapped_column(sa.String(255))
    foreign_id: Mapped[str | None] = mapped_column(sa.String(255))
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
    status: Mapped[Status] = mapped_column(string_enum(Status))
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
    raw_event_id: Mapped[int | None] = pulled_or_raw_event_id()
    origin: Mapped[Origin] = origin_column()
    source: Mapped[name64]
    status: Mapped[Status] = mapped_column(string_enum(Status))
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
    raw_event_id: Mapped[int | None] = pulled_or_raw_event_id()
    origin: Mapped[Origin] = origin_column()
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
