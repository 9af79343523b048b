"""The normalized rows of a webhook's events: messages and their status history, inbound
messages, calls and recordings, opt-outs, contact events. Every phone number is written as
received and in its canonical form (receiver.numbers), which the number filters match.

Every write is an INSERT ... ON CONFLICT DO NOTHING on a unique key, so writing the same event
twice, or at the same instant from two requests, stores it once. Nothing here commits.
"""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import sqlalchemy as sa
from sqlalchemy import orm

from ..db import insert_for, insert_new, utcnow
from ..models import (
    Call,
    ContactEvent,
    InboundMessage,
    Message,
    MessageEvent,
    OptOut,
    Recording,
    RecordingState,
    Status,
)
from ..numbers import canonical as canonical_number
from . import payloads
from .statuses import canonical, supersedes

# C2C records carry the time of sending (`date`, `unixtime`): a retry differs only there.
_VOLATILE_CALL_KEYS = frozenset({"date", "unixtime"})
STATUS_KINDS = ("sms-status", "channel-status")
_MESSAGE_COLUMNS = tuple(column.key for column in Message.__table__.columns)


@dataclass
class _Report:
    """A status report, ready to write: the message's fields and the status event's."""

    message_id: str
    fields: dict[str, Any]
    status: Status
    provider_status: str
    occurred: datetime | None


@dataclass
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
    canonical_json = json.dumps(
        {k: v for k, v in data.items() if k not in drop and v not in (None, "")},
        sort_keys=True,
        default=str,
        separators=(",", ":"),
    )
    return hashlib.sha256(canonical_json.encode()).hexdigest()


