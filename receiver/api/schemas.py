"""Output schemas of the read API: flat JSON, snake_case, times in ISO 8601 UTC."""

from __future__ import annotations

import base64
from typing import Any

from marshmallow import Schema, fields


class ApiSchema(Schema):
    class Meta:
        ordered = True


class UTCDateTimeField(fields.DateTime):
    """ISO 8601 with a `Z`."""

    def _serialize(self, value: Any, attr: Any, obj: Any, **kwargs: Any) -> str | None:
        if value is None:
            return None
        return value.isoformat().replace("+00:00", "Z")


def raw_event_field() -> fields.Integer:
    """The webhook request a row came from, on rows that reconciliation may pull instead."""
    return fields.Integer(
        dump_only=True, allow_none=True, metadata={"description": "The webhook request; null when pulled."}
    )


def origin_field() -> fields.String:
    """How a row came: by webhook or pulled by reconciliation."""
    return fields.String(
        dump_only=True,
        metadata={"description": "webhook, or pull: fetched back from the provider's API by reconciliation."},
    )


class MessageEventSchema(ApiSchema):
    status = fields.String(dump_only=True)
    provider_status = fields.String(dump_only=True)
    occurred_at = UTCDateTimeField(dump_only=True, allow_none=True)
    received_at = UTCDateTimeField(dump_only=True)
    source = fields.String(dump_only=True)
    raw_event_id = raw_event_field()
    origin = origin_field()


class MessageSchema(ApiSchema):
    """The flat part of a message: one CSV row."""

    id = fields.String(dump_only=True)
    source = fields.String(dump_only=True)
    channel = fields.String(dump_only=True)
    mobile = fields.String(dump_only=True, allow_none=True)
    sender = fields.String(dump_only=True, allow_none=True)
    service = fields.String(dump_only=True, allow_none=True)
    status = fields.String(dump_only=True)
    provider_status = fields.String(dump_only=True)
    custom = fields.String(dump_only=True, allow_none=True)
    custom1 = fields.String(dump_only=True, allow_none=True)
    custom2 = fields.String(dump_only=True, allow_none=True)
    cid = fields.String(dump_only=True, allow_none=True)
    foreign_id = fields.String(dump_only=True, allow_none=True)
    credits = fields.Decimal(
        dump_only=True, as_string=True, allow_none=True, metadata={"type": "string", "format": "decimal"}
    )
    units = fields.Integer(dump_only=True, allow_none=True)
    operator = fields.String(dump_only=True, allow_none=True)
    operator_code = fields.String(dump_only=True, allow_none=True)
    region = fields.String(dump_only=True, allow_none=True)
    region_code = fields.String(dump_only=True, allow_none=True)
    country = fields.String(dump_only=True, allow_none=True)
    country_code = fields.String(dump_only=True, allow_none=True)
    created_at = UTCDateTimeField(dump_only=True)
    updated_at = UTCDateTimeField(dump_only=True)
    submitted_at = UTCDateTimeField(dump_only=True, allow_none=True)
    sent_at = UTCDateTimeField(dump_only=True, allow_none=True)
    delivered_at = UTCDateTimeField(dump_only=True, allow_none=True)
    read_at = UTCDateTimeField(dump_only=True, allow_none=True)
    status_at = UTCDateTimeField(dump_only=True, allow_none=True)


class MessageDetailSchema(MessageSchema):
    """A message with its status history, oldest first."""

    events = fields.List(fields.Nested(MessageEventSchema), dump_only=True, attribute="history")


class InboundSchema(ApiSchema):
    """A message a person sent to the customer."""

    id = fields.String(dump_only=True)
    source = fields.String(dump_only=True)
    channel = fields.String(dump_only=True)
    from_ = fields.String(dump_only=True, allow_none=True, attribute="from_number", data_key="from")
    to = fields.String(dump_only=True, allow_none=True, attribute="to_number")
    type = fields.String(dump_only=True, allow_none=True)
    text = fields.String(dump_only=True, allow_none=True)
    media_url = fields.String(dump_only=True, allow_none=True)
    caption = fields.String(dump_only=True, allow_none=True)
    file_name = fields.String(dump_only=True, allow_none=True)
    keyword1 = fields.String(dump_only=True, allow_none=True)
    keyword2 = fields.String(dump_only=True, allow_none=True)
    contact = fields.Dict(dump_only=True, allow_none=True)
    occurred_at = UTCDateTimeField(dump_only=True, allow_none=True)
    received_at = UTCDateTimeField(dump_only=True)
    raw_event_id = raw_event_field()
    origin = origin_field()


