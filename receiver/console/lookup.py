"""Read side of the console: search, one message, one call, one raw event (less its secrets).

Each function takes the request's session and only reads.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from urllib.parse import parse_qsl

import sqlalchemy as sa
from sqlalchemy import orm

from ..credentials import CREDENTIAL_HEADERS, REDACTED, is_credential, is_credential_header
from ..models import Call, Message, MessageEvent, RawEvent, Recording
from ..numbers import canonical, is_number
from . import cursors

MAX_QUERY = 255


@dataclass
class SearchResult:
    query: str
    number: str | None = None  # canonical, when the query is written as a phone number
    message_id: str | None = None  # a message whose id is the query
    references: list[Message] = field(default_factory=list)  # custom, cid or foreign_id
    calls: list[Call] = field(default_factory=list)  # by mid
    next_cursor: str | None = None  # of the references

    def only_target(self) -> tuple[str, Any] | None:
        """Where to go straight away when the query found exactly one thing."""
        found = [
            ("message", self.message_id) if self.message_id else None,
            ("number", self.number) if self.number else None,
            *([("references", None)] if self.references else []),
            *([("call", self.calls[0].id)] if len(self.calls) == 1 else []),
            *([("calls", None)] if len(self.calls) > 1 else []),
        ]
        hits = [hit for hit in found if hit is not None]
        if len(hits) == 1 and hits[0][0] in {"message", "number", "call"}:
            return hits[0]
        return None


def search(
    session: orm.Session, query: str, country_code: str, cursor: str | None = None, limit: int = 50
) -> SearchResult:
    """Everything the query may stand for: a message id, a phone number in any spelling,
    a custom/cid/foreign_id reference, a call's mid."""
    query = query.strip()[:MAX_QUERY]
    result = SearchResult(query)
    if not query:
        return result
    if is_number(query):
        result.number = canonical(query, country_code)
    if session.scalar(sa.select(Message.id).where(Message.id == query)) is not None:
        result.message_id = query
    after = cursors.decode(cursor, [datetime, str]) if cursor else None
    references = _references(session, query, after, limit + 1)
    if len(references) > limit:
        references = references[:limit]
        result.next_cursor = cursors.encode([references[-1].created_at, references[-1].id])
    result.references = references
    if not cursor:
        result.calls = list(
            session.scalars(sa.select(Call).where(Call.mid == query).order_by(Call.id.desc()).limit(limit))
        )
    return result


def _references(session: orm.Session, query: str, after: list[Any] | None, limit: int) -> list[Message]:
    """Messages whose custom, cid or foreign_id is `query`, newest first, after a position.

    One keyset query per column, each an index range scan, merged here: as one OR, the planner
    could not tell a rare value from a common one and might read the whole table by time.
    """
    found: dict[str, Message] = {}
    for column in (Message.custom, Message.cid, Message.foreign_id):
        statement = sa.select(Message).where(column == query)
        if after is not None:
            statement = statement.where(sa.tuple_(Message.created_at, Message.id) < sa.tuple_(*after))
        statement = statement.order_by(Message.created_at.desc(), Message.id.desc()).limit(limit)
        for message in session.scalars(statement):
            found[message.id] = message
    return sorted(found.values(), key=lambda m: (m.created_at, m.id), reverse=True)[:limit]


@dataclass
class MessageView:
    message: Message
    events: list[MessageEvent]


def message(session: orm.Session, message_id: str) -> MessageView | None:
    found = session.get(Message, message_id[:MAX_QUERY])
    if found is None:
        return None
    events = list(
        session.scalars(
            sa.select(MessageEvent)
            .where(MessageEvent.message_id == found.id)
            .order_by(sa.func.coalesce(MessageEvent.occurred_at, MessageEvent.received_at), MessageEvent.id)
        )
    )
    return MessageView(found, events)


@dataclass
class CallView:
    call: Call
    recordings: list[Recording]


def call(session: orm.Session, call_id: int) -> CallView | None:
    found = session.get(Call, call_id)
    if found is None:
        return None
    recordings = list(
        session.scalars(sa.select(Recording).where(Recording.call_id == call_id).order_by(Recording.id))
    )
    return CallView(found, recordings)


@dataclass
class EventView:
    event: RawEvent
    headers: list[tuple[str, str]]
    query: list[tuple[str, str]]
    body: str  # pretty-printed: indented JSON, a form as `name = value` lines, or text
    body_kind: str  # json, form, text or binary


def _redact(value: Any) -> Any:
    """A JSON value with every credential-named member's value replaced, at any depth."""
    if isinstance(value, dict):
        return {key: REDACTED if is_credential(str(key)) else _redact(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_redact(item) for item in value]
    return value


def _pairs(text: str) -> list[tuple[str, str]]:
    return [
        (name, REDACTED if is_credential(name) else value)
        for name, value in parse_qsl(text, keep_blank_values=True)
    ]


def pretty_body(body: bytes, content_type: str) -> tuple[str, str]:
    """The body as a person reads it, with the values of credential parameters replaced."""
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        return f"{len(body)} bytes that are not UTF-8 text", "binary"
    try:
        return json.dumps(_redact(json.loads(text)), indent=2, ensure_ascii=False), "json"
    except ValueError:
        pass
    if "multipart/form-data" in content_type.lower():
        return f"a multipart body of {len(body)} bytes", "text"
    if "x-www-form-urlencoded" in content_type.lower() or ("=" in text and "\n" not in text.strip()):
        return "\n".join(f"{name} = {value}" for name, value in _pairs(text)), "form"
    return text, "text"


def event(session: orm.Session, event_id: int) -> EventView | None:
    found = session.get(RawEvent, event_id)
    if found is None:
        return None
    # Credential headers are never stored with a raw request, and a custom header named as a
    # credential is stored REDACTED (an older row may hold its value: it is hidden here too). The
    # query string's credential values were replaced on the way in. The body is kept byte for
    # byte, so its credential parameters (a `secret` posted in a form) are replaced on the way out.
    headers = sorted(
        (str(name), REDACTED if is_credential_header(str(name)) else str(value))
        for name, value in (found.headers or {}).items()
        if str(name).lower() not in CREDENTIAL_HEADERS
    )
    content_type = next((value for name, value in headers if name.lower() == "content-type"), "")
    body, kind = pretty_body(found.body, content_type)
    return EventView(found, headers, _pairs(found.query_string), body, kind)


def recording_call(session: orm.Session, recording_id: int) -> int | None:
    with session.begin():
        return session.scalar(sa.select(Recording.call_id).where(Recording.id == recording_id))
