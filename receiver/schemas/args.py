"""Query-string schemas of the read API: every list's filters, `limit`, `cursor` and `format`.

An unknown parameter is refused (`unknown = RAISE`), and so is a value a filter cannot take, each
naming its field; a cursor is checked here too, against the list and the filters it came with.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, time
from typing import Any, ClassVar

from marshmallow import RAISE, Schema, ValidationError, fields, post_load, validate, validates_schema

from .. import queries
from ..models import RawState, Status

DEFAULT_LIMIT = 100
MAX_LIMIT = 1000
CHANNELS = ("sms", "whatsapp", "rcs", "viber")


def _no_nul(value: str) -> None:
    if "\x00" in value:
        raise ValidationError("Must not contain NUL characters.")


def Text(max_length: int, description: str) -> fields.String:  # noqa: N802 (a field factory)
    """An exact-match text filter."""
    return fields.String(
        validate=[validate.Length(min=1, max=max_length), _no_nul],
        metadata={"description": description},
    )


class Moment(fields.String):
    """An ISO 8601 date (`2026-01-31`, midnight UTC) or date and time (UTC when it has no zone)."""

    default_error_messages = {"invalid": "Not a valid ISO 8601 date or date and time."}

    def _deserialize(self, value: Any, attr: Any, data: Any, **kwargs: Any) -> datetime:
        if not isinstance(value, str) or not 10 <= len(value) <= 40:
            raise self.make_error("invalid")
        try:
            if len(value) == 10:
                moment = datetime.combine(date.fromisoformat(value), time(), UTC)
            else:
                moment = datetime.fromisoformat(value.replace("z", "Z").replace("Z", "+00:00"))
                moment = moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)
        except (ValueError, OverflowError):
            raise self.make_error("invalid") from None
        if not 1970 <= moment.year < 3000:
            raise self.make_error("invalid")
        return moment

    def _serialize(self, value: Any, attr: Any, obj: Any, **kwargs: Any) -> str | None:
        return None if value is None else value.isoformat()


class ListArgsSchema(Schema):
    """What every list takes besides its filters."""

    listing: ClassVar[queries.Listing]

    class Meta:
        unknown = RAISE
        ordered = True

    since = Moment(metadata={"description": "From this time on (inclusive), ISO 8601; a date is 00:00 UTC."})
    until = Moment(metadata={"description": "Before this time (exclusive), ISO 8601; a date is 00:00 UTC."})
    limit = fields.Integer(
        load_default=DEFAULT_LIMIT,
        validate=validate.Range(min=1),
        metadata={"description": f"Rows per page: default {DEFAULT_LIMIT}, capped at {MAX_LIMIT}."},
    )
    cursor = fields.String(
        validate=validate.Length(min=1, max=1024),
        metadata={"description": "The `next_cursor` of the previous page, with the same filters."},
    )
    format = fields.String(
        validate=validate.OneOf(["json", "csv"]),
        metadata={"description": "`csv` exports every matching row (as `Accept: text/csv` does)."},
    )

    @validates_schema
    def check_period(self, data: dict[str, Any], **kwargs: Any) -> None:
        since, until = data.get("since"), data.get("until")
        if since is not None and until is not None and until < since:
            raise ValidationError("Must not be before since.", "until")

    @post_load
    def place_cursor(self, data: dict[str, Any], **kwargs: Any) -> dict[str, Any]:
        """Cap `limit`; turn `cursor` into the position after which the page starts."""
        data["limit"] = min(data["limit"], MAX_LIMIT)
        data["filters"] = {name: data.pop(name) for name in self.listing.filters if name in data}
        cursor = data.pop("cursor", None)
        data["after"] = None
        if cursor is not None:
            try:
                data["after"] = queries.decode_cursor(self.listing, data["filters"], cursor)
            except queries.CursorError as exc:
                raise ValidationError(str(exc), "cursor") from None
        data["cursor_given"] = cursor is not None
        return data


class MessageArgsSchema(ListArgsSchema):
    listing = queries.MESSAGES

    mobile = Text(64, "The recipient's number, exactly as the provider sends it.")
    status = fields.Enum(Status, metadata={"description": "Canonical status."})
    channel = fields.String(validate=validate.OneOf(CHANNELS))
    custom = Text(255, "The `custom` reference given when sending.")
    source = Text(64, "The receiver source (webhook) it came through.")


class InboundArgsSchema(ListArgsSchema):
    listing = queries.INBOUND

    to = Text(128, "The number, keyword line or bot it was sent to.")
    channel = fields.String(validate=validate.OneOf(CHANNELS))
    source = Text(64, "The receiver source (webhook) it came through.")

    class Meta(ListArgsSchema.Meta):
        include = {"from": Text(128, "The sender's number or id.")}


class CallArgsSchema(ListArgsSchema):
    listing = queries.CALLS

    to = Text(64, "The called number.")
    mid = Text(128, "The provider's message id of an outbound (OBD) call.")
    status = Text(32, "The provider's own call status, e.g. ANSWER.")
    source = Text(64, "The receiver source (webhook) it came through.")

    class Meta(ListArgsSchema.Meta):
        include = {"from": Text(64, "The calling number.")}


class EventArgsSchema(ListArgsSchema):
    listing = queries.EVENTS

    state = fields.Enum(RawState, metadata={"description": "Processing state."})
    source = Text(64, "The receiver source (webhook) it came through.")