class RecordingSchema(ApiSchema):
    id = fields.Integer(dump_only=True)
    state = fields.String(dump_only=True)
    sha256 = fields.String(dump_only=True, allow_none=True)
    size_bytes = fields.Integer(dump_only=True, allow_none=True)
    content_type = fields.String(dump_only=True, allow_none=True)
    attempts = fields.Integer(dump_only=True)
    last_error = fields.String(dump_only=True, allow_none=True)


class RecordingItemSchema(RecordingSchema):
    """A recording in the list of recordings: with its call and its times."""

    call_id = fields.Integer(dump_only=True)
    url_expires_at = UTCDateTimeField(
        dump_only=True, metadata={"description": "When the webhook's recording URL stops working."}
    )
    next_attempt_at = UTCDateTimeField(dump_only=True, allow_none=True)
    stored_at = UTCDateTimeField(dump_only=True, allow_none=True)
    created_at = UTCDateTimeField(dump_only=True)
    updated_at = UTCDateTimeField(dump_only=True)


class OptOutSchema(ApiSchema):
    """An opt-out (unsubscription) the platform reported."""

    id = fields.Integer(dump_only=True)
    source = fields.String(dump_only=True)
    channel = fields.String(
        dump_only=True, allow_none=True, metadata={"description": "null when neither payload nor URL said."}
    )
    number = fields.String(
        dump_only=True, allow_none=True, attribute="receiver", metadata={"description": "As received."}
    )
    type = fields.String(dump_only=True, allow_none=True, metadata={"description": "all, sender or category"})
    value = fields.String(dump_only=True, allow_none=True)
    status = fields.String(dump_only=True, allow_none=True)
    provider_id = fields.String(dump_only=True, allow_none=True)
    occurred_at = UTCDateTimeField(dump_only=True, allow_none=True)
    received_at = UTCDateTimeField(dump_only=True)
    raw_event_id = fields.Integer(dump_only=True)


class OptOutCheckSchema(ApiSchema):
    """Whether a number opted out, and of which channels."""

    number = fields.String(dump_only=True, metadata={"description": "The number, in canonical form."})
    opted_out = fields.Boolean(dump_only=True)
    channels = fields.List(
        fields.String(allow_none=True),
        dump_only=True,
        metadata={"description": "The channels its opt-outs named; null for one that named none."},
    )


class ContactEventSchema(ApiSchema):
    """A contact created or updated in the provider's contact book."""

    id = fields.Integer(dump_only=True)
    source = fields.String(dump_only=True)
    contact_id = fields.String(
        dump_only=True, allow_none=True, metadata={"description": "The provider's id."}
    )
    identity = fields.String(dump_only=True, allow_none=True)
    number = fields.String(dump_only=True, allow_none=True)
    email = fields.String(dump_only=True, allow_none=True)
    first_name = fields.String(dump_only=True, allow_none=True)
    last_name = fields.String(dump_only=True, allow_none=True)
    status = fields.String(
        dump_only=True, allow_none=True, metadata={"description": "e.g. Subscriber created successfully"}
    )
    occurred_at = UTCDateTimeField(dump_only=True, allow_none=True)
    received_at = UTCDateTimeField(dump_only=True)
    raw_event_id = fields.Integer(dump_only=True)
    contact = fields.Dict(
        dump_only=True, allow_none=True, metadata={"description": "The object as received."}
    )


class CallSchema(ApiSchema):
    """The flat part of a call: one CSV row. `service` is the provider's `source` (OBD, C2C)."""

    id = fields.Integer(dump_only=True)
    source = fields.String(dump_only=True)
    service = fields.String(dump_only=True, allow_none=True)
    bridge = fields.String(dump_only=True, allow_none=True)
    from_ = fields.String(dump_only=True, allow_none=True, attribute="from_number", data_key="from")
    to = fields.String(dump_only=True, allow_none=True, attribute="to_number")
    mid = fields.String(dump_only=True, allow_none=True)
    flow_id = fields.String(dump_only=True, allow_none=True)
    status = fields.String(dump_only=True, allow_none=True)
    status1 = fields.String(dump_only=True, allow_none=True)
    status2 = fields.String(dump_only=True, allow_none=True)
    hangup_by = fields.String(dump_only=True, allow_none=True)
    start_at = UTCDateTimeField(dump_only=True, allow_none=True)
    end_at = UTCDateTimeField(dump_only=True, allow_none=True)
    duration = fields.Integer(dump_only=True, allow_none=True)
    billing = fields.Integer(dump_only=True, allow_none=True)
    received_at = UTCDateTimeField(dump_only=True)
    raw_event_id = raw_event_field()
    origin = origin_field()


