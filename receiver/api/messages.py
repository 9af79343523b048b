"""GET /api/v1/messages (filtered, paged, or CSV) and /api/v1/messages/<id> with its history."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from flask import Response, jsonify
from marshmallow import RAISE

from ..db import get_session
from ..errors import NotFound
from ..models import Message, MessageEvent
from . import queries, rows
from .args import MessageArgsSchema
from .auth import protected_blueprint
from .lists import csv_documented, documented, list_or_export, valid_id
from .schemas import MessageDetailSchema, MessagePageSchema

blp = protected_blueprint("messages", __name__, "Outbound messages and their status history")
message_rows = rows.Resource(
    MessageDetailSchema(),
    Message,
    # Message.history's order: by the provider's time (arrival where it gave none), then id.
    events=rows.Nest(
        MessageEvent.message_id,
        order=(sa.func.coalesce(MessageEvent.occurred_at, MessageEvent.received_at), MessageEvent.id),
    ),
)


@blp.route("")
@blp.arguments(MessageArgsSchema, location="query", unknown=RAISE)
@blp.response(200, MessagePageSchema)
@csv_documented(blp)
@documented(blp)
def list_messages(args: dict[str, Any]) -> Response:
    """List messages, newest first (by when receiver first heard of them), or export them as CSV."""
    return list_or_export(queries.MESSAGES, args, message_rows)


@blp.route("/<path:message_id>")
@blp.response(200, MessageDetailSchema)
@documented(blp, not_found="no such message")
def get_message(message_id: str) -> Response:
    """Return one message with its events, oldest first."""
    message = message_rows.one(get_session(), Message.id == valid_id(message_id, "message"))
    if message is None:
        raise NotFound(f"no message {message_id!r}")
    return jsonify(message)
