"""Inbound messages, calls and their recordings, opt-outs and contact events: one row each.

Each row has a unique key (the provider's id, or a hash of the event's content where it has
none), inserted with ON CONFLICT DO NOTHING, so the same event twice stores one row and the
second finds the first one's id (`reference`).
"""

from __future__ import annotations

import hashlib
from datetime import timedelta
from typing import Any

import sqlalchemy as sa

from ..models import Call, ContactEvent, InboundMessage, OptOut, Recording, RecordingState
from . import payloads
from .rows import RowWriter, content_key

# C2C records carry the time of sending (`date`, `unixtime`): a retry differs only there.
_VOLATILE_CALL_KEYS = frozenset({"date", "unixtime"})
_CALL_BY_KEY = sa.select(Call.__table__.c.id).where(Call.__table__.c.dedupe_key == sa.bindparam("key"))
_CONTACT_BY_KEY = sa.select(ContactEvent.__table__.c.id).where(
    ContactEvent.__table__.c.key == sa.bindparam("key")
)
_OPT_OUT_BY_KEY = sa.select(OptOut.__table__.c.id).where(OptOut.__table__.c.key == sa.bindparam("key"))


class RecordRows(RowWriter):
    """The rows of inbound messages, calls, recordings, opt-outs and contact events."""

    def record_reference(self, event: payloads.Event) -> Any:
        """The id of the row an already-stored event of these kinds made."""
        if event.kind == "inbound":
            return self._inbound_id(event)
        if event.kind == "voice":
            return self.connection.scalar(_CALL_BY_KEY, {"key": self._call_key(event)})
        if event.kind == "contact":
            return self.connection.scalar(_CONTACT_BY_KEY, {"key": content_key(event.original)})
        return self.connection.scalar(_OPT_OUT_BY_KEY, {"key": self._opt_out_key(event)})

    def _inbound_id(self, event: payloads.Event) -> str:
        given = event.data.get("id")
        return given or "sha256:" + content_key(event.original)[:57]

    def inbound(self, event: payloads.Event) -> tuple[Any, bool]:
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

    def voice(self, event: payloads.Event) -> tuple[Any, bool]:
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
            return self.record_reference(event), False
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

    def unsubscription(self, event: payloads.Event) -> tuple[Any, bool]:
        d = event.data
        opt_out_id = self.insert(
            OptOut,
            {
                "key": self._opt_out_key(event),
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
            return self.record_reference(event), False
        return opt_out_id, True

    def contact(self, event: payloads.Event) -> tuple[Any, bool]:
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
            return self.record_reference(event), False
        return contact_event_id, True
