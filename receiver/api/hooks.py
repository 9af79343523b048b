"""/hooks/<source>[/<kind>]: authenticate → store raw → load → normalize → answer."""

from __future__ import annotations

from contextlib import AbstractContextManager
from typing import Any

import sqlalchemy as sa
from flask import Blueprint, Response, current_app, jsonify, request
from sqlalchemy import orm

from .. import keys, metrics
from ..credentials import CREDENTIAL_HEADERS
from ..db import answering_within, first_read, get_db, get_session, utcnow
from ..errors import error_response
from ..ingest import bodies
from ..ingest import service as ingest
from ..ingest.payloads import URL_KINDS
from ..models import Source
from ..recordings import queue as recordings_queue
from ..sources import count_auth_failure, possible_name, secret_accepted

bp = Blueprint("hooks", __name__)


@bp.route("/hooks/<source>", methods=["GET", "POST", "PUT"])
@bp.route("/hooks/<source>/<kind>", methods=["GET", "POST", "PUT"])
def receive(source: str, kind: str | None = None) -> tuple[Response, int]:
    """Take one webhook request from the platform."""
    if kind is not None and kind not in URL_KINDS:
        return error_response(404, f"unknown kind {kind!r}; one of: {', '.join(URL_KINDS)}")
    if (request.content_length or 0) > current_app.config["MAX_BODY_BYTES"]:
        return _closing(error_response(413, "body too large"))
    found = _source_named(source)
    if found is None:
        return _closing(error_response(404, f"unknown source {source!r}"))

    # Credentials come from the headers and the query: check them before reading the body, so
    # that a wrong one costs no read of a body trickled in slowly.
    secret_ok = secret_accepted(found, _presented_secret(), utcnow())
    token = request.args.get("token")
    token_ok = token is not None and keys.matches(token, found.validation_key_digest)
    if not (secret_ok or token_ok):
        message = "validation key does not match" if token is not None else "missing or invalid secret"
        return _refuse(found, message)

    body = request.get_data(cache=False)
    if len(body) > current_app.config["MAX_BODY_BYTES"]:  # a chunked body, cut by werkzeug
        return _closing(error_response(413, "body too large"))
    challenge = _challenge(body)
    if token is not None and challenge is not None:
        if token_ok:
            return jsonify({"challenge": challenge}), 200
        return _refuse(found, "validation key does not match")

    if not secret_ok:
        return _refuse(found, "missing or invalid secret")
    if found.signing_key and not keys.signature_matches(
        body, request.headers.get("Signature"), found.signing_key
    ):
        return _refuse(found, "missing or invalid signature")
    if challenge is not None and _only_challenge(body):
        return jsonify({"challenge": challenge}), 200

    session = get_session()
    with _database(session):
        outcome = ingest.receive(
            session, _raw_request(source, kind, body), ingest.Settings.from_config(current_app.config)
        )
    metrics.count_ingest(outcome, source)
    if outcome.new_recordings:
        recordings_queue.enqueue(outcome.new_recordings)  # bounded; the worker's sweep is the fallback
    return jsonify(outcome.answer()), outcome.code


def _source_named(name: str) -> Source | None:
    """The source, read outside any transaction: no database connection is held while the body
    arrives (it may trickle in for a while), and ingest.receive has a transaction of its own.
    A name no source can have (too long, a NUL) is not looked up."""
    if not possible_name(name):
        return None
    statement = sa.select(Source).where(Source.name == name)
    with get_db().read_session() as session, _database(session):
        return first_read(session, lambda: session.scalars(statement).one_or_none())


def _database(session: orm.Session) -> AbstractContextManager[None]:
    """A database that stops answering gives 503 within DB_WAIT_TIMEOUT, not a hang."""
    return answering_within(session, current_app.config["DB_WAIT_TIMEOUT"])


def _presented_secret() -> str | None:
    header = request.headers.get("Authorization", "")
    scheme, _, value = header.partition(" ")
    if scheme.lower() == "bearer" and value.strip():
        return value.strip()
    return request.args.get("secret")


def _refuse(source: Source, message: str) -> tuple[Response, int]:
    source_id, name = source.id, source.name
    session = get_session()
    with _database(session):
        first_read(session, lambda: count_auth_failure(session, source_id))
    metrics.AUTH_FAILURES.labels(source=name).inc()
    return _closing(error_response(401, message))


def _closing(answer: tuple[Response, int]) -> tuple[Response, int]:
    """An answer given with the body not (wholly) read: the connection is closed after it, where
    the server would otherwise read the rest (perhaps trickled in slowly) to keep the connection."""
    answer[0].headers["Connection"] = "close"
    return answer


def _challenge(body: bytes) -> str | None:
    """The verification challenge, from a JSON body or (should the platform use GET) the query."""
    if "challenge" in request.args:
        return request.args["challenge"]
    if b"challenge" not in body:
        return None
    try:
        document = bodies.parse_json(body)
    except bodies.PayloadError:
        return None
    if isinstance(document, dict) and isinstance(document.get("challenge"), str | int):
        return str(document["challenge"])
    return None


def _only_challenge(body: bytes) -> bool:
    """A verification request holds only the challenge (and the validation key)."""
    if not body.strip():
        return set(request.args) <= {"challenge", "validation_key", "token", "secret"}
    try:
        document: dict[str, Any] = bodies.parse_json(body)
    except bodies.PayloadError:
        return False
    return isinstance(document, dict) and set(document) <= {"challenge", "validation_key", "token"}


def _raw_request(source: str, kind: str | None, body: bytes) -> ingest.RawRequest:
    query = bodies.stored_query(request.query_string)
    headers = {
        name: value for name, value in request.headers.items() if name.lower() not in CREDENTIAL_HEADERS
    }
    return ingest.RawRequest(
        source=source,
        method=request.method,
        path=request.path,
        kind_hint=kind,
        query_string=query,
        headers=headers,
        body=body,
        remote_addr=request.remote_addr,
    )
