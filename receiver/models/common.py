"""What every table shares: id and time column types, the enumerations stored as strings."""

from __future__ import annotations

import enum
from datetime import datetime
from typing import Annotated, Any

import sqlalchemy as sa
from sqlalchemy.orm import mapped_column

from ..db import BigId, utcnow

MAX_ID = 2**63 - 1  # the largest id a row can have (a 64-bit signed integer)
bigid_pk = Annotated[int, mapped_column(BigId, primary_key=True, autoincrement=True)]
created = Annotated[datetime, mapped_column(default=utcnow)]
name64 = Annotated[str, mapped_column(sa.String(64))]
text = Annotated[str, mapped_column(sa.Text)]


def string_enum(cls: type[enum.Enum]) -> sa.Enum:
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


class Origin(enum.StrEnum):
    """Where a stored fact came from: a webhook, or the provider's pull APIs (reconciliation)."""

    webhook = "webhook"
    pull = "pull"


# The `source` of a row pulled from the provider's API: never a webhook source's name (those are
# slugs, which cannot start with `@`).
PULL_SOURCE = "@provider"


def origin_column() -> Any:
    """`origin`: `webhook` unless said otherwise (every row stored before it existed is)."""
    return mapped_column(string_enum(Origin), default=Origin.webhook, server_default=Origin.webhook.value)


def pulled_or_raw_event_id() -> Any:
    """The webhook request a row came from; none for a row pulled from the provider's API."""
    return mapped_column(BigId, sa.ForeignKey("raw_events.id"), index=True, nullable=True)


class ApiScope(enum.StrEnum):
    read = "read"  # the read API only
    operate = "operate"  # also the writing routes: replay events, retry recordings
