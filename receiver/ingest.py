"""Service: store a webhook request raw, then as messages, statuses, inbound, calls and opt-outs.

One transaction per request. The raw request goes in first; the normalized rows are written
inside a savepoint, so a bug in them leaves the raw request stored and marked for replay.
Idempotency comes from unique constraints (INSERT ... ON CONFLICT DO NOTHING), never from a
read before a write, so a provider retry and two identical requests at the same instant both
end in one row.
"""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import sqlalchemy as sa
from sqlalchemy import orm

from . import payloads
from .db import insert_new, local_writer, utcnow
from .models import (
    Call,
    InboundMessage,
    Message,
    MessageEvent,
    OptOut,
    RawEvent,
    RawState,
    Recording,
    RecordingState,
    Status,
)
from .statuses import canonical, supersedes

log = logging.getLogger(__name__)

# C2C records carry the time of sending (`date`, `unixtime`): a retry differs only there.
_VOLATILE_CALL_KEYS = frozenset({"date", "unixtime"})


@dataclass
class RawRequest:
    """What the view hands over: the request as received, credentials already removed."""

    source: str
    method: str
    path: str
    kind_hint: str | None
    query_string: str
    headers: dict[str, str]
    body: bytes
    remote_addr: str | None


@dataclass
class Settings:
    timezone: ZoneInfo
    recording_url_ttl: int


@dataclass
class Outcome:
    """How a request ended: the answer's code and message, and what it stored."""

    code: int
    message: str
    raw_event_id: int
    events: list[Any] = field(default_factory=list)
    errors: dict[str, Any] | None = None
    new_recordings: list[int] = field(default_factory=list)
    kinds: list[str | None] = field(default_factory=list)

    @property
    def outcome(self) -> str:
        """The metric label: stored, duplicate, accepted or quarantined."""
        return {202: "accepted", 422: "quarantined"}.get(self.code, self.message)


def fingerprint(method: str, kind_hint: str | None, query_string: str, body: bytes) -> str:
    digest = hashlib.sha256()
    for part in (method.upper(), kind_hint or "", query_string):
        digest.update(part.encode())
        digest.update(b"\n")
    digest.update(body)
    return digest.hexdigest()


# PostgreSQL's deadlock and serialization failures: the transaction is rolled back whole and
# is safe to run again.
_RETRYABLE_SQLSTATES = frozenset({"40P01", "40001"})
_ATTEMPTS = 3


def receive(session: orm.Session, request: RawRequest, settings: Settings) -> Outcome:
    """Store one authenticated request and everything it says; commit; say how it went."""
    for attempt in range(1, _ATTEMPTS + 1):
        try:
            with local_writer(session):
                return _receive_once(session, request, settings)
        except sa.exc.OperationalError as exc:
            sqlstate = getattr(exc.orig, "sqlstate", None)
            if sqlstate not in _RETRYABLE_SQLSTATES or attempt == _ATTEMPTS:
                raise
            log.warning("ingest transaction %s (attempt %d); running it again", sqlstate, attempt)
    raise AssertionError("unreachable")


def _receive_once(session: orm.Session, request: RawRequest, settings: Settings) -> Outcome:
    now = utcnow()
    content_type = payloads.content_type_of(request.headers)
    events: list[payloads.Event] | None = None
    errors: dict[str, Any] | None = None
    try:
        events = payloads.load(
            payloads.decode(content_type, request.query_string, request.body), request.kind_hint
        )
    except payloads.PayloadError as exc:
        errors = exc.errors
    values = {
        "source": request.source,
        "received_at": now,
        "method": request.method,
        "path": request.path,
        "kind_hint": request.kind_hint,
        "query_string": request.query_string,
        "headers": request.headers,
        "body": request.body,
        "remote_addr": request.remote_addr,
        "sha256": hashlib.sha256(request.body).hexdigest(),
        "fingerprint": fingerprint(request.method, request.kind_hint, request.query_string, request.body),
        # The likely final state, so that the common case needs no UPDATE afterwards.
        "state": _expected_state(events),
        "errors": errors if events is None else _unknown_kind_errors(events),
        "processed_at": now,
        "kinds": [e.kind for e in events] if events is not None else None,
    }
    with session.begin():
        inserted = insert_new(session, RawEvent.__table__, values, ["source", "fingerprint"])
        if inserted is None:
            return _repeat(session, request.source, values["fingerprint"], settings)
        if errors is not None:
            return Outcome(422, "validation failed", inserted, errors=errors)
        assert events is not None
        return _normalize_raw(
            session, inserted, request.source, events, now, settings, stored=values["state"]
        )


