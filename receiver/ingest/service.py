"""Service: store a webhook request raw, then as messages, statuses, inbound, calls and opt-outs.

One transaction per request, committed before the answer. The raw request goes in first, then
the normalized rows (receiver.ingest.normalize). Should writing those fail for any reason but the
database's, the whole transaction is rolled back and the raw request alone is stored again,
marked for replay: a bug never loses a request. Idempotency comes from unique constraints
(INSERT ... ON CONFLICT DO NOTHING), never from a read before a write, so a provider retry and
two identical requests at the same instant both end in one row.
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy import orm

from ..db import insert_new, local_writer, utcnow
from ..models import RawEvent, RawState
from . import payloads
from .normalize import Settings, Writer

__all__ = ["Outcome", "RawRequest", "Settings", "fingerprint", "receive", "reprocess"]

log = logging.getLogger(__name__)


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
class Outcome:
    """How a request ended: the answer's code and message, and what it stored."""

    code: int
    message: str
    raw_event_id: int
    events: list[Any] = field(default_factory=list)
    errors: dict[str, Any] | None = None
    new_recordings: list[int] = field(default_factory=list)
    kinds: list[str | None] = field(default_factory=list)
    statuses: list[tuple[str, str]] = field(default_factory=list)  # (channel, status) of new reports

    @property
    def outcome(self) -> str:
        """The metric label: stored, duplicate, accepted or quarantined."""
        return {202: "accepted", 422: "quarantined"}.get(self.code, self.message)

    def answer(self) -> dict[str, Any]:
        """The webhook's answer, in the provider's `{status, code, message}` shape (HTTP `code`)."""
        if self.code == 422:
            return {
                "status": "ERROR",
                "code": self.code,
                "message": self.message,
                "errors": self.errors or {},
                "event": self.raw_event_id,
            }
        return {"status": "OK", "code": self.code, "message": self.message, "events": self.events}


def fingerprint(method: str, kind_hint: str | None, query_string: str, body: bytes) -> str:
    digest = hashlib.sha256()
    for part in (method.upper(), kind_hint or "", query_string):
        digest.update(part.encode())
        digest.update(b"\n")
    digest.update(body)
    return digest.hexdigest()


# PostgreSQL's deadlock and serialization failures: the transaction is rolled back whole and
# is safe to run again. So is a lost connection (the pool renews it): should the commit have
# been applied before the loss, the next try finds the request stored and answers `duplicate`.
_RETRYABLE_SQLSTATES = frozenset({"40P01", "40001"})
_ATTEMPTS = 3
_RAW_KEY = ["source", "fingerprint"]


def receive(session: orm.Session, request: RawRequest, settings: Settings) -> Outcome:
    """Store one authenticated request and everything it says; commit; say how it went.

    Runs in one transaction (continuing one the session has open, if any).
    """
    raw, events, errors = _parse(request, settings.max_events)
    for attempt in range(1, _ATTEMPTS + 1):
        try:
            with local_writer(session):
                outcome = _store(session, raw, events, errors, settings)
                session.commit()
            return outcome
        except sa.exc.OperationalError as exc:
            session.rollback()
            reason = "connection lost" if exc.connection_invalidated else getattr(exc.orig, "sqlstate", None)
            if not (exc.connection_invalidated or reason in _RETRYABLE_SQLSTATES) or attempt == _ATTEMPTS:
                raise
            log.warning("ingest transaction: %s (attempt %d); running it again", reason, attempt)
        except BaseException:
            session.rollback()
            raise
    raise AssertionError("unreachable")


