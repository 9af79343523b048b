"""GET /api/v1/messages (filtered, paged, or CSV) and /api/v1/messages/<id> with its history."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from flask import Response
from marshmallow import RAISE
from sqlalchemy import orm

from .. import queries
from ..db import get_session
from ..errors import NotFound
from ..models import Message
from ..schemas.api import MessageDetailSchema, MessagePageSchema, MessageSchema
from ..schemas.args import MessageArgsSchema
from .auth import protected_blueprint
from .lists import csv_documented, documented, list_or_export, valid_id

blp = protected_blueprint("messages", __name__, "Outbound messages and their status history")
message_row_schema = MessageSchema()


@blp.route("")
@blp.arguments(MessageArgsSchema, location="query", unknown=RAISE)
@blp.response(200, MessagePageSchema)
@csv_documented(blp)
@documented(blp)
def list_messages(args: dict[str, Any]) -> dict[str, Any] | Response:
    """List messages, newest first (by when receiver first heard of them), or export them as CSV."""
    return list_or_export(
        queries.MESSAGES, args, message_row_schema, options=[orm.joinedload(Message.events)]
    )


@blp.route("/<path:message_id>")
@blp.response(200, MessageDetailSchema)
@documented(blp, not_found="no such message")
def get_message(message_id: str) -> Message:
    """Return one message with its events, oldest first."""
    message = (
        get_session()
        .scalars(
            sa.select(Message)
            .where(Message.id == valid_id(message_id, "message"))
            .options(orm.joinedload(Message.events))  # one round trip
        )
        .unique()
        .one_or_none()
    )
    if message is None:
        raise NotFound(f"no message {message_id!r}")
    return message