def reprocess(session: orm.Session, raw_id: int, settings: Settings) -> Outcome:
    """Parse a stored pending or quarantined request again (after a fix) and store what it says.

    Safe to run twice, and twice at once: the row lock orders concurrent replays and the second
    finds the event processed.
    """
    with session.begin():
        raw = session.get(RawEvent, raw_id, with_for_update=True, populate_existing=True)
        if raw is None:
            raise LookupError(raw_id)
        if raw.state not in (RawState.pending, RawState.quarantined):
            # Processed already, by a replay that held the lock before this one: nothing to do.
            return Outcome(200, "duplicate", raw.id, kinds=list(raw.kinds or []))
        try:
            events = payloads.load(
                payloads.decode(payloads.content_type_of(raw.headers), raw.query_string, raw.body),
                raw.kind_hint,
            )
        except payloads.PayloadError as exc:
            raw.state, raw.errors, raw.processed_at = RawState.quarantined, exc.errors, utcnow()
            return Outcome(422, "validation failed", raw.id, errors=exc.errors)
        raw.kinds = [e.kind for e in events]
        return _normalize_raw(session, raw.id, raw.source, events, raw.received_at, settings)


def _normalize_raw(
    session: orm.Session,
    raw_id: int,
    source: str,
    events: list[payloads.Event],
    received_at: datetime,
    settings: Settings,
    stored: RawState | None = None,
) -> Outcome:
    """Write the rows of a raw event's events; mark the raw event unless `stored` is its state."""
    outcome = Outcome(200, "stored", raw_id, kinds=[e.kind for e in events])
    understood = [e for e in events if e.kind is not None]
    new = 0
    try:
        with session.begin_nested():
            context = _Context(session, raw_id, source, received_at, settings)
            for event in understood:
                ref, is_new = context.store(event)
                outcome.events.append(ref)
                new += is_new
            outcome.new_recordings = context.new_recordings
    except sa.exc.OperationalError:
        raise  # the database, not our parsing: retried whole, or answered 503
    except Exception:
        # A bug in normalization must not lose the request: keep it raw, answer 202, replay later.
        log.exception("could not normalize raw event %s; kept for replay", raw_id)
        outcome = Outcome(202, "accepted", raw_id, kinds=outcome.kinds)
        _mark(session, raw_id, RawState.pending, {"_normalize": ["internal error; replay"]})
        return outcome
    if len(understood) < len(events):
        outcome.code, outcome.message = 202, "accepted"
        state = RawState.pending
    elif new == 0:
        outcome.message = "duplicate"
        state = RawState.duplicate
    else:
        state = RawState.processed
    if state != stored:
        _mark(session, raw_id, state, _unknown_kind_errors(events))
    return outcome


def _expected_state(events: list[payloads.Event] | None) -> RawState:
    if events is None:
        return RawState.quarantined
    if any(e.kind is None for e in events):
        return RawState.pending
    return RawState.processed


def _unknown_kind_errors(events: list[payloads.Event]) -> dict[str, Any] | None:
    if any(e.kind is None for e in events):
        return {"_kind": ["event kind not recognised; kept for replay"]}
    return None


def _mark(session: orm.Session, raw_id: int, state: RawState, errors: dict[str, Any] | None) -> None:
    session.execute(
        sa.update(RawEvent)
        .where(RawEvent.id == raw_id)
        .values(state=state, errors=errors, processed_at=utcnow())
    )


def _repeat(session: orm.Session, source: str, fp: str, settings: Settings) -> Outcome:
    """The same request again: answer as the first time, store nothing."""
    raw = session.scalars(
        sa.select(RawEvent).where(RawEvent.source == source, RawEvent.fingerprint == fp)
    ).one()
    if raw.state == RawState.quarantined:
        return Outcome(422, "validation failed", raw.id, errors=raw.errors)
    if raw.state == RawState.pending:
        return Outcome(202, "accepted", raw.id)
    events = payloads.load(
        payloads.decode(payloads.content_type_of(raw.headers), raw.query_string, raw.body),
        raw.kind_hint,
    )
    context = _Context(session, raw.id, source, raw.received_at, settings)
    refs = [context.reference(e) for e in events if e.kind is not None]
    return Outcome(200, "duplicate", raw.id, events=refs, kinds=[e.kind for e in events])


