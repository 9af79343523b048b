"""From payload objects to validated events: recognise each event's kind, load it.

Works on what the raw event stores (content type, redacted query, body; decoded by
receiver.ingest.bodies), so that a stored request can be parsed again after a fix (replay) exactly as
it was the first time.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from marshmallow import Schema, ValidationError

from .bodies import PayloadError, content_type_of, decode

__all__ = ["URL_KINDS", "Event", "PayloadError", "load", "read", "recognise"]
from ..fields import CHANNEL
from .schemas import (
    channel_status_schema,
    contact_schema,
    inbound_schema,
    sms_status_schema,
    unsubscription_schema,
    voice_schema,
)

# The kinds a URL may name (/hooks/<source>/<kind>); `None` means: recognise it from the payload.
URL_KINDS = ("sms-status", "sms-inbound", "whatsapp", "rcs", "viber", "voice", "unsubscription")
CHANNELS = ("whatsapp", "rcs", "viber")

_SCHEMAS: dict[str, Schema] = {
    "sms-status": sms_status_schema,
    "channel-status": channel_status_schema,
    "inbound": inbound_schema,
    "voice": voice_schema,
    "unsubscription": unsubscription_schema,
    "contact": contact_schema,
}
# A contact event's status: "Subscriber created successfully", "Subscriber updated successfully".
# (An opt-out's reads "Unsubscriber created successfully".)
_CONTACT_STATUS = re.compile(r"\s*subscriber\s+(created|updated|deleted)\b", re.IGNORECASE)
# Keys of the provider's contact object beside its `identity`.
_CONTACT_KEYS = frozenset({"first_name", "middle_name", "last_name", "birth_date", "company", "gender"})


@dataclass
class Event:
    """One event of a request: its kind (`None` when not understood), channel and loaded fields."""

    kind: str | None
    channel: str | None
    data: dict[str, Any]
    original: dict[str, Any]
    event_name: str | None = None


def recognise(
    item: dict[str, Any], url_kind: str | None
) -> tuple[str | None, str | None, dict[str, Any], str | None]:
    """Return (kind, channel, fields, event name) for one payload object."""
    event_name = item.get("event") if isinstance(item.get("event"), str) else None
    inner = item.get("payload")
    if event_name and isinstance(inner, dict):
        kind, channel = _kind_of_event(event_name)
        if url_kind is not None:
            kind, channel = _kind_for_url(url_kind, inner, event_kind=kind, event_channel=channel)
        return kind, channel, inner, event_name
    if url_kind is not None:
        kind, channel = _kind_for_url(url_kind, item)
        return kind, channel, item, event_name
    return (*_kind_of_flat(item), item, event_name)


def _kind_of_event(name: str) -> tuple[str | None, str | None]:
    parts = name.strip().lower().split(":")
    channel = parts[0]
    rest = parts[1:]
    if channel == "vmn" and rest == ["message", "in"]:
        return "inbound", "sms"
    if channel == "voice" and rest == ["message", "out"]:
        return "voice", "voice"
    if channel == "contacts" and rest == ["subscriber", "subscription"]:
        return "contact", None
    if rest == ["unsubscription"]:
        return "unsubscription", channel
    if channel == "sms" and rest == ["message", "status"]:
        return "sms-status", "sms"
    if channel in CHANNELS and rest == ["message", "status"]:
        return "channel-status", channel
    if channel in CHANNELS + ("sms",) and rest == ["message", "in"]:
        return "inbound", channel
    return None, None


def _kind_for_url(
    url_kind: str,
    fields: dict[str, Any],
    *,
    event_kind: str | None = None,
    event_channel: str | None = None,
) -> tuple[str | None, str | None]:
    # A contact object is a contact event whatever URL it comes to: never a message, call or opt-out.
    if event_kind == "contact" or (event_kind is None and _is_contact(fields)):
        return "contact", None
    if url_kind == "sms-status":
        return "sms-status", "sms"
    if url_kind == "sms-inbound":
        return "inbound", "sms"
    if url_kind == "voice":
        return "voice", "voice"
    if url_kind == "unsubscription":
        return "unsubscription", event_channel
    # whatsapp, rcs, viber: the envelope says which, else a status has a status and no message
    if event_kind in ("channel-status", "inbound", "unsubscription"):
        return event_kind, url_kind
    # An opt-out has a `status` too ("Unsubscriber created successfully"), but a receiver and a type.
    if "receiver" in fields and ("status" not in fields or fields.keys() & {"type", "value"}):
        return "unsubscription", url_kind
    if fields.get("status") not in (None, "") and not any(
        key in fields for key in ("message", "text", "recipient")
    ):
        return "channel-status", url_kind
    return "inbound", url_kind


def _is_contact(item: dict[str, Any]) -> bool:
    """A contact object: a contact's status text, or an identity with a contact's fields."""
    keys = {key for key, value in item.items() if value not in (None, "")}
    return bool(
        _CONTACT_STATUS.match(str(item.get("status", ""))) or ("identity" in keys and keys & _CONTACT_KEYS)
    )


def _kind_of_flat(item: dict[str, Any]) -> tuple[str | None, str | None]:
    keys = {key for key, value in item.items() if value not in (None, "")}
    if keys & {"recording_url", "recording", "bridge", "billing", "hangup_by"} or str(
        item.get("source", "")
    ).upper() in ("OBD", "C2C"):
        return "voice", "voice"
    if "receiver" in keys and keys & {"type", "value"}:
        return "unsubscription", None
    if _is_contact(item):
        return "contact", None
    channel = str(item.get("channel", "")).lower()
    if channel in CHANNELS and "id" in keys and "status" in keys:
        return "channel-status", channel
    sms_markers = {"deliv_at", "sent_at", "submit_at", "deliv_time", "sent_time", "submit_time"}
    if (
        "mobile" in keys
        and ("status" in keys or "id" in keys)
        or ("id" in keys and keys & (sms_markers | {"units", "credits"}))
    ):
        return "sms-status", "sms"
    if "from" in keys and keys & {"text", "keyword1", "message", "body"}:
        return "inbound", "sms"
    return None, None


def load(items: list[dict[str, Any]], url_kind: str | None) -> list[Event]:
    """Recognise and validate every item; raise PayloadError with every item's errors."""
    events: list[Event] = []
    errors: dict[str, Any] = {}
    for index, item in enumerate(items):
        kind, channel, fields, event_name = recognise(item, url_kind)
        if channel is not None and len(channel) > CHANNEL:  # from an event name: any text
            name = "event" if len(items) == 1 else f"{index}.event"
            errors[name] = [f"The event's channel is longer than {CHANNEL} characters."]
            continue
        if kind is None:
            events.append(Event(None, channel, {}, item, event_name))
            continue
        try:
            data = _SCHEMAS[kind].load(fields)
        except ValidationError as exc:
            messages = exc.messages if isinstance(exc.messages, dict) else {"_schema": exc.messages}
            if len(items) == 1:
                errors.update(messages)
            else:
                errors.update({f"{index}.{field}": value for field, value in messages.items()})
            continue
        events.append(Event(kind, channel, data, fields, event_name))
    if errors:
        raise PayloadError(errors)
    return events


def read(
    headers: dict[str, Any], query_string: str, body: bytes, url_kind: str | None, max_events: int
) -> list[Event]:
    """The events of a request as it is stored; PayloadError says why there are none."""
    return load(decode(content_type_of(headers), query_string, body, max_events), url_kind)
