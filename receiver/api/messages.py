"""GET /api/v1/messages/<id>: a message and its status history."""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy import orm

from ..db import get_session
from ..errors import NotFound
from ..models import Message
from ..schemas.api import ErrorSchema, MessageDetailSchema
from .auth import protected_blueprint

blp = protected_blueprint("messages", __name__, "Outbound messages and their status history")


@blp.route("/<path:message_id>")
@blp.response(200, MessageDetailSchema)
@blp.alt_response(404, schema=ErrorSchema, description="no such message")
@blp.alt_response(401, schema=ErrorSchema, description="missing or invalid API key")
@blp.doc(security=[{"bearer": []}])
def get_message(message_id: str) -> Message:
    """Return one message with its events, oldest first."""
    message = (
        get_session()
        .scalars(sa.select(Message).where(Message.id == message_id).options(orm.selectinload(Message.events)))
        .one_or_none()
    )
    if message is None:
        raise NotFound(f"no message {message_id!r}")
    return message
