"""Inbound schemas: one per kind of webhook the platform sends (PROVIDER.md).

They check shape only and map the provider's names to ours. Unknown keys are dropped here
because the raw request keeps them.
"""

from __future__ import annotations

from typing import Any

from marshmallow import EXCLUDE, Schema, ValidationError, fields, pre_load, validates_schema

from ..fields import CHANNEL, LONG, Amount, Integer, Text, Timestamp, UnixTime
from ..numbers import is_number


def _first(data: dict[str, Any], *names: str) -> Any:
    for name in names:
        value = data.get(name)
        if value is not None and value != "":
            return value
    return None


def _alias(data: dict[str, Any], target: str, *names: str) -> None:
    """Fill `target` from the first alias present (composed webhooks name fields freely)."""
    if data.get(target) in (None, ""):
        value = _first(data, *names)
        if value is not None:
            data[target] = value


class VendorSchema(Schema):
    class Meta:
        unknown = EXCLUDE

    @pre_load
    def drop_nulls(self, data: Any, **kwargs: Any) -> Any:
        """Null is the same as absent."""
        if not isinstance(data, dict):
            raise ValidationError("An event must be a JSON object.", "_schema")
        return {key: value for key, value in data.items() if value is not None}


class SmsStatusSchema(VendorSchema):
    """A flat SMS delivery report (`sms:message:status`), or a composed one."""

    id = Text(required=True)
    mobile = Text()
    status = Text()
    credits = Amount()
    units = Integer()
    submit_at = UnixTime()
    sent_at = UnixTime()
    deliv_at = UnixTime()
    submit_time = Timestamp()
    sent_time = Timestamp()
    deliv_time = Timestamp()
    cid = Text()
    custom = Text()
    custom1 = Text()
    custom2 = Text()
    foreign_id = Text()
    sender = Text()
    service = Text()
    location = Text()
    location_code = Text()
    region = Text()
    region_code = Text()
    provider = Text()
    provider_code = Text()

    @pre_load
    def aliases(self, data: dict[str, Any], **kwargs: Any) -> dict[str, Any]:
        data = dict(data)
        _alias(data, "id", "message_id", "msg_id", "messageid", "msgid")
        _alias(data, "mobile", "mobile_number", "number", "to")
        _alias(data, "status", "message_status", "dlr_status")
        _alias(data, "custom", "customid", "my_id")
        _alias(data, "sender", "from")
        _alias(data, "submit_time", "submitted_at")
        _alias(data, "deliv_time", "delivered_at")
        return data


class ChannelStatusSchema(VendorSchema):
    """A WhatsApp, RCS or Viber status (`<channel>:message:status` payload)."""

    id = Text(required=True)
    channel = Text(max_length=CHANNEL)
    from_ = Text(data_key="from")
    to = Text()
    status = Text(required=True)
    delivered_at = Timestamp()
    read_at = Timestamp()
    processed_at = Timestamp()
    timestamp = Timestamp()
    foreign_id = Text()
    credits = Amount()

    @pre_load
    def aliases(self, data: dict[str, Any], **kwargs: Any) -> dict[str, Any]:
        data = dict(data)
        _alias(data, "id", "message_id")
        _alias(data, "status", "message_status")
        return data


