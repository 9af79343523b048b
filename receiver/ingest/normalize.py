"""The normalized rows of a webhook's events: messages and their status history
(receiver.ingest.reports), inbound messages, calls and recordings, opt-outs, contact events
(receiver.ingest.records). Every phone number is written as received and in its canonical form
(receiver.numbers), which the number filters match.

Every write is an INSERT ... ON CONFLICT DO NOTHING on a unique key, so writing the same event
twice, or at the same instant from two requests, stores it once. Nothing here commits.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

from . import payloads
from .records import RecordRows
from .reports import STATUS_KINDS, MessageRows, message_id
from .rows import Settings, content_key

__all__ = ["STATUS_KINDS", "Settings", "Writer", "content_key"]


class Writer(MessageRows, RecordRows):
    """Writes the normalized rows of one raw event."""

    def store_all(self, events: list[payloads.Event]) -> list[tuple[Any, bool]]:
        """Write every event, in order; return what `store` returns for each.

        Status reports of messages named once in the request go in one statement per table, as
        writing them one by one would: different messages never touch the same rows. The rest,
        a message reported twice among them, is written one event after the other.
        """
        reports = {i: self.report(e) for i, e in enumerate(events) if e.kind in STATUS_KINDS}
        named = Counter(report.message_id for report in reports.values())
        once = {i: report for i, report in reports.items() if named[report.message_id] == 1}
        results = self.message_events(once) if len(once) > 1 else {}
        for index, event in enumerate(events):
            if index not in results:
                results[index] = self.store(event)
        return [results[index] for index in range(len(events))]

    def store(self, event: payloads.Event) -> tuple[Any, bool]:
        """Write one event; return (the resource's id, whether anything new was stored)."""
        if event.kind in STATUS_KINDS:
            return self.message_event(self.report(event))
        handler = {
            "inbound": self.inbound,
            "voice": self.voice,
            "unsubscription": self.unsubscription,
            "contact": self.contact,
        }[event.kind or ""]
        return handler(event)

    def reference(self, event: payloads.Event) -> Any:
        """The id of the resource an already-stored event made."""
        if event.kind in STATUS_KINDS:
            return message_id(event)
        return self.record_reference(event)
