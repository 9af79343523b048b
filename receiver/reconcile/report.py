"""The provider's daily SMS counts by its own status code (`sms/report`) beside receiver's."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import sqlalchemy as sa
from sqlalchemy import orm

from ..models import Message
from ..provider import ProviderClient, ProviderError
from .times import day_bounds


@dataclass
class Comparison:
    day: date
    provider: dict[str, int]
    receiver: dict[str, int]

    @property
    def rows(self) -> list[tuple[str, int, int, int]]:
        """(status code, provider's count, receiver's, receiver's less the provider's), by code."""
        codes = sorted(set(self.provider) | set(self.receiver))
        return [(c, self._p(c), self._r(c), self._r(c) - self._p(c)) for c in codes]

    def _p(self, code: str) -> int:
        return self.provider.get(code, 0)

    def _r(self, code: str) -> int:
        return self.receiver.get(code, 0)

    @property
    def differences(self) -> int:
        """How many messages are counted differently (the sum of the differences' sizes)."""
        return sum(abs(difference) for *_, difference in self.rows)

    def as_details(self) -> dict[str, Any]:
        return {"provider": self.provider, "receiver": self.receiver}


def provider_counts(client: ProviderClient, day: date) -> dict[str, int]:
    """`sms/report?daterange=D|D`: the day's counts by the provider's status code."""
    document = client.get("sms/report", {"daterange": f"{day:%Y-%m-%d}|{day:%Y-%m-%d}"})
    data = document.get("data")
    entry = data.get(f"{day:%Y-%m-%d}") if isinstance(data, dict) else None
    if entry is None and isinstance(data, dict) and not data:
        return {}
    statuses = entry.get("status") if isinstance(entry, dict) else None
    if not isinstance(statuses, dict):
        raise ProviderError(f"sms/report: no counts for {day} in the answer")
    return {str(code): int(count) for code, count in statuses.items()}


def receiver_counts(session: orm.Session, day: date, zone: ZoneInfo) -> dict[str, int]:
    """SMS messages submitted on `day` in the provider's zone, by current provider status.

    A message without a submission time counts on the day receiver first heard of it.
    """
    start, end = day_bounds(day, zone)
    submitted = sa.func.coalesce(Message.submitted_at, Message.created_at)
    query = (
        sa.select(Message.provider_status, sa.func.count())
        .where(Message.channel == "sms")
        # receiver hears of a message after it is submitted: this bound lets the index narrow the scan
        .where(Message.created_at >= start - timedelta(days=1))
        .where(submitted >= start, submitted < end)
        .group_by(Message.provider_status)
    )
    return {str(code): int(count) for code, count in session.execute(query).all()}