class InboundSchema(VendorSchema):
    """An inbound message (`<channel>:message:in` payload, or flat composed fields)."""

    id = Text()
    channel = Text(max_length=CHANNEL)
    from_ = Text(data_key="from")
    to = Text()
    type = Text()
    text = Text(max_length=LONG)
    media_url = Text(max_length=LONG)
    caption = Text(max_length=LONG)
    file_name = Text()
    keyword1 = Text()
    keyword2 = Text()
    timestamp = Timestamp()
    contact = fields.Dict()

    @pre_load
    def flatten(self, data: dict[str, Any], **kwargs: Any) -> dict[str, Any]:
        """Lift the nested envelope payload onto flat keys; look for id and time in both places."""
        flat = {k: v for k, v in data.items() if not isinstance(v, dict | list)}
        channels = data.get("channels")
        if isinstance(channels, list) and channels and isinstance(channels[0], dict):
            flat.setdefault("channel", channels[0].get("name"))
            flat.setdefault("to", channels[0].get("to"))
        recipient = data.get("recipient")
        if isinstance(recipient, dict):
            flat.setdefault("from", recipient.get("from"))
            if isinstance(recipient.get("user"), dict):
                flat["contact"] = recipient["user"]
        message = data.get("message")
        if isinstance(message, dict):
            flat.setdefault("type", message.get("type"))
            if flat.get("id") in (None, ""):
                flat["id"] = message.get("id")
            if flat.get("timestamp") in (None, ""):
                flat["timestamp"] = message.get("timestamp")
            body = message.get("payload")
            if isinstance(body, dict):
                flat.setdefault("text", body.get("text"))
                flat.setdefault("media_url", body.get("url"))
                flat.setdefault("caption", body.get("caption"))
                flat.setdefault("file_name", body.get("filename"))
            elif isinstance(body, str):
                flat.setdefault("text", body)
        _alias(flat, "from", "mobile", "sender", "msisdn")
        _alias(flat, "to", "number", "vmn")
        _alias(flat, "text", "message", "body", "content")
        _alias(flat, "keyword1", "first_keyword", "keyword")
        _alias(flat, "keyword2", "second_keyword")
        _alias(flat, "timestamp", "date", "created_at", "received_at")
        _alias(flat, "media_url", "url")
        _alias(flat, "file_name", "filename")
        if isinstance(data.get("contact"), dict):
            flat["contact"] = data["contact"]
        return {k: v for k, v in flat.items() if v is not None}

    @validates_schema
    def has_content(self, data: dict[str, Any], **kwargs: Any) -> None:
        if not any(data.get(key) for key in ("from_", "text", "media_url", "id")):
            raise ValidationError("An inbound message needs a sender, a text, media or an id.")


class VoiceSchema(VendorSchema):
    """A voice call record (`voice:message:out`, OBD or click-to-call)."""

    bridge = Text()
    from_ = Text(data_key="from")
    to = Text()
    source = Text()
    mid = Text()
    flow_id = Text()
    start_at = Timestamp()
    end_at = Timestamp()
    duration = Integer()
    billing = Integer()
    status = Text()
    status1 = Text()
    status2 = Text()
    hangup_by = Text()
    recording_url = Text(max_length=LONG)

    @pre_load
    def aliases(self, data: dict[str, Any], **kwargs: Any) -> dict[str, Any]:
        data = dict(data)
        _alias(data, "recording_url", "recording", "recordingurl", "audio")
        _alias(data, "from", "call_from", "caller")
        _alias(data, "to", "call_to")
        _alias(data, "source", "service")
        return data

    @validates_schema
    def has_parties(self, data: dict[str, Any], **kwargs: Any) -> None:
        if not any(data.get(key) for key in ("from_", "to", "bridge", "mid", "recording_url")):
            raise ValidationError("A call record needs from, to, bridge, mid or recording_url.")


class UnsubscriptionSchema(VendorSchema):
    """An opt-out (`<channel>:unsubscription`); `channel` may come from the URL's `?channel=`."""

    id = Text()
    receiver = Text(required=True)
    channel = Text(max_length=32)
    type = Text()
    value = Text()
    status = Text(max_length=LONG)
    created_at = Timestamp()

    @pre_load
    def aliases(self, data: dict[str, Any], **kwargs: Any) -> dict[str, Any]:
        data = dict(data)
        _alias(data, "receiver", "mobile", "number")
        return data


class ContactSchema(VendorSchema):
    """A contact created or updated (`contacts:subscriber:subscription`): a flat contact object."""

    id = Text()
    identity = Text()
    number = Text()
    email = Text()
    first_name = Text()
    last_name = Text()
    status = Text(max_length=LONG)
    created_at = Timestamp()
    updated_at = Timestamp()

    @pre_load
    def aliases(self, data: dict[str, Any], **kwargs: Any) -> dict[str, Any]:
        """Find the number and e-mail address, which may be the contact's identity."""
        data = dict(data)
        _alias(data, "number", "mobile", "phone", "msisdn", "phone_number")
        identity = data.get("identity")
        if isinstance(identity, str | int) and not isinstance(identity, bool):
            text = str(identity).strip()
            if data.get("number") in (None, "") and is_number(text):
                data["number"] = text
            if data.get("email") in (None, "") and "@" in text:
                data["email"] = text
        return data

    @validates_schema
    def names_someone(self, data: dict[str, Any], **kwargs: Any) -> None:
        if not any(data.get(key) for key in ("id", "identity", "number", "email")):
            raise ValidationError("A contact needs an id, an identity, a number or an e-mail address.")


sms_status_schema = SmsStatusSchema()
channel_status_schema = ChannelStatusSchema()
inbound_schema = InboundSchema()
voice_schema = VoiceSchema()
unsubscription_schema = UnsubscriptionSchema()
contact_schema = ContactSchema()
