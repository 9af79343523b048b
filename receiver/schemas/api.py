"""Output schemas of the read API: flat JSON, snake_case, times in ISO 8601 UTC."""

from __future__ import annotations

from typing import Any

from marshmallow import Schema, fields


class ApiSchema(Schema):
    class Meta:
        ordered = True


class UTCDateTime(fields.DateTime):
    """ISO 8601 with a `Z`."""

    def _serialize(self, value: Any, attr: Any, obj: Any, **kwargs: Any) -> str | None:
        if value is None:
            return None
        return value.isoformat().replace("+00:00", "Z")


class MessageEventSchema(ApiSchema):
    status = fields.String(dump_only=True)
    provider_status = fields.String(dump_only=True)
    occurred_at = UTCDateTime(dump_only=True, allow_none=True)
    received_at = UTCDateTime(dump_only=True)
    source = fields.String(dump_only=True)


class MessageSchema(ApiSchema):
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
    credits = fields.Decimal(dump_only=True, as_string=True, allow_none=True)
    units = fields.Integer(dump_only=True, allow_none=True)
    operator = fields.String(dump_only=True, allow_none=True)
    operator_code = fields.String(dump_only=True, allow_none=True)
    region = fields.String(dump_only=True, allow_none=True)
    region_code = fields.String(dump_only=True, allow_none=True)
    country = fields.String(dump_only=True, allow_none=True)
    country_code = fields.String(dump_only=True, allow_none=True)
    created_at = UTCDateTime(dump_only=True)
    updated_at = UTCDateTime(dump_only=True)
    submitted_at = UTCDateTime(dump_only=True, allow_none=True)
    sent_at = UTCDateTime(dump_only=True, allow_none=True)
    delivered_at = UTCDateTime(dump_only=True, allow_none=True)
    read_at = UTCDateTime(dump_only=True, allow_none=True)
    status_at = UTCDateTime(dump_only=True, allow_none=True)


class MessageDetailSchema(MessageSchema):
    events = fields.List(fields.Nested(MessageEventSchema), dump_only=True, attribute="history")


class ErrorSchema(ApiSchema):
    status = fields.String()
    code = fields.Integer()
    message = fields.String()
    errors = fields.Dict()


message_schema = MessageDetailSchema()
messages_schema = MessageSchema(many=True)
