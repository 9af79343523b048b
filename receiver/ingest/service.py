"""Service: one webhook request, from its source's checks to its commit, and how to answer it.

The view hands over the request as received (`Webhook`) and translates the `Answer` to HTTP;
everything between is decided here. The source comes from a short-lived cache
(receiver.sources.SourceCache), read outside any transaction: no database connection is held
while the body arrives (it may trickle in for a while). Credentials come from the headers and
the query: they are checked before the body is read, so that a wrong one costs no read of a
body trickled in slowly. The writes (receiver.ingest.store) go to the process's group commit
(receiver.ingest.commit), which answers each request only once its transaction is committed.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from flask import Flask

from .. import answers, keys, metrics
from ..credentials import CREDENTIAL_HEADERS, REDACTED, is_credential_header
from ..db import utcnow, within_deadline
from ..models import REPLAYABLE_RAW, RawEvent, RawState
from ..recordings import queue as recordings_queue
from ..sources import (
    SourceCache,
    SourceKeys,
    count_auth_failure,
    possible_name,
    read_source_keys,
    secret_accepted,
)
from . import bodies, payloads, store
from .commit import GroupCommit, invalidate
from .payloads import URL_KINDS
from .rows import Settings
from .store import Outcome, RawRequest, request_fingerprint

__all__ = [
    "Answer",
    "Ingest",
    "Outcome",
    "RawRequest",
    "Settings",
    "Webhook",
    "reprocess",
    "request_fingerprint",
]


@dataclass
class Webhook:
    """A webhook request as the view received it; the body is read only when needed."""

    source: str
    kind: str | None
    method: str
    path: str
    query_string: bytes
    args: Mapping[str, str]
    headers: Any  # werkzeug's Headers: `get` ignores case, `items` gives names as received
    content_length: int | None
    remote_addr: str | None
    read_body: Callable[[], bytes]


@dataclass
class Answer:
    """The answer's HTTP code and JSON body; `close`: the body was not (wholly) read, so the
    connection is closed after the answer, where the server would read the rest to keep it."""

    code: int
    body: dict[str, Any]
    close: bool = False


def _error(code: int, message: str, close: bool = False) -> Answer:
    return Answer(code, answers.body(code, message), close)


class Ingest:
    """The webhook service of one app (one per process): settings, source cache, group commit."""

    def __init__(self, engine: sa.Engine, config: Mapping[str, Any]) -> None:
        self.settings = Settings.from_config(config)
        self.max_body = config["MAX_BODY_BYTES"]
        self.wait_timeout = config["DB_WAIT_TIMEOUT"]
        self.sources = SourceCache(config["SOURCE_CACHE_SECONDS"])
        self.read_engine = engine.execution_options(isolation_level="AUTOCOMMIT")
        # PostgreSQL takes several transactions at once: as many batches as the pool has connections.
        # A batch's raw rows and status reports go in together first, its outbox rows together last.
        self.commits = GroupCommit(
            engine,
            self.wait_timeout,
            writers=config["DB_POOL_SIZE"],
            prelude=lambda connection, requests: store.write_together(connection, requests, self.settings),
            finish=store.record_changes,
        )

    @classmethod
    def of(cls, app: Flask) -> Ingest:
        service: Ingest | None = app.extensions.get("receiver.ingest")
        if service is None:
            service = app.extensions["receiver.ingest"] = cls(
                app.extensions["receiver.db"].engine, app.config
            )
        return service

    def take(self, hook: Webhook) -> Answer:
        """Check, store and answer one webhook request."""
        if hook.kind is not None and hook.kind not in URL_KINDS:
            return _error(404, f"unknown kind {hook.kind!r}; one of: {', '.join(URL_KINDS)}")
        if (hook.content_length or 0) > self.max_body:
            return _error(413, "body too large", close=True)
        found = self.source(hook.source)
        if found is None:
            return _error(404, f"unknown source {hook.source!r}", close=True)
        secret_ok = secret_accepted(found, _presented_secret(hook), utcnow())
        token = hook.args.get("token")
        token_ok = token is not None and keys.matches(token, found.validation_key_digest)
        if not (secret_ok or token_ok):
            return self._refuse(
                found, "validation key does not match" if token is not None else "missing or invalid secret"
            )
        body = hook.read_body()
        if len(body) > self.max_body:  # a chunked body, cut by werkzeug
            return _error(413, "body too large", close=True)
        challenge = _challenge(hook.args, body)
        if token is not None and challenge is not None:
            return (
                Answer(200, {"challenge": challenge})
                if token_ok
                else self._refuse(found, "validation key does not match")
            )
        if not secret_ok:
            return self._refuse(found, "missing or invalid secret")
        if found.signing_key and not keys.signature_matches(
            body, hook.headers.get("Signature"), found.signing_key
        ):
            return self._refuse(found, "missing or invalid signature")
        if challenge is not None and _only_challenge(hook.args, body):
            return Answer(200, {"challenge": challenge})
        outcome = self.store(_raw_request(hook, body))
        metrics.count_ingest(outcome, found.name)
        if outcome.new_recordings:
            recordings_queue.enqueue(outcome.new_recordings)  # bounded; the worker's sweep is the fallback
        return Answer(outcome.code, outcome.answer())

    def store(self, request: RawRequest) -> Outcome:
        """Store one authenticated request and everything it says; return once committed."""
        parsed = store.parse(request, self.settings.max_events)
        return self.commits.run(
            lambda connection, raw_id: store.write(connection, parsed, self.settings, raw_id),
            fallback=lambda connection, _: store.keep_raw(connection, parsed, self.settings),
            payload=parsed,
        )

    def source(self, name: str) -> SourceKeys | None:
        """The source named so, as read at most SOURCE_CACHE_SECONDS ago. A name no source can
        have (too long, a NUL) is not looked up."""
        if not possible_name(name):
            return None
        return self.sources.get(name, self._read_source)

    def _read_source(self, name: str) -> SourceKeys | None:
        """Read outside any transaction; once more should the pooled connection prove dead (the
        pool renews it: nothing was done yet, so nothing is lost)."""
        opened: list[sa.Connection] = []
        with within_deadline(self.wait_timeout, lambda: invalidate(opened)):
            try:
                with self.read_engine.connect() as connection:
                    opened.append(connection)
                    return read_source_keys(connection, name)
            except sa.exc.DBAPIError as exc:
                if not exc.connection_invalidated:
                    raise
            with self.read_engine.connect() as connection:
                opened.append(connection)
                return read_source_keys(connection, name)

    def _refuse(self, source: SourceKeys, message: str) -> Answer:
        self.commits.run(lambda connection, _: count_auth_failure(connection, source.id))
        metrics.PENDING.count(metrics.AUTH_FAILURES, source.name)
        return _error(401, message, close=True)


def _presented_secret(hook: Webhook) -> str | None:
    scheme, _, value = hook.headers.get("Authorization", "").partition(" ")
    if scheme.lower() == "bearer" and value.strip():
        return value.strip()
    return hook.args.get("secret")


def _challenge(args: Mapping[str, str], body: bytes) -> str | None:
    """The verification challenge, from a JSON body or (should the platform use GET) the query."""
    if "challenge" in args:
        return args["challenge"]
    if b"challenge" not in body:
        return None
    try:
        document = bodies.parse_json(body)
    except bodies.PayloadError:
        return None
    if isinstance(document, dict) and isinstance(document.get("challenge"), str | int):
        return str(document["challenge"])
    return None


def _only_challenge(args: Mapping[str, str], body: bytes) -> bool:
    """A verification request holds only the challenge (and the validation key)."""
    if not body.strip():
        return set(args) <= {"challenge", "validation_key", "token", "secret"}
    try:
        document: dict[str, Any] = bodies.parse_json(body)
    except bodies.PayloadError:
        return False
    return isinstance(document, dict) and set(document) <= {"challenge", "validation_key", "token"}


def _raw_request(hook: Webhook, body: bytes) -> RawRequest:
    headers = {
        name: REDACTED if is_credential_header(name) else value
        for name, value in hook.headers.items()
        if name.lower() not in CREDENTIAL_HEADERS
    }
    return RawRequest(
        source=hook.source,
        method=hook.method,
        path=hook.path,
        kind_hint=hook.kind,
        query_string=bodies.stored_query(hook.query_string),
        headers=headers,
        body=body,
        remote_addr=hook.remote_addr,
    )


def reprocess(session: sa.orm.Session, raw_id: int, settings: Settings) -> Outcome:
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
            if raw.state not in REPLAYABLE_RAW:
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
            session.flush()
            outcome = store.normalize_raw(
                session.connection(), raw.id, raw.source, events, raw.received_at, settings
            )
            store.record_changes(session.connection(), [outcome])
            return outcome
    except (LookupError, sa.exc.OperationalError):
        raise
    except Exception:
        store.log.exception("replay of raw event %s failed; it stays as it was", raw_id)
        with session.begin():
            session.execute(
                sa.update(RawEvent)
                .where(RawEvent.id == raw_id)
                .values(replays=RawEvent.replays + 1, replayed_at=utcnow())
            )
        return Outcome(202, "accepted", raw_id)
