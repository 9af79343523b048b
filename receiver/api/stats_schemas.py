"""Query-string and answer schemas of the statistics API (`/api/v1/stats/...`)."""

from __future__ import annotations

from typing import Any

from marshmallow import RAISE, Schema, ValidationError, fields, post_load, validate

from ..stats import CALL_GROUPS, MAX_DAYS, MESSAGE_GROUPS, CallStatsQuery, MessageStatsQuery, StatsQueryError
from ..stats.query import DEFAULT_DAYS, STATUS_COUNTS
from .args import CHANNELS, Moment, Text
from .schemas import ApiSchema

_WINDOW = f"Default: the {DEFAULT_DAYS} days before `until` (now when not given); at most {MAX_DAYS} days."


class GroupBy(fields.List):
    """Names given comma-separated (`day,status`), or the parameter repeated, or both."""

    is_multiple = True  # webargs: every value of a repeated parameter, not only the first

    def _deserialize(self, value: Any, attr: Any, data: Any, **kwargs: Any) -> list[Any]:
        values = value if isinstance(value, list | tuple) else [value]
        if not all(isinstance(item, str) for item in values):
            raise self.make_error("invalid")
        names = [name for item in values for name in item.split(",")]
        return super()._deserialize(names, attr, data, **kwargs)


def _group_by(groups: tuple[str, ...], description: str) -> GroupBy:
    return GroupBy(
        fields.String(validate=validate.OneOf(groups)),
        validate=validate.Length(max=len(groups)),
        load_default=[],
        metadata={"description": f"{description} One or more of: {', '.join(groups)}; comma-separated."},
    )


class _StatsArgs(Schema):
    query_class: Any

    class Meta:
        unknown = RAISE
        ordered = True

    since = Moment(f"From this time on (inclusive). {_WINDOW}")
    until = Moment("Before this time (exclusive); default now.")
    tz = fields.String(
        load_default="UTC",
        validate=validate.Length(min=1, max=64),
        metadata={"description": "The IANA time zone of `day` and `hour`, e.g. Asia/Kolkata."},
    )
    format = fields.String(
        validate=validate.OneOf(["json", "csv"]),
        metadata={"description": "`csv` answers as CSV (as `Accept: text/csv` does)."},
    )

    @post_load
    def make_query(self, data: dict[str, Any], **kwargs: Any) -> dict[str, Any]:
        """Build the query; a rule it breaks (window, zone) is a 422 naming the parameter."""
        values = {name: value for name, value in data.items() if name != "format"}
        values["group_by"] = tuple(values.get("group_by", ()))
        try:
            query = self.query_class(**values)
        except StatsQueryError as exc:
            raise ValidationError(str(exc), exc.field) from None
        return {"query": query, "format": data.get("format")}


class MessageStatsArgsSchema(_StatsArgs):
    query_class = MessageStatsQuery

    group_by = _group_by(MESSAGE_GROUPS, "Count by these, in this order; `day` and `hour` in `tz`.")
    channel = fields.String(validate=validate.OneOf(CHANNELS))
    source = Text(64, "The receiver source (webhook) it came through.")
    service = Text(255, "The provider's product or service.")
    sender = Text(255, "The sender id or number, exactly as the provider sends it.")


class CallStatsArgsSchema(_StatsArgs):
    query_class = CallStatsQuery

    group_by = _group_by(CALL_GROUPS, "Count by these, in this order; `day` in `tz`.")
    source = Text(64, "The receiver source (webhook) it came through.")
    service = Text(255, "The provider's service (the call's product).")


def _group_fields(groups: tuple[str, ...]) -> dict[str, fields.Field]:
    return {
        name: fields.String(
            dump_only=True,
            allow_none=True,
            metadata={"description": "present when grouped by it"},
        )
        for name in groups
    }


MessageStatsRowSchema = ApiSchema.from_dict(
    {
        **_group_fields(MESSAGE_GROUPS),
        "total": fields.Integer(dump_only=True),
        **{status: fields.Integer(dump_only=True) for status in STATUS_COUNTS},
        "delivery_rate": fields.Float(
            dump_only=True,
            allow_none=True,
            metadata={"description": "delivered or read, over messages in a final status (null: none final)"},
        ),
        "credits": fields.String(dump_only=True, metadata={"format": "decimal"}),
        "units": fields.Integer(dump_only=True),
        "delivery_seconds_p50": fields.Float(
            dump_only=True,
            allow_none=True,
            metadata={"description": "median seconds from submitted to delivered (delivered or read)"},
        ),
        "delivery_seconds_p90": fields.Float(dump_only=True, allow_none=True),
    },
    name="MessageStatsRowSchema",
)

CallStatsRowSchema = ApiSchema.from_dict(
    {
        **_group_fields(CALL_GROUPS),
        "calls": fields.Integer(dump_only=True),
        "answered": fields.Integer(dump_only=True, metadata={"description": "status ANSWER or COMPLETED"}),
        "duration_seconds": fields.Integer(dump_only=True),
        "duration_seconds_avg": fields.Float(dump_only=True, allow_none=True),
        "billing": fields.Integer(dump_only=True),
        "recordings_stored": fields.Integer(dump_only=True),
        "recordings_waiting": fields.Integer(dump_only=True),
        "recordings_failed": fields.Integer(dump_only=True),
    },
    name="CallStatsRowSchema",
)


class MessageStatsSchema(ApiSchema):
    data = fields.List(fields.Nested(MessageStatsRowSchema), dump_only=True)


class CallStatsSchema(ApiSchema):
    data = fields.List(fields.Nested(CallStatsRowSchema), dump_only=True)