def _parse(
    request: RawRequest, max_events: int
) -> tuple[dict[str, Any], list[payloads.Event] | None, dict[str, Any] | None]:
    """The raw event's row, and the request's events or why it has none."""
    now = utcnow()
    events: list[payloads.Event] | None = None
    errors: dict[str, Any] | None = None
    try:
        events = payloads.read(
            request.headers, request.query_string, request.body, request.kind_hint, max_events
        )
    except payloads.PayloadError as exc:
        errors = exc.errors
    raw = {
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
    return raw, events, errors


def _store(
    session: orm.Session,
    raw: dict[str, Any],
    events: list[payloads.Event] | None,
    errors: dict[str, Any] | None,
    settings: Settings,
) -> Outcome:
    raw_id = insert_new(session, RawEvent.__table__, raw, _RAW_KEY)
    if raw_id is None:
        return _repeat(session, raw["source"], raw["fingerprint"], settings)
    if errors is not None:
        return Outcome(422, "validation failed", raw_id, errors=errors)
    assert events is not None
    try:
        return _normalize_raw(
            session, raw_id, raw["source"], events, raw["received_at"], settings, stored=raw["state"]
        )
    except sa.exc.OperationalError:
        raise  # the database, not our code: retried whole, or answered 503
    except Exception:
        # A bug in normalization must not lose the request: keep it raw, answer 202, replay later.
        log.exception("could not normalize a request from %s; kept raw for replay", raw["source"])
        session.rollback()
        kept = {**raw, "state": RawState.pending, "errors": {"_normalize": ["internal error; replay"]}}
        raw_id = insert_new(session, RawEvent.__table__, kept, _RAW_KEY)
        if raw_id is None:  # an identical request was stored meanwhile
            return _repeat(session, raw["source"], raw["fingerprint"], settings)
        return Outcome(202, "accepted", raw_id, kinds=raw["kinds"])


def reprocess(session: orm.Session, raw_id: int, settings: Settings) -> Outcome:
    """Parse a stored pending or quarantined request again (after a fix) and store what it says.

    Safe to run twice, and twice at once: the row lock orders concurrent replays and the second
    finds the event processed. If storing fails again, nothing changes but the event's replay
    count, and the answer is 202.
    """
    try:
        with session.begin():
            raw = session.get(RawEvent, raw_id, with_for_update=True, populate_existing=True)
            if raw is None:
                raise LookupError(raw_id)
            if raw.state not in (RawState.pending, RawState.quarantined):
                # Processed already, by a replay that held the lock before this one.
                return Outcome(200, "duplicate", raw.id, kinds=list(raw.kinds or []))
            raw.replays, raw.replayed_at = raw.replays + 1, utcnow()
            try:
                events = payloads.read(
                    raw.headers, raw.query_string, raw.body, raw.kind_hint, settings.max_events
                )
            except payloads.PayloadError as exc:
                raw.state, raw.errors, raw.processed_at = RawState.quarantined, exc.errors, utcnow()
                return Outcome(422, "validation failed", raw.id, errors=exc.errors)
            raw.kinds = [e.kind for e in events]
            return _normalize_raw(session, raw.id, raw.source, events, raw.received_at, settings)
    except (LookupError, sa.exc.OperationalError):
        raise
    except Exception:
        log.exception("replay of raw event %s failed; it stays as it was", raw_id)
        with session.begin():
            session.execute(
                sa.update(RawEvent)
                .where(RawEvent.id == raw_id)
                .values(replays=RawEvent.replays + 1, replayed_at=utcnow())
            )
        return Outcome(202, "accepted", raw_id)


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
    writer = Writer(session, raw_id, source, received_at, settings)
    new = 0
    for ref, is_new in writer.store_all(understood):
        outcome.events.append(ref)
        new += is_new
    outcome.new_recordings = writer.new_recordings
    outcome.statuses = writer.status_reports
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
    try:
        events = payloads.read(raw.headers, raw.query_string, raw.body, raw.kind_hint, settings.max_events)
    except payloads.PayloadError:  # stored before a stricter rule: it was stored, all the same
        return Outcome(200, "duplicate", raw.id)
    writer = Writer(session, raw.id, source, raw.received_at, settings)
    refs = [writer.reference(e) for e in events if e.kind is not None]
    return Outcome(200, "duplicate", raw.id, events=refs, kinds=[e.kind for e in events])
