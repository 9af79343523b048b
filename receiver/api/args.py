"""Query-string schemas of the read API: every list's filters, `limit`, `cursor` and `format`.

An unknown parameter is refused (`unknown = RAISE`), and so is a value a filter cannot take, each
naming its field; a cursor is checked here too, against the list and the filters it came with.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, time
from typing import Any, ClassVar

from flask import current_app
from marshmallow import RAISE, Schema, ValidationError, fields, post_load, validate

from ..models import MAX_ID, RawState, RecordingState, Status
from ..numbers import canonical
from . import queries

DEFAULT_LIMIT = 100
MAX_LIMIT = 1000
CHANNELS = ("sms", "whatsapp", "rcs", "viber")


# PostgreSQL text cannot hold NUL; such a value can match nothing, so it is refused up front.
_NO_NUL = validate.Regexp(r"^[^\x00]*$", error="Must not contain NUL characters.")
# A number filter holds something besides spaces (a script that lost its number must not read
# "not opted out" for it); documented as one pattern with the NUL rule.
_SPACES = "\t\n\v\f\r "
_NUMBER_PATTERN = r"^[\t\n\v\f\r ]*[^\x00\t\n\v\f\r ][^\x00]*$"


def _not_blank(value: str) -> None:
    if not value.strip(_SPACES):
        raise ValidationError("Must not be blank.")


def Text(max_length: int, description: str) -> fields.String:  # noqa: N802 (a field factory)
    """An exact-match text filter."""
    return fields.String(
        validate=[validate.Length(min=1, max=max_length), _NO_NUL],
        metadata={"description": description},
    )


class LowerText(fields.String):
    """An exact-match filter on a value stored lower-cased (an opt-out's channel): `SMS` finds `sms`."""

    def __init__(self, max_length: int, description: str) -> None:
        super().__init__(
            validate=[validate.Length(min=1, max=max_length), _NO_NUL], metadata={"description": description}
        )

    def _deserialize(self, value: Any, attr: Any, data: Any, **kwargs: Any) -> str:
        return super()._deserialize(value, attr, data, **kwargs).lower()


class Number(fields.String):
    """A phone number filter, matched in canonical form: digits with the country code, so that
    `+91 98450-12345`, `00919845012345`, `919845012345` and `9845012345` find the same rows."""

    def __init__(self, max_length: int, description: str, **kwargs: Any) -> None:
        super().__init__(
            validate=[validate.Length(min=1, max=max_length), _NO_NUL, _not_blank],
            metadata={
                "description": f"{description} Any spelling: with or without `+`, `00`, the country "
                "code (DEFAULT_COUNTRY_CODE for a national number), spaces or dashes.",
                "example": "+91 98450-12345",
                "pattern": _NUMBER_PATTERN,
            },
            **kwargs,
        )

    def _deserialize(self, value: Any, attr: Any, data: Any, **kwargs: Any) -> str:
        text = super()._deserialize(value, attr, data, **kwargs)
        return canonical(text, current_app.config["DEFAULT_COUNTRY_CODE"]) or text


class Moment(fields.Field):
    """An RFC 3339 date and time (UTC when it has no zone), or a date (`2026-01-31`, 00:00 UTC)."""

    default_error_messages = {"invalid": "Not a valid ISO 8601 date or date and time."}

    def __init__(self, description: str) -> None:
        super().__init__(
            metadata={
                "description": description,
                "type": "string",
                "anyOf": [{"format": "date-time"}, {"format": "date"}],
                "example": "2026-01-31T00:00:00Z",
            }
        )

    def _deserialize(self, value: Any, attr: Any, data: Any, **kwargs: Any) -> datetime:
        if not isinstance(value, str) or not 10 <= len(value) <= 40:
            raise self.make_error("invalid")
        try:
            if len(value) == 10:
                return datetime.combine(date.fromisoformat(value), time(), UTC)
            moment = datetime.fromisoformat(value.upper().replace("Z", "+00:00"))
        except ValueError:
            raise self.make_error("invalid") from None
        if moment.tzinfo is None:
            return moment.replace(tzinfo=UTC)
        try:
            return moment.astimezone(UTC)
        except OverflowError:  # a bound beyond what a datetime holds: the earliest or latest one
            return datetime.min.replace(tzinfo=UTC) if moment.year == 1 else datetime.max.replace(tzinfo=UTC)

    def _serialize(self, value: Any, attr: Any, obj: Any, **kwargs: Any) -> str | None:
        return None if value is None else value.isoformat()


class ListArgsSchema(Schema):
    """What every list takes besides its filters."""

    listing: ClassVar[queries.Listing]

    class Meta:
        unknown = RAISE
        ordered = True

    since = Moment("From this time on (inclusive): an RFC 3339 time, or a date (00:00 UTC).")
    until = Moment("Before this time (exclusive): an RFC 3339 time, or a date (00:00 UTC).")
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

    mobile = Number(64, "The recipient's number.")
    status = fields.Enum(Status, metadata={"description": "Canonical status."})
    provider_status = Text(255, "The provider's own status code, exactly, e.g. DNDNUMB or delivered.")
    channel = fields.String(validate=validate.OneOf(CHANNELS))
    custom = Text(255, "The `custom` reference given when sending.")
    source = Text(64, "The receiver source (webhook) it came through.")
    operator = Text(255, "The operator, exactly as the provider names it, e.g. Jio.")
    region = Text(255, "The region, exactly as the provider names it, e.g. Bangalore.")
    sender = Text(255, "The sender id or number, exactly as the provider sends it.")


class InboundArgsSchema(ListArgsSchema):
    listing = queries.INBOUND

    to = Number(128, "The number, keyword line or bot it was sent to.")
    channel = fields.String(validate=validate.OneOf(CHANNELS))
    source = Text(64, "The receiver source (webhook) it came through.")

    class Meta(ListArgsSchema.Meta):
        include = {"from": Number(128, "The sender's number or id.")}


class CallArgsSchema(ListArgsSchema):
    listing = queries.CALLS

    to = Number(64, "The called number.")
    mid = Text(128, "The provider's message id of an outbound (OBD) call.")
    status = Text(32, "The provider's own call status, e.g. ANSWER.")
    source = Text(64, "The receiver source (webhook) it came through.")

    class Meta(ListArgsSchema.Meta):
        include = {"from": Number(64, "The calling number.")}


class EventArgsSchema(ListArgsSchema):
    listing = queries.EVENTS

    state = fields.Enum(RawState, metadata={"description": "Processing state."})
    source = Text(64, "The receiver source (webhook) it came through.")


class OptOutArgsSchema(ListArgsSchema):
    listing = queries.OPT_OUTS

    number = Number(64, "The number that opted out.")
    channel = LowerText(32, "The channel the opt-out named (sms, whatsapp, rcs, viber, voice).")
    source = Text(64, "The receiver source (webhook) it came through.")


class OptOutCheckArgsSchema(Schema):
    class Meta:
        unknown = RAISE

    number = Number(64, "The number to look up.", required=True)


class RecordingArgsSchema(ListArgsSchema):
    listing = queries.RECORDINGS

    state = fields.Enum(RecordingState, metadata={"description": "Download state."})
    call_id = fields.Integer(
        validate=validate.Range(min=1, max=MAX_ID), metadata={"description": "The call it belongs to."}
    )


class ContactArgsSchema(ListArgsSchema):
    listing = queries.CONTACTS

    number = Number(64, "The contact's number.")
    identity = Text(255, "The contact's identity (an e-mail address or a number), exactly.")
    contact_id = Text(255, "The provider's id of the contact.")
    source = Text(64, "The receiver source (webhook) it came through.")
