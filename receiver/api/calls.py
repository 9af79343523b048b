"""GET /api/v1/calls (filtered, paged, or CSV) and /api/v1/calls/<id>, with their recordings."""

from __future__ import annotations

from typing import Any

from flask import Response, jsonify
from marshmallow import RAISE

from ..db import get_session
from ..errors import NotFound
from ..models import Call, Recording
from . import queries, rows
from .args import CallArgsSchema
from .auth import protected_blueprint
from .lists import csv_documented, documented, list_or_export, valid_id
from .schemas import CallDetailSchema, CallPageSchema

blp = protected_blueprint("calls", __name__, "Voice calls (outbound dialling, click-to-call) and recordings")
call_rows = rows.Resource(
    CallDetailSchema(), Call, recordings=rows.Nest(Recording.call_id, order=(Recording.id,))
)


@blp.route("")
@blp.arguments(CallArgsSchema, location="query", unknown=RAISE)
@blp.response(200, CallPageSchema)
@csv_documented(blp)
@documented(blp)
def list_calls(args: dict[str, Any]) -> Response:
    """List calls, newest first by start (calls without a start time first), or export them as CSV."""
    return list_or_export(queries.CALLS, args, call_rows)


@blp.route("/<int:call_id>")
@blp.response(200, CallDetailSchema)
@documented(blp, not_found="no such call")
def get_call(call_id: int) -> Response:
    """Return one call with its recordings."""
    call = call_rows.one(get_session(), Call.id == valid_id(call_id, "call"))
    if call is None:
        raise NotFound(f"no call {call_id}")
    return jsonify(call)
