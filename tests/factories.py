"""Rows for read-API tests, written through the models in committed sessions."""

from __future__ import annotations

import hashlib
import itertools
from datetime import UTC, datetime, timedelta
from typing import Any

from flask import Flask

from receiver.models import Message, MessageEvent, RawEvent, RawState, Status
from receiver.numbers import canonical

_counter = itertools.count(1)
T0 = datetime(2026, 1, 1, tzinfo=UTC)


def raw_event(app: Flask, *, body: bytes = b"{}", state: RawState = RawState.processed, **values: Any) -> int:
    """Store one raw event; return its id."""
    n = next(_counter)
    row = RawEvent(
        source=values.pop("source", "portal"),
        received_at=values.pop("received_at", T0),
        method="POST",
        path="/hooks/portal",
        kind_hint=values.pop("kind_hint", None),
        query_string=values.pop("query_string", ""),
        headers=values.pop("headers", {"Content-Type": "application/json"}),
        body=body,
        remote_addr="127.0.0.1",
        sha256=hashlib.sha256(body).hexdigest(),
        fingerprint=hashlib.sha256(f"{n}".encode() + body).hexdigest(),
        state=state,
        **values,
    )
    with app.extensions["receiver.db"].new_session() as session, session.begin():
        session.add(row)
        session.flush()
        return row.id


def messages(
    app: Flask, count: int, *, start: datetime = T0, step: timedelta = timedelta(seconds=1), **values: Any
) -> list[str]:
    """Store `count` SMS messages, one status event each, created `step` apart; return their ids."""
    raw_id = raw_event(app)
    prefix = values.pop("prefix", f"m{next(_counter)}")
    ids = []
    with app.extensions["receiver.db"].new_session() as session, session.begin():
        for i in range(count):
            created = start + step * i
            message_id = f"{prefix}-{i:06d}"
            status = values.get("status", Status.delivered)
            mobile = values.get("mobile", f"9190000{i % 10:05d}")
            session.add(
                Message(
                    id=message_id,
                    source=values.get("source", "portal"),
                    channel=values.get("channel", "sms"),
                    mobile=mobile,
                    mobile_canonical=canonical(mobile),  # as ingest stores it
                    custom=values.get("custom"),
                    status=status,
                    provider_status=values.get("provider_status", "DELIVRD"),
                    created_at=created,
                    updated_at=created,
                )
            )
            session.add(
                MessageEvent(
                    message_id=message_id,
                    raw_event_id=raw_id,
                    source="portal",
                    status=status,
                    provider_status=values.get("provider_status", "DELIVRD"),
                    occurred_at=created,
                    received_at=created,
                )
            )
            ids.append(message_id)
    return ids
