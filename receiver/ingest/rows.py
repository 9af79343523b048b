"""What every normalized row needs: ingest's settings, the raw event it comes from, INSERTs that
store a row once, provider times in UTC and numbers in their canonical form (receiver.numbers).

Writes go through a SQLAlchemy Connection (Core), never an ORM session: each INSERT is a statement
built and compiled once per table (receiver.db.insert_new), run with the row as its parameters.
Nothing here commits.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

import sqlalchemy as sa

from ..db import insert_new
from ..numbers import canonical as canonical_number


@dataclass(frozen=True)
class Settings:
    timezone: ZoneInfo
    recording_url_ttl: int
    default_country_code: str
    max_events: int  # items of a JSON array taken in one request

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> Settings:
        """The settings ingest needs, from the app's configuration."""
        return cls(
            timezone=ZoneInfo(config["PROVIDER_TIMEZONE"]),
            recording_url_ttl=config["RECORDING_URL_TTL"],
            default_country_code=config["DEFAULT_COUNTRY_CODE"],
            max_events=config["MAX_EVENTS_PER_REQUEST"],
        )


def content_key(data: dict[str, Any], drop: frozenset[str] = frozenset()) -> str:
    """A key for an event that carries no id of its own: the SHA-256 of its non-empty fields."""
    canonical_json = json.dumps(
        {k: v for k, v in data.items() if k not in drop and v not in (None, "")},
        sort_keys=True,
        default=str,
        separators=(",", ":"),
    )
    return hashlib.sha256(canonical_json.encode()).hexdigest()


class RowWriter:
    """Writes rows on behalf of one raw event, in the caller's transaction."""

    def __init__(
        self,
        connection: sa.Connection,
        raw_id: int,
        source: str,
        received_at: datetime,
        settings: Settings,
    ) -> None:
        self.connection = connection
        self.raw_id = raw_id
        self.source = source
        self.received_at = received_at
        self.settings = settings
        self.new_recordings: list[int] = []
        # (channel, canonical status) of each new status report stored: the metrics count them.
        self.status_reports: list[tuple[str, str]] = []

    def utc(self, value: datetime | None) -> datetime | None:
        """Place a zone-less provider time in `PROVIDER_TIMEZONE`."""
        if value is None or value.tzinfo is not None:
            return value
        return value.replace(tzinfo=self.settings.timezone)

    def number(self, value: str | None) -> str | None:
        """The canonical form of a number (DEFAULT_COUNTRY_CODE for a national one)."""
        return canonical_number(value, self.settings.default_country_code)

    def insert(self, model: type[Any], values: dict[str, Any], keys: list[str]) -> Any:
        """INSERT ... ON CONFLICT DO NOTHING; the new row's primary key, or None if it existed."""
        return insert_new(self.connection, model.__table__, values, keys)
