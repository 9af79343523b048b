"""One webhook request's writes: the raw request first, then its normalized rows.

`write` runs in a transaction someone else commits (receiver.ingest.commit), with other requests'
writes. Should the normalized rows fail for any reason but the database's, the group commit
writes the batch again with a savepoint a request, that one's is rolled back, and its raw request
alone is stored again (`keep_raw`), marked for replay: a bug never loses a request. Idempotency
comes from unique constraints (INSERT ... ON CONFLICT DO NOTHING), never from a read before a
write, so a provider retry and two identical requests at the same instant both end in one row.

`write` is the one place for further rows that must be committed with the request (counters):
add them there. The request's changes for forwarding come back in its `Outcome`, and
`record_changes` writes those of every request of a transaction in one go, before its COMMIT.
"""

from __future__ import annotations

import hashlib
import logging
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, cast

import sqlalchemy as sa

from .. import answers, forwarding
from ..db import insert_new, insert_new_rows, utcnow
from ..models import RawEvent, RawState
from . import payloads
from .normalize import Writer
from .reports import STATUS_KINDS, message_id, write_reports
from .rows import Settings

log = logging.getLogger(__name__)

RAW_EVENTS = cast(sa.Table, RawEvent.__table__)
_RAW_KEY = ["source", "fingerprint"]
# What insert_raws says of a request stored already.
NOT_NEW = object()
_RAW_BY_FINGERPRINT = sa.select(RAW_EVENTS).where(
    RAW_EVENTS.c.source == sa.bindparam("source"), RAW_EVENTS.c.fingerprint == sa.bindparam("fingerprint")
)


@dataclass
class RawRequest:
    """A request as received, credentials already removed."""

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
    # What changed, for forwarding's outbox: written by `record_changes` in the same transaction.
    changes: list[forwarding.StoredChange] = field(default_factory=list)

    @property
    def outcome(self) -> str:
        """The metric label: stored, duplicate, accepted or quarantined."""
        return {202: "accepted", 422: "quarantined"}.get(self.code, self.message)

    def answer(self) -> dict[str, Any]:
        """The webhook's answer, in the provider's `{status, code, message}` shape (HTTP `code`)."""
        if self.code == 422:
            return answers.body(self.code, self.message, errors=self.errors or {}, event=self.raw_event_id)
        return answers.body(self.code, self.message, events=self.events)


@dataclass
class Parsed:
    """A request read, before any write: the raw event's row, and its events or why it has none."""

    raw: dict[str, Any]
    events: list[payloads.Event] | None
    errors: dict[str, Any] | None


def request_fingerprint(method: str, kind_hint: str | None, query_string: str, body: bytes) -> str:
    digest = hashlib.sha256()
    for part in (method.upper(), kind_hint or "", query_string):
        digest.update(part.encode())
        digest.update(b"\n")
    digest.update(body)
    return digest.hexdigest()


def parse(request: RawRequest, max_events: int) -> Parsed:
    """Read the request's events (CPU only: done before the request waits for the database)."""
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
        "fingerprint": request_fingerprint(
            request.method, request.kind_hint, request.query_string, request.body
        ),
        # The likely final state, so that the common case needs no UPDATE afterwards.
        "state": _expected_state(events),
        "errors": errors if events is None else _unknown_kind_errors(events),
        "processed_at": now,
        "kinds": [e.kind for e in events] if events is not None else None,
    }
    return Parsed(raw, events, errors)


def insert_raws(connection: sa.Connection, requests: list[Parsed]) -> list[Any]:
    """The raw rows of several requests in one INSERT ... ON CONFLICT DO NOTHING: each request's
    new row id, or NOT_NEW where the same request was stored already (or comes twice here: the
    first gets the row). `write` then takes it from there."""
    rows = insert_new_rows(
        connection, RAW_EVENTS, [request.raw for request in requests], _RAW_KEY, ["id", *_RAW_KEY]
    )
    new = {(row.source, row.fingerprint): row.id for row in rows}
    return [new.pop((request.raw["source"], request.raw["fingerprint"]), NOT_NEW) for request in requests]


def write_together(connection: sa.Connection, requests: list[Parsed], settings: Settings) -> list[Any]:
    """What several requests' `write`s would store, in few statements: the raw rows in one INSERT,
    then the status reports of every request made only of them, in one INSERT a table, when no
    other request of these (whatever else it holds) reports on the same message: those keep
    their order. For each request its `Outcome`, when written here, else what `write` takes from
    here (its raw row's id, or NOT_NEW)."""
    raw_ids = insert_raws(connection, requests)
    new = [
        (index, request.events)
        for index, (request, raw_id) in enumerate(zip(requests, raw_ids, strict=True))
        if raw_id is not NOT_NEW and request.events
    ]
    named = Counter(message_id(event) for _, events in new for event in events if event.kind in STATUS_KINDS)
    together: list[tuple[int, Writer, list[payloads.Event]]] = []
    for index, events in new:
        if all(event.kind in STATUS_KINDS and named[message_id(event)] == 1 for event in events):
            raw = requests[index].raw
            writer = Writer(connection, raw_ids[index], raw["source"], raw["received_at"], settings)
            together.append((index, writer, events))
    if sum(len(events) for _, _, events in together) < 2:
        return raw_ids
    reports = [(writer, writer.report(event)) for _, writer, events in together for event in events]
    results = iter(write_reports(reports))
    prepared: list[Any] = list(raw_ids)
    for index, writer, events in together:
        stored = [next(results) for _ in events]
        prepared[index] = _outcome(connection, writer, events, stored, requests[index].raw["state"])
    return prepared


