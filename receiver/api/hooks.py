"""/hooks/<source>[/<kind>]: authenticate → store raw → load → normalize → answer (SPEC §3)."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from flask import Blueprint, Response, current_app, jsonify, request
from sqlalchemy import orm

from .. import bodies, ingest, keys, metrics, recordings_queue
from ..db import first_read, get_session, utcnow
from ..errors import error_response
from ..models import Source
from ..payloads import URL_KINDS
from ..sources import count_auth_failure, possible_name, secret_accepted

bp = Blueprint("hooks", __name__)

# Never stored: they carry credentials.
_SECRET_HEADERS = frozenset({"authorization", "proxy-authorization", "cookie", "x-api-key"})


@bp.route("/hooks/<source>", methods=["GET", "POST", "PUT"])
@bp.route("/hooks/<source>/<kind>", methods=["GET", "POST", "PUT"])
def receive(source: str, kind: str | None = None) -> tuple[Response, int]:
    """Take one webhook request from the platform."""
    if kind is not None and kind not in URL_KINDS:
        return error_response(404, f"unknown kind {kind!r}; one of: {', '.join(URL_KINDS)}")
    if (request.content_length or 0) > current_app.config["MAX_BODY_BYTES"]:
        return error_response(413, "body too large")
    body = request.get_data(cache=False)
    if len(body) > current_app.config["MAX_BODY_BYTES"]:  # a chunked body, cut by werkzeug
        return error_response(413, "body too large")
    session = get_session()
    found = _source_named(session, source)
    if found is None:
        return error_response(404, f"unknown source {source!r}")

    challenge = _challenge(body)
    if "token" in request.args and challenge is not None:
        if keys.matches(request.args["token"], found.validation_key_digest):
            return jsonify({"challenge": challenge}), 200
        return _refuse(found, "validation key does not match")

    if not secret_accepted(found, _presented_secret(), utcnow()):
        return _refuse(found, "missing or invalid secret")
    if found.signing_key and not keys.signature_matches(
        body, request.headers.get("Signature"), found.signing_key
    ):
        return _refuse(found, "missing or invalid signature")
    if challenge is not None and _only_challenge(body):
        return jsonify({"challenge": challenge}), 200

    outcome = ingest.receive(
        session, _raw_request(source, kind, body), ingest.Settings.from_config(current_app.config)
    )
    metrics.count_ingest(outcome)
    if outcome.new_recordings:
        try:
            recordings_queue.enqueue(outcome.new_recordings)
        except Exception:  # committed already: the worker's sweep finds pending recordings
            current_app.logger.exception("could not hand recordings to the worker")
    return jsonify(outcome.answer()), outcome.code


def _source_named(session: orm.Session, name: str) -> Source | None:
    """The source, read in the transaction that ingest.receive continues and commits.

    Every other way out of the view ends that transaction (the session is closed, so rolled
    back). A name no source can have (too long, a NUL) is not looked up.
    """
    if not possible_name(name):
        return None
    statement = sa.select(Source).where(Source.name == name)
    return first_read(session, lambda: session.scalars(statement).one_or_none())


def _presented_secret() -> str | None:
    header = request.headers.get("Authorization", "")
    scheme, _, value = header.partition(" ")
    if scheme.lower() == "bearer" and value.strip():
        return value.strip()
    return request.args.get("secret")


def _refuse(source: Source, message: str) -> tuple[Response, int]:
    source_id, name = source.id, source.name
    session = get_session()
    session.rollback()  # end the lookup's transaction; the counter has one of its own
    first_read(session, lambda: count_auth_failure(session, source_id))
    metrics.AUTH_FAILURES.labels(source=name).inc()
    return error_response(401, message)


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
    headers = {name: value for name, value in request.headers.items() if name.lower() not in _SECRET_HEADERS}
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
