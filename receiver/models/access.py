"""Who may send webhooks (sources) and who may read the API (API keys)."""

from __future__ import annotations

from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column

from ..db import Base
from .common import ApiScope, created, name64, string_enum


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
    scope: Mapped[ApiScope] = mapped_column(
        string_enum(ApiScope), default=ApiScope.read, server_default="read"
    )
    created_at: Mapped[created]
    revoked_at: Mapped[datetime | None]
