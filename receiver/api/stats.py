"""GET /api/v1/stats/messages and /api/v1/stats/calls: counts by group, as JSON or CSV."""

from __future__ import annotations

from typing import Any

from flask import Response, jsonify
from marshmallow import RAISE

from .. import stats
from ..db import get_session
from . import csv_export
from .auth import protected_blueprint
from .lists import csv_documented, documented, wants_csv
from .stats_schemas import CallStatsArgsSchema, CallStatsSchema, MessageStatsArgsSchema, MessageStatsSchema

blp = protected_blueprint("stats", __name__, "Delivery analytics: messages and calls counted by group")


def _answer(name: str, args: dict[str, Any], rows: list[dict[str, Any]], measures: list[str]) -> Response:
    if wants_csv(args):
        keys = [*args["query"].group_by, *measures]
        return csv_export.rows_csv_response(name, keys, rows, text_keys=args["query"].group_by)
    return jsonify({"data": rows})


@blp.route("/messages")
@blp.arguments(MessageStatsArgsSchema, location="query", unknown=RAISE)
@blp.response(200, MessageStatsSchema)
@csv_documented(blp)
@documented(blp)
def message_stats(args: dict[str, Any]) -> Response:
    """Count messages by group over a window on when receiver first heard of them (`created_at`)."""
    rows = stats.message_stats(get_session(), args["query"])
    return _answer("message-stats", args, rows, stats.MESSAGE_MEASURES)


@blp.route("/calls")
@blp.arguments(CallStatsArgsSchema, location="query", unknown=RAISE)
@blp.response(200, CallStatsSchema)
@csv_documented(blp)
@documented(blp)
def call_stats(args: dict[str, Any]) -> Response:
    """Count calls, durations and recordings by group over a window on the call's start."""
    rows = stats.call_stats(get_session(), args["query"])
    return _answer("call-stats", args, rows, stats.CALL_MEASURES)
