"""What every table shares: id and time column types, the enumerations stored as strings."""

from __future__ import annotations

import enum
from datetime import datetime
from typing import Annotated

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


class ApiScope(enum.StrEnum):
    read = "read"  # the read API only
    operate = "operate"  # also the writing routes: replay events, retry recordings
