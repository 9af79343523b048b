"""GET /api/v1/changes: every change receiver committed, as a pull feed, oldest first."""

from __future__ import annotations

from typing import Any

from marshmallow import RAISE, Schema, ValidationError, fields, post_load, validate

from ..db import get_session
from ..errors import Unprocessable
from ..forwarding import feed
from ..forwarding.destinations import parse_types
from ..forwarding.models import CHANGE_TYPES
from ..models import MAX_ID
from .args import DEFAULT_LIMIT, MAX_LIMIT
from .auth import protected_blueprint
from .lists import documented
from .schemas import ApiSchema

blp = protected_blueprint(
    "changes", __name__, "Every change, oldest first: the forwarded webhooks as a pull feed"
)


class ChangeArgsSchema(Schema):
    class Meta:
        unknown = RAISE
        ordered = True

    cursor = fields.String(
        validate=validate.Regexp(r"\A[0-9]{1,19}\Z", error="Not a cursor of this feed."),
        metadata={
            "description": "The `next_cursor` of the previous page; from the oldest change without it."
        },
    )
    types = fields.String(
        validate=validate.Length(min=1, max=200),
        metadata={"description": "Comma-separated change types: " + ", ".join(CHANGE_TYPES)},
    )
    limit = fields.Integer(
        load_default=DEFAULT_LIMIT,
        validate=validate.Range(min=1),
        metadata={"description": f"Changes per page: default {DEFAULT_LIMIT}, capped at {MAX_LIMIT}."},
    )

    @post_load
    def place(self, data: dict[str, Any], **kwargs: Any) -> dict[str, Any]:
        """Turn the cursor into a position and `types` into a list."""
        after = int(data.pop("cursor", "0"))
        if after > MAX_ID:
            raise ValidationError("Not a cursor of this feed.", "cursor")
        data["after"] = after
        if "types" in data:
            try:
                data["types"] = parse_types(data["types"])
            except Unprocessable as exc:
                raise ValidationError(exc.message, "types") from None
        data["limit"] = min(data["limit"], MAX_LIMIT)
        return data


class ChangeSchema(ApiSchema):
    id = fields.String(
        dump_only=True, metadata={"description": "The webhook-id the change is forwarded with."}
    )
    type = fields.String(dump_only=True, metadata={"description": ", ".join(CHANGE_TYPES)})
    timestamp = fields.String(dump_only=True, metadata={"description": "When the change was committed."})
    data = fields.Dict(
        dump_only=True, metadata={"description": "The resource as the API showed it right after the change."}
    )


class ChangePageSchema(ApiSchema):
    data = fields.List(fields.Nested(ChangeSchema), dump_only=True)
    next_cursor = fields.String(
        dump_only=True,
        metadata={"description": "Pass as `cursor` for what comes next; on every page, even the last."},
    )


@blp.route("")
@blp.arguments(ChangeArgsSchema, location="query", unknown=RAISE)
@blp.response(200, ChangePageSchema)
@documented(blp)
def list_changes(args: dict[str, Any]) -> dict[str, Any]:
    """List changes after the cursor, oldest first; poll the last page's cursor for new ones."""
    return feed.page(get_session(), args["after"], args.get("types"), args["limit"])
