"""The provider API's rate limit, shared by every process through the database."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy.orm import Mapped, mapped_column

from ..db import Base


class ProviderRateSlot(Base):
    """One of PROVIDER_RATE_LIMIT request slots, each usable once a minute (the limiter without Redis)."""

    __tablename__ = "provider_rate_slots"

    slot: Mapped[int] = mapped_column(primary_key=True, autoincrement=False)
    used_at: Mapped[datetime] = mapped_column(index=True)