def _content_key(data: dict[str, Any], drop: frozenset[str] = frozenset()) -> str:
    canonical_json = json.dumps(
        {k: v for k, v in data.items() if k not in drop and v not in (None, "")},
        sort_keys=True,
        default=str,
        separators=(",", ":"),
    )
    return hashlib.sha256(canonical_json.encode()).hexdigest()


class _Context:
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

    def utc(self, value: datetime | None) -> datetime | None:
        """Place a zone-less provider time in `PROVIDER_TIMEZONE`."""
        if value is None or value.tzinfo is not None:
            return value
        return value.replace(tzinfo=self.settings.timezone)

    def insert(self, model: type[Any], values: dict[str, Any], keys: list[str]) -> Any:
        """INSERT ... ON CONFLICT DO NOTHING; the new row's primary key, or None if it existed."""
        return insert_new(self.session, model.__table__, values, keys)

    def store(self, event: payloads.Event) -> tuple[Any, bool]:
        """Write one event; return (the resource's id, whether anything new was stored)."""
        handler = {
            "sms-status": self._sms_status,
            "channel-status": self._channel_status,
            "inbound": self._inbound,
            "voice": self._voice,
            "unsubscription": self._unsubscription,
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
        return self.session.scalar(sa.select(OptOut.id).where(OptOut.key == self._opt_out_key(event)))

    # -- messages and their status history -------------------------------------------------

    def _sms_status(self, event: payloads.Event) -> tuple[Any, bool]:
        d = event.data
        provider_status = d.get("status") or ""
        status = canonical(provider_status, channel="sms")
        submitted = d.get("submit_at") or self.utc(d.get("submit_time"))
        sent = d.get("sent_at") or self.utc(d.get("sent_time"))
        done = d.get("deliv_at") or self.utc(d.get("deliv_time"))
        fields = {
            "channel": "sms",
            "mobile": d.get("mobile"),
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
        return self._message_event(d["id"], fields, status, provider_status, occurred)

    def _channel_status(self, event: payloads.Event) -> tuple[Any, bool]:
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
            "sender": d.get("from_"),
            "foreign_id": d.get("foreign_id"),
            "credits": d.get("credits"),
            "sent_at": stamp if status == Status.sent else processed,
            "delivered_at": delivered or (stamp if status == Status.delivered else None),
            "read_at": read or (stamp if status == Status.read else None),
        }
        return self._message_event(d["id"], fields, status, provider_status, occurred)

    def _message_event(
        self,
        message_id: str,
        fields: dict[str, Any],
        status: Status,
        provider_status: str,
        occurred: datetime | None,
    ) -> tuple[str, bool]:
        now = utcnow()
        created = self.insert(
            Message,
            {
                "id": message_id,
                "source": self.source,
                "status": status,
                "provider_status": provider_status,
                "status_at": occurred,
                "created_at": now,
                "updated_at": now,
                **fields,
            },
            ["id"],
        )
        event_id = self.insert(
            MessageEvent,
            {
                "message_id": message_id,
                "raw_event_id": self.raw_id,
                "source": self.source,
                "status": status,
                "provider_status": provider_status,
                "occurred_at": occurred,
                "received_at": self.received_at,
            },
            ["message_id", "provider_status"],
        )
        if event_id is None:
            return message_id, False
        if created is None:
            self._merge(message_id, fields, status, provider_status, occurred, now)
        return message_id, True

    def _merge(
        self,
        message_id: str,
        fields: dict[str, Any],
        status: Status,
        provider_status: str,
        occurred: datetime | None,
        now: datetime,
    ) -> None:
        """Fold a new report into an existing message, under a row lock."""
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
            for name, value in fields.items()
            if value is not None and getattr(message, name) is None
        }
        if supersedes(status, occurred, message.status, message.status_at):
            changes.update(status=status, provider_status=provider_status, status_at=occurred)
        if changes:
            changes["updated_at"] = now
            self.session.execute(sa.update(Message).where(Message.id == message_id).values(**changes))

    # -- inbound, calls, opt-outs --------------------------------------------------------------

    def _inbound_id(self, event: payloads.Event) -> str:
        given = event.data.get("id")
        return given or "sha256:" + _content_key(event.original)[:57]

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
        return _content_key(event.original, _VOLATILE_CALL_KEYS)

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
        return f"id:{given}" if given else "sha256:" + _content_key(event.original)[:57]

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
                "channel": event.channel,
                "receiver": d.get("receiver"),
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
