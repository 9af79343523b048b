"""GET /api/v1/inbound (filtered, paged, or CSV) and /api/v1/inbound/<id>."""

from __future__ import annotations

from typing import Any

from flask import Response
from marshmallow import RAISE

from ..db import get_session
from ..errors import NotFound
from ..models import InboundMessage
from . import queries, rows
from .args import InboundArgsSchema
from .auth import protected_blueprint
from .lists import csv_documented, documented, list_or_export, valid_id
from .schemas import InboundPageSchema, InboundSchema

blp = protected_blueprint("inbound", __name__, "Messages people sent to the customer")
inbound_rows = rows.Resource(InboundSchema(), InboundMessage)


@blp.route("")
@blp.arguments(InboundArgsSchema, location="query", unknown=RAISE)
@blp.response(200, InboundPageSchema)
@csv_documented(blp)
@documented(blp)
def list_inbound(args: dict[str, Any]) -> Response:
    """List inbound messages, newest first (by arrival), or export them as CSV."""
    return list_or_export(queries.INBOUND, args, inbound_rows)


@blp.route("/<path:inbound_id>")
@blp.response(200, InboundSchema)
@documented(blp, not_found="no such inbound message")
def get_inbound(inbound_id: str) -> InboundMessage:
    """Return one inbound message."""
    found = get_session().get(InboundMessage, valid_id(inbound_id, "inbound message"))
    if found is None:
        raise NotFound(f"no inbound message {inbound_id!r}")
    return found