def write(connection: sa.Connection, parsed: Parsed, settings: Settings, raw_id: Any = None) -> Outcome:
    """Store one parsed request, raw and as rows; its raw row first, unless `write_together` wrote
    it (`raw_id`: its id, `NOT_NEW` when it was stored already, or the request's `Outcome` when
    it wrote the rows too)."""
    if isinstance(raw_id, Outcome):
        return raw_id
    raw = parsed.raw
    if raw_id is None:
        raw_id = insert_new(connection, RAW_EVENTS, raw, _RAW_KEY)
    elif raw_id is NOT_NEW:
        raw_id = None
    if raw_id is None:
        return repeat(connection, raw["source"], raw["fingerprint"], settings)
    if parsed.errors is not None:
        return Outcome(422, "validation failed", raw_id, errors=parsed.errors)
    assert parsed.events is not None
    return normalize_raw(
        connection, raw_id, raw["source"], parsed.events, raw["received_at"], settings, stored=raw["state"]
    )


def keep_raw(connection: sa.Connection, parsed: Parsed, settings: Settings) -> Outcome:
    """What `write` does when writing the rows failed (a bug): the raw request alone, for replay."""
    raw = parsed.raw
    log.error("could not normalize a request from %s; kept raw for replay", raw["source"])
    kept = {**raw, "state": RawState.pending, "errors": {"_normalize": ["internal error; replay"]}}
    raw_id = insert_new(connection, RAW_EVENTS, kept, _RAW_KEY)
    if raw_id is None:  # an identical request was stored meanwhile
        return repeat(connection, raw["source"], raw["fingerprint"], settings)
    return Outcome(202, "accepted", raw_id, kinds=raw["kinds"])


def normalize_raw(
    connection: sa.Connection,
    raw_id: int,
    source: str,
    events: list[payloads.Event],
    received_at: datetime,
    settings: Settings,
    stored: RawState | None = None,
) -> Outcome:
    """Write the rows of a raw event's events; mark the raw event unless `stored` is its state."""
    understood = [e for e in events if e.kind is not None]
    writer = Writer(connection, raw_id, source, received_at, settings)
    return _outcome(connection, writer, events, writer.store_all(understood), stored)


def _outcome(
    connection: sa.Connection,
    writer: Writer,
    events: list[payloads.Event],
    results: list[tuple[Any, bool]],
    stored: RawState | None,
) -> Outcome:
    """The outcome of a raw event whose understood events the writer stored with `results`; the
    raw event marked with its state unless `stored` is it already."""
    outcome = Outcome(200, "stored", writer.raw_id, kinds=[e.kind for e in events])
    understood = [e for e in events if e.kind is not None]
    new = 0
    for ref, is_new in results:
        outcome.events.append(ref)
        new += is_new
    outcome.changes = forwarding.changes_of(understood, results)
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
        mark(connection, writer.raw_id, state, _unknown_kind_errors(events))
    return outcome


def record_changes(connection: sa.Connection, results: Iterable[Any]) -> None:
    """The one hand-over to forwarding: the changes of requests written in the connection's open
    transaction go to the outbox, in it, so that they commit (or not) with them. `results` may
    hold what other writes of the transaction returned (not an `Outcome`): those are passed over.
    """
    changes = [change for result in results if isinstance(result, Outcome) for change in result.changes]
    if changes:
        forwarding.record_changes(connection, changes)


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


def mark(connection: sa.Connection, raw_id: int, state: RawState, errors: dict[str, Any] | None) -> None:
    connection.execute(
        sa.update(RAW_EVENTS)
        .where(RAW_EVENTS.c.id == raw_id)
        .values(state=state, errors=errors, processed_at=utcnow())
    )


def repeat(connection: sa.Connection, source: str, fingerprint: str, settings: Settings) -> Outcome:
    """The same request again: answer as the first time, store nothing."""
    raw = connection.execute(_RAW_BY_FINGERPRINT, {"source": source, "fingerprint": fingerprint}).one()
    if raw.state == RawState.quarantined:
        return Outcome(422, "validation failed", raw.id, errors=raw.errors)
    if raw.state == RawState.pending:
        return Outcome(202, "accepted", raw.id)
    try:
        events = payloads.read(raw.headers, raw.query_string, raw.body, raw.kind_hint, settings.max_events)
    except payloads.PayloadError:  # stored before a stricter rule: it was stored, all the same
        return Outcome(200, "duplicate", raw.id)
    writer = Writer(connection, raw.id, source, raw.received_at, settings)
    refs = [writer.reference(e) for e in events if e.kind is not None]
    return Outcome(200, "duplicate", raw.id, events=refs, kinds=[e.kind for e in events])