class Writer:
    """Writes the normalized rows of one raw event."""

    def __init__(
        self,
        session: orm.Session,
        raw_id: int,
        source: str,
        received_at: datetime,
        settings: Settings,
    ) -> None:
        self.session = session
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
        return insert_new(self.session, model.__table__, values, keys)

    def store_all(self, events: list[payloads.Event]) -> list[tuple[Any, bool]]:
        """Write every event, in order; return what `store` returns for each.

        Status reports of messages named once in the request go in one statement per table, as
        writing them one by one would: different messages never touch the same rows. The rest,
        a message reported twice among them, is written one event after the other.
        """
        reports = {i: self._report(e) for i, e in enumerate(events) if e.kind in STATUS_KINDS}
        named = Counter(report.message_id for report in reports.values())
        once = {i: report for i, report in reports.items() if named[report.message_id] == 1}
        results = self._message_events(once) if len(once) > 1 else {}
        for index, event in enumerate(events):
            if index not in results:
                results[index] = self.store(event)
        return [results[index] for index in range(len(events))]

    def store(self, event: payloads.Event) -> tuple[Any, bool]:
        """Write one event; return (the resource's id, whether anything new was stored)."""
        if event.kind in STATUS_KINDS:
            return self._message_event(self._report(event))
        handler = {
            "inbound": self._inbound,
            "voice": self._voice,
            "unsubscription": self._unsubscription,
            "contact": self._contact,
        }[event.kind or ""]
        return handler(event)

    def reference(self, event: payloads.Event) -> Any:
        """The id of the resource an already-stored event made."""
        if event.kind in ("sms-status", "channel-status"):
            return event.data["id"]
        if event.kind == "inbound":
            return self._inbound_id(event)
        if event.kind == "voice":
            return self.session.scalar(sa.select(Call.id).where(Call.dedupe_key == self._call_key(event)))
        if event.kind == "contact":
            return self.session.scalar(
                sa.select(ContactEvent.id).where(ContactEvent.key == content_key(event.original))
            )
        return self.session.scalar(sa.select(OptOut.id).where(OptOut.key == self._opt_out_key(event)))

    # -- messages and their status history -------------------------------------------------

    def _report(self, event: payloads.Event) -> _Report:
        if event.kind == "sms-status":
            return self._sms_report(event)
        return self._channel_report(event)

    def _sms_report(self, event: payloads.Event) -> _Report:
        d = event.data
        provider_status = d.get("status") or ""
        status = canonical(provider_status, channel="sms")
        submitted = d.get("submit_at") or self.utc(d.get("submit_time"))
        sent = d.get("sent_at") or self.utc(d.get("sent_time"))
        done = d.get("deliv_at") or self.utc(d.get("deliv_time"))
        fields = {
            "channel": "sms",
            "mobile": d.get("mobile"),
            "mobile_canonical": self.number(d.get("mobile")),
            "sender": d.get("sender"),
            "service": d.get("service"),
            "custom": d.get("custom"),
            "custom1": d.get("custom1"),
            "custom2": d.get("custom2"),
            "cid": d.get("cid"),
            "foreign_id": d.get("foreign_id"),
            "credits": d.get("credits"),
            "units": d.get("units"),
            "operator": d.get("provider"),
            "operator_code": d.get("provider_code"),
            "region": d.get("region"),
            "region_code": d.get("region_code"),
            "country": d.get("location"),
            "country_code": d.get("location_code"),
            "submitted_at": submitted,
            "sent_at": sent,
            "delivered_at": done if status in (Status.delivered, Status.read) else None,
        }
        occurred = done or sent or submitted
        return _Report(d["id"], fields, status, provider_status, occurred)

    def _channel_report(self, event: payloads.Event) -> _Report:
        d = event.data
        channel = (d.get("channel") or event.channel or "whatsapp").lower()
        provider_status = d["status"]
        status = canonical(provider_status, channel=channel)
        delivered = self.utc(d.get("delivered_at"))
        read = self.utc(d.get("read_at"))
        processed = self.utc(d.get("processed_at"))
        stamp = self.utc(d.get("timestamp"))
        by_status = {Status.read: read, Status.delivered: delivered}.get(status)
        occurred = stamp or by_status or processed
        fields = {
            "channel": channel,
            "mobile": d.get("to"),
            "mobile_canonical": self.number(d.get("to")),
            "sender": d.get("from_"),
            "foreign_id": d.get("foreign_id"),
            "credits": d.get("credits"),
            "sent_at": stamp if status == Status.sent else processed,
            "delivered_at": delivered or (stamp if status == Status.delivered else None),
            "read_at": read or (stamp if status == Status.read else None),
        }
        return _Report(d["id"], fields, status, provider_status, occurred)

    def _message_row(self, report: _Report, now: datetime) -> dict[str, Any]:
        return {
            "id": report.message_id,
            "source": self.source,
            "status": report.status,
            "provider_status": report.provider_status,
            "status_at": report.occurred,
            "created_at": now,
            "updated_at": now,
            **report.fields,
        }

    def _event_row(self, report: _Report) -> dict[str, Any]:
        return {
            "message_id": report.message_id,
            "raw_event_id": self.raw_id,
            "source": self.source,
            "status": report.status,
            "provider_status": report.provider_status,
            "occurred_at": report.occurred,
            "received_at": self.received_at,
        }

    def _message_event(self, report: _Report) -> tuple[str, bool]:
        now = utcnow()
        created = self.insert(Message, self._message_row(report, now), ["id"])
        event_id = self.insert(MessageEvent, self._event_row(report), ["message_id", "provider_status"])
        if event_id is None:
            return report.message_id, False
        if created is None:
            self._merge(report, now)
        self.status_reports.append((report.fields["channel"], report.status.value))
        return report.message_id, True

    def _message_events(self, reports: dict[int, _Report]) -> dict[int, tuple[Any, bool]]:
        """`_message_event` for reports of distinct messages: one INSERT per table.

        Rows go in by message id, so that two arrays inserting the same messages wait on each
        other in one order rather than deadlock.
        """
        now = utcnow()
        ordered = sorted(reports.values(), key=lambda report: report.message_id)
        messages = [self._message_row(report, now) for report in ordered]
        messages = [{key: row.get(key) for key in _MESSAGE_COLUMNS} for row in messages]
        created = set(self._insert_rows(Message, messages, ["id"], ["id"]))
        events = [self._event_row(report) for report in ordered]
        keys = ["message_id", "provider_status"]
        new_events = set(self._insert_rows(MessageEvent, events, keys, keys))
        results: dict[int, tuple[Any, bool]] = {}
        for index, report in reports.items():
            is_new = (report.message_id, report.provider_status) in new_events
            if is_new and report.message_id not in created:
                self._merge(report, now)
            if is_new:
                self.status_reports.append((report.fields["channel"], report.status.value))
            results[index] = (report.message_id, is_new)
        return results

    def _insert_rows(
        self, model: type[Any], rows: list[dict[str, Any]], keys: list[str], returning: list[str]
    ) -> list[Any]:
        """INSERT ... ON CONFLICT (keys) DO NOTHING of many rows; `returning` of the new ones."""
        table = model.__table__
        statement = (
            insert_for(self.session, table)
            .on_conflict_do_nothing(index_elements=keys)
            .returning(*(table.c[name] for name in returning))
        )
        result = self.session.execute(statement, rows)
        return [row[0] if len(returning) == 1 else tuple(row) for row in result]

    def _merge(self, report: _Report, now: datetime) -> None:
        """Fold a new report into an existing message, under a row lock."""
        message_id, status, occurred = report.message_id, report.status, report.occurred
        message = self.session.scalars(
            sa.select(Message)
            .where(Message.id == message_id)
            # FOR NO KEY UPDATE: does not conflict with the KEY SHARE locks that concurrent
            # event inserts take through their foreign key, so two reports cannot deadlock here.
            .with_for_update(key_share=True)
            .execution_options(populate_existing=True)
        ).one()
        changes: dict[str, Any] = {
            name: value
            for name, value in report.fields.items()
            if value is not None and getattr(message, name) is None
        }
        if supersedes(status, occurred, message.status, message.status_at):
            changes.update(status=status, provider_status=report.provider_status, status_at=occurred)
        if changes:
            changes["updated_at"] = now
            self.session.execute(sa.update(Message).where(Message.id == message_id).values(**changes))

    # -- inbound, calls, opt-outs --------------------------------------------------------------

    def _inbound_id(self, event: payloads.Event) -> str:
        given = event.data.get("id")
        return given or "sha256:" + content_key(event.original)[:57]

    def _inbound(self, event: payloads.Event) -> tuple[Any, bool]:
        d = event.data
        inbound_id = self._inbound_id(event)
        channel = (d.get("channel") or event.channel or "sms").lower()
        values = {
            "id": inbound_id,
            "source": self.source,
            "raw_event_id": self.raw_id,
            "channel": "sms" if channel == "vmn" else channel,
            "from_number": d.get("from_"),
            "to_number": d.get("to"),
            "from_canonical": self.number(d.get("from_")),
            "to_canonical": self.number(d.get("to")),
            "type": d.get("type") or ("text" if d.get("text") else None),
            "text": d.get("text"),
            "media_url": d.get("media_url"),
            "caption": d.get("caption"),
            "file_name": d.get("file_name"),
            "keyword1": d.get("keyword1"),
            "keyword2": d.get("keyword2"),
            "occurred_at": self.utc(d.get("timestamp")),
            "contact": d.get("contact"),
            "received_at": self.received_at,
        }
        created = self.insert(InboundMessage, values, ["id"])
        return inbound_id, created is not None

    def _call_key(self, event: payloads.Event) -> str:
        return content_key(event.original, _VOLATILE_CALL_KEYS)

    def _voice(self, event: payloads.Event) -> tuple[Any, bool]:
        d = event.data
        call_id = self.insert(
            Call,
            {
                "dedupe_key": self._call_key(event),
                "source": self.source,
                "raw_event_id": self.raw_id,
                "service": d.get("source"),
                "bridge": d.get("bridge"),
                "from_number": d.get("from_"),
                "to_number": d.get("to"),
                "from_canonical": self.number(d.get("from_")),
                "to_canonical": self.number(d.get("to")),
                "mid": d.get("mid"),
                "flow_id": d.get("flow_id"),
                "start_at": self.utc(d.get("start_at")),
                "end_at": self.utc(d.get("end_at")),
                "duration": d.get("duration"),
                "billing": d.get("billing"),
                "status": d.get("status"),
                "status1": d.get("status1"),
                "status2": d.get("status2"),
                "hangup_by": d.get("hangup_by"),
                "received_at": self.received_at,
            },
            ["dedupe_key"],
        )
        if call_id is None:
            return self.reference(event), False
        url = d.get("recording_url")
        if url:
            recording_id = self.insert(
                Recording,
                {
                    "call_id": call_id,
                    "url": url,
                    "url_sha256": hashlib.sha256(url.encode()).hexdigest(),
                    "url_expires_at": self.received_at + timedelta(seconds=self.settings.recording_url_ttl),
                    "state": RecordingState.pending,
                    "next_attempt_at": self.received_at,
                    "created_at": self.received_at,
                    "updated_at": self.received_at,
                },
                ["call_id", "url_sha256"],
            )
            if recording_id is not None:
                self.new_recordings.append(recording_id)
        return call_id, True

    def _opt_out_key(self, event: payloads.Event) -> str:
        given = event.data.get("id")
        return f"id:{given}" if given else "sha256:" + content_key(event.original)[:57]

    def _unsubscription(self, event: payloads.Event) -> tuple[Any, bool]:
        d = event.data
        key = self._opt_out_key(event)
        opt_out_id = self.insert(
            OptOut,
            {
                "key": key,
                "provider_id": d.get("id"),
                "source": self.source,
                "raw_event_id": self.raw_id,
                # The envelope's event name or the URL's kind, else `channel` in the payload or query.
                "channel": (event.channel or d.get("channel") or "").lower() or None,
                "receiver": d.get("receiver"),
                "number_canonical": self.number(d.get("receiver")),
                "type": d.get("type"),
                "value": d.get("value"),
                "status": d.get("status"),
                "occurred_at": self.utc(d.get("created_at")),
                "received_at": self.received_at,
            },
            ["key"],
        )
        if opt_out_id is None:
            return self.reference(event), False
        return opt_out_id, True

    def _contact(self, event: payloads.Event) -> tuple[Any, bool]:
        d = event.data
        contact_event_id = self.insert(
            ContactEvent,
            {
                "key": content_key(event.original),
                "source": self.source,
                "raw_event_id": self.raw_id,
                "contact_id": d.get("id"),
                "identity": d.get("identity"),
                "number": d.get("number"),
                "number_canonical": self.number(d.get("number")),
                "email": d.get("email"),
                "first_name": d.get("first_name"),
                "last_name": d.get("last_name"),
                "status": d.get("status"),
                "occurred_at": self.utc(d.get("updated_at") or d.get("created_at")),
                "contact": event.original,
                "received_at": self.received_at,
            },
            ["key"],
        )
        if contact_event_id is None:
            return self.reference(event), False
        return contact_event_id, True
