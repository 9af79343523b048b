"""/hooks/<source>[/<kind>]: the platform's webhooks, decided and stored by receiver.ingest.service."""

from __future__ import annotations

from flask import Blueprint, Response, current_app, jsonify, request

from ..ingest.service import Ingest, Webhook

bp = Blueprint("hooks", __name__)


@bp.route("/hooks/<source>", methods=["GET", "POST", "PUT"])
@bp.route("/hooks/<source>/<kind>", methods=["GET", "POST", "PUT"])
def receive(source: str, kind: str | None = None) -> tuple[Response, int]:
    """Take one webhook request from the platform."""
    answer = Ingest.of(current_app).take(
        Webhook(
            source=source,
            kind=kind,
            method=request.method,
            path=request.path,
            query_string=request.query_string,
            args=request.args,
            headers=request.headers,
            content_length=request.content_length,
            remote_addr=request.remote_addr,
            read_body=lambda: request.get_data(cache=False),
        )
    )
    response = jsonify(answer.body)
    if answer.close:
        response.headers["Connection"] = "close"
    return response, answer.code
