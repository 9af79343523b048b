"""Status reports: a message's row, merged report by report, and its status history.

A report's message is inserted if new (ON CONFLICT DO NOTHING on its id) and its status event
likewise (on message id and provider status), so the same report twice, or at the same instant
from two requests, is stored once. A report for a message already known is folded into it under
a row lock (`_merge`), which keeps the current status by the rules of receiver.ingest.statuses.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, cast

import sqlalchemy as sa

from ..db import insert_new_rows, utcnow
from ..models import Message, MessageEvent, Status
from . import payloads
from .rows import RowWriter
from .statuses import canonical, supersedes

STATUS_KINDS = ("sms-status", "channel-status")
_MESSAGES = cast(sa.Table, Message.__table__)
_MESSAGE_COLUMNS = tuple(column.key for column in _MESSAGES.columns)
_EVENT_KEY = ["message_id", "provider_status"]
# FOR NO KEY UPDATE: does not conflict with the KEY SHARE locks that concurrent event inserts
# take through their foreign key, so two reports cannot deadlock here.
_LOCKED_MESSAGE = (
    sa.select(_MESSAGES).where(_MESSAGES.c.id == sa.bindparam("id")).with_for_update(key_share=True)
)


def message_id(event: payloads.Event) -> str:
    """The message a status report (of a kind in STATUS_KINDS) is about."""
    return cast(str, event.data["id"])


@dataclass
class Report:
    """A status report, ready to write: the message's fields and the status event's."""

    message_id: str
    fields: dict[str, Any]
    status: Status
    provider_status: str
    occurred: datetime | None


class MessageRows(RowWriter):
    """The message and status-event rows of status reports."""

    def report(self, event: payloads.Event) -> Report:
        if event.kind == "sms-status":
            return self._sms_report(event)
        return self._channel_report(event)

    def _sms_report(self, event: payloads.Event) -> Report:
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
        return Report(message_id(event), fields, status, provider_status, occurred)

    def _channel_report(self, event: payloads.Event) -> Report:
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
        return Report(message_id(event), fields, status, provider_status, occurred)

    def _message_row(self, report: Report, now: datetime) -> dict[str, Any]:
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

    def _event_row(self, report: Report) -> dict[str, Any]:
        return {
            "message_id": report.message_id,
            "raw_event_id": self.raw_id,
            "source": self.source,
            "status": report.status,
            "provider_status": report.provider_status,
            "occurred_at": report.occurred,
            "received_at": self.received_at,
        }

    def message_event(self, report: Report) -> tuple[str, bool]:
        """Write one report; (the message's id, whether its status event was new)."""
        now = utcnow()
        created = self.insert(Message, self._message_row(report, now), ["id"])
        event_id = self.insert(MessageEvent, self._event_row(report), _EVENT_KEY)
        if event_id is None:
            return report.message_id, False
        if created is None:
            self._merge(report, now)
        self.status_reports.append((report.fields["channel"], report.status.value))
        return report.message_id, True

    def message_events(self, reports: dict[int, Report]) -> dict[int, tuple[Any, bool]]:
        """`message_event` for reports of distinct messages: one INSERT per table."""
        indices = list(reports)
        results = write_reports([(self, reports[index]) for index in indices])
        return dict(zip(indices, results, strict=True))

    def _merge(self, report: Report, now: datetime) -> None:
        """Fold a new report into an existing message, under a row lock."""
        message = self.connection.execute(_LOCKED_MESSAGE, {"id": report.message_id}).one()._mapping
        changes: dict[str, Any] = {
            name: value
            for name, value in report.fields.items()
            if value is not None and message[name] is None
        }
        if supersedes(report.status, report.occurred, message["status"], message["status_at"]):
            changes.update(
                status=report.status, provider_status=report.provider_status, status_at=report.occurred
            )
        if changes:
            changes["updated_at"] = now
            self.connection.execute(
                sa.update(_MESSAGES).where(_MESSAGES.c.id == report.message_id).values(**changes)
            )


def write_reports(reports: Sequence[tuple[MessageRows, Report]]) -> list[tuple[Any, bool]]:
    """`message_event` for each (writer, report), reports of distinct messages (each its
    writer's raw event), in one INSERT per table; what `message_event` returns for each.

    Different messages never touch the same rows, so this stores what writing them one by one
    would. Rows go in, and known messages are locked to be merged, by message id, so that two
    transactions writing the same messages here wait on each other in one order rather than
    deadlock (other writes lock in their own order: a deadlock with one of them is rolled back
    and written again, receiver.ingest.commit).
    """
    connection = reports[0][0].connection
    now = utcnow()
    ordered = sorted(reports, key=lambda pair: pair[1].message_id)
    messages = [writer._message_row(report, now) for writer, report in ordered]
    messages = [{key: row.get(key) for key in _MESSAGE_COLUMNS} for row in messages]
    created = {row[0] for row in insert_new_rows(connection, _MESSAGES, messages, ["id"], ["id"])}
    events = [writer._event_row(report) for writer, report in ordered]
    inserted = insert_new_rows(connection, MessageEvent.__table__, events, _EVENT_KEY, _EVENT_KEY)
    new_events = {tuple(row) for row in inserted}
    for writer, report in ordered:
        if (report.message_id, report.provider_status) not in new_events:
            continue
        if report.message_id not in created:
            writer._merge(report, now)
        writer.status_reports.append((report.fields["channel"], report.status.value))
    return [
        (report.message_id, (report.message_id, report.provider_status) in new_events)
        for _writer, report in reports
    ]