class CallDetailSchema(CallSchema):
    """A call with its recordings."""

    recordings = fields.List(fields.Nested(RecordingSchema), dump_only=True)


class EventSchema(ApiSchema):
    """A webhook request as received (less credentials), and how processing it went."""

    id = fields.Integer(dump_only=True)
    source = fields.String(dump_only=True)
    received_at = UTCDateTimeField(dump_only=True)
    method = fields.String(dump_only=True)
    path = fields.String(dump_only=True)
    kind_hint = fields.String(dump_only=True, allow_none=True)
    query_string = fields.String(dump_only=True)
    remote_addr = fields.String(dump_only=True, allow_none=True)
    sha256 = fields.String(dump_only=True)
    state = fields.String(dump_only=True)
    kinds = fields.List(fields.String(allow_none=True), dump_only=True, allow_none=True)
    errors = fields.Dict(dump_only=True, allow_none=True)
    processed_at = UTCDateTimeField(dump_only=True, allow_none=True)
    replays = fields.Integer(dump_only=True, metadata={"description": "How many times it was replayed."})
    replayed_at = UTCDateTimeField(
        dump_only=True, allow_none=True, metadata={"description": "When it was last replayed."}
    )


class EventDetailSchema(EventSchema):
    """A raw event with its headers and body (UTF-8 text, or base64 when it is not text)."""

    headers = fields.Dict(keys=fields.String(), values=fields.String(), dump_only=True)
    body_encoding = fields.Method("_body_encoding", dump_only=True)
    body = fields.Method("_body", dump_only=True)

    def _body_encoding(self, event: Any) -> str:
        return "utf-8" if _utf8(event.body) is not None else "base64"

    def _body(self, event: Any) -> str:
        text = _utf8(event.body)
        return text if text is not None else base64.b64encode(event.body).decode()


def _utf8(body: bytes) -> str | None:
    try:
        return body.decode("utf-8")
    except UnicodeDecodeError:
        return None


class ReplaySchema(ApiSchema):
    """How a replay went: the webhook's answer to the event now (its HTTP code is the answer's),
    and the raw event afterwards."""

    status = fields.String(dump_only=True, metadata={"description": "`OK`, or `ERROR` (422)."})
    code = fields.Integer(dump_only=True, metadata={"description": "200, 202 or 422: the HTTP code."})
    message = fields.String(
        dump_only=True, metadata={"description": "stored, duplicate, accepted or validation failed"}
    )
    events = fields.List(
        fields.Raw(),
        dump_only=True,
        metadata={"description": "200 and 202: the ids of what it stored (as the webhook answers)."},
    )
    errors = fields.Dict(dump_only=True, metadata={"description": "422: what is wrong, field by field."})
    event = fields.Nested(EventSchema, dump_only=True)


def page_schema(item: type[Schema], name: str) -> type[Schema]:
    """`{"data": [...], "next_cursor": ...}` of one resource."""
    return type(
        name,
        (ApiSchema,),
        {
            "data": fields.List(fields.Nested(item), dump_only=True),
            "next_cursor": fields.String(
                dump_only=True,
                allow_none=True,
                metadata={"description": "Pass as `cursor` for the next page; null on the last page."},
            ),
        },
    )


MessagePageSchema = page_schema(MessageDetailSchema, "MessagePageSchema")
InboundPageSchema = page_schema(InboundSchema, "InboundPageSchema")
CallPageSchema = page_schema(CallDetailSchema, "CallPageSchema")
EventPageSchema = page_schema(EventSchema, "EventPageSchema")
OptOutPageSchema = page_schema(OptOutSchema, "OptOutPageSchema")
RecordingPageSchema = page_schema(RecordingItemSchema, "RecordingPageSchema")
ContactEventPageSchema = page_schema(ContactEventSchema, "ContactEventPageSchema")


class ErrorSchema(ApiSchema):
    status = fields.String()
    code = fields.Integer()
    message = fields.String()
    errors = fields.Dict()
