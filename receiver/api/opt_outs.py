"""GET /api/v1/opt-outs (filtered, paged, or CSV) and /api/v1/opt-outs/check?number=."""

from __future__ import annotations

from typing import Any

from flask import Response
from marshmallow import RAISE

from ..db import get_session
from ..models import OptOut
from . import queries, rows
from .args import OptOutArgsSchema, OptOutCheckArgsSchema
from .auth import protected_blueprint
from .lists import csv_documented, documented, list_or_export
from .schemas import OptOutCheckSchema, OptOutPageSchema, OptOutSchema

blp = protected_blueprint("opt-outs", __name__, "Opt-outs (unsubscriptions) the platform reported")
opt_out_rows = rows.Resource(OptOutSchema(), OptOut)


@blp.route("")
@blp.arguments(OptOutArgsSchema, location="query", unknown=RAISE)
@blp.response(200, OptOutPageSchema)
@csv_documented(blp)
@documented(blp)
def list_opt_outs(args: dict[str, Any]) -> Response:
    """List opt-outs, newest first (by arrival), or export them as CSV."""
    return list_or_export(queries.OPT_OUTS, args, opt_out_rows)


@blp.route("/check")
@blp.arguments(OptOutCheckArgsSchema, location="query", unknown=RAISE)
@blp.response(200, OptOutCheckSchema)
@documented(blp)
def check_opt_out(args: dict[str, Any]) -> dict[str, Any]:
    """Say whether a number opted out (written any way), and of which channels."""
    channels = queries.opt_out_channels(get_session(), args["number"])
    return {"number": args["number"], "opted_out": channels is not None, "channels": channels or []}
