"""Pulled message statuses (`sms/status`, `<channel>/message/status`) into messages and their history.

A page is written in one transaction of a few statements, whatever its size: one INSERT of the
messages receiver never had, one INSERT of the status events their histories lack (both ON
CONFLICT DO NOTHING on their unique keys, so a status already heard, by webhook or by an
earlier pull, adds nothing), then, for messages that were known, one locked read and one
UPDATE folding the new statuses in by the webhooks' own rule (receiver.statuses.supersedes):
a pulled `delivered` never undoes a later `read`, no final status gives way to a non-final one.
Rows go in by message id, so that concurrent writers wait on each other in one order.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal, InvalidOperation
from typing import Any, cast
from zoneinfo import ZoneInfo

import sqlalchemy as sa
from sqlalchemy import orm

from .. import forwarding
from ..db import insert_new_rows, utcnow
from ..ingest.statuses import canonical, supersedes
from ..models import PULL_SOURCE, Message, MessageEvent, Origin, Status
from ..numbers import canonical as canonical_number
from .runs import Counts
from .times import provider_time

# Columns a pulled row may fill in on a known message, where receiver has nothing yet.
FILLED = (
    "mobile",
    "mobile_canonical",
    "sender",
    "service",
    "custom",
    "custom1",
    "foreign_id",
    "credits",
    "units",
    "operator",
    "country",
    "submitted_at",
    "delivered_at",
    "read_at",
)
_DELIVERED = {"sms": "DELIVRD"}  # the provider's own word for delivered, by channel (else `delivered`)


@dataclass
class PulledStatus:
    status: Status
    provider_status: str
    occurred: datetime | None


@dataclass
class PulledMessage:
    """What one pulled row says about one message."""

    id: str
    fields: dict[str, Any]
    statuses: list[PulledStatus] = field(default_factory=list)


def _text(value: Any) -> str | None:
    return None if value is None or value == "" else str(value)


def _statuses(
    channel: str,
    provider_status: str,
    delivered: datetime | None,
    read: datetime | None,
    other: datetime | None,
) -> list[PulledStatus]:
    """A row with `read_at` counts as read, one with `delivered_at` as delivered, whatever its status says."""
    found: list[PulledStatus] = []
    own = canonical(provider_status, channel=channel)
    if delivered is not None:
        word = provider_status if own == Status.delivered else _DELIVERED.get(channel, "delivered")
        found.append(PulledStatus(Status.delivered, word, delivered))
    if read is not None:
        found.append(PulledStatus(Status.read, provider_status if own == Status.read else "read", read))
    if not found:
        found.append(PulledStatus(own, provider_status, other))
    return found


def sms_row(row: dict[str, Any], zone: ZoneInfo, country_code: str) -> PulledMessage | None:
    """One row of `sms/status`."""
    message_id = _text(row.get("id"))
    if message_id is None:
        return None
    submitted = provider_time(row.get("submitted_at"), zone)
    delivered = provider_time(row.get("delivered_at"), zone)
    provider_status = str(row.get("status") or "").strip()
    mobile = _text(row.get("mobile"))
    fields = {
        "channel": "sms",
        "mobile": mobile,
        "mobile_canonical": canonical_number(mobile, country_code),
        "sender": _text(row.get("sender")),
        "service": _text(row.get("service")),
        "custom": _text(row.get("custom")),
        "custom1": _text(row.get("custom1")),
        "credits": _text(row.get("charges") if row.get("charges") not in (None, "") else row.get("credits")),
        "units": _int(row.get("units")),
        "operator": _text(row.get("provider")),
        "country": _text(row.get("location")),
        "submitted_at": submitted,
        "delivered_at": delivered,
    }
    return PulledMessage(message_id, fields, _statuses("sms", provider_status, delivered, None, submitted))


def channel_row(row: dict[str, Any], channel: str, zone: ZoneInfo, country_code: str) -> PulledMessage | None:
    """One row of `whatsapp|rcs|viber/message/status`."""
    message_id = _text(row.get("id"))
    if message_id is None:
        return None
    channel = str(row.get("channel") or channel).lower()
    created = provider_time(row.get("created_at"), zone)
    delivered = provider_time(row.get("delivered_at"), zone)
    read = provider_time(row.get("read_at"), zone)
    mobile = _text(row.get("to"))
    fields = {
        "channel": channel,
        "mobile": mobile,
        "mobile_canonical": canonical_number(mobile, country_code),
        "sender": _text(row.get("from")),
        "foreign_id": _text(row.get("foreign_id")),
        "credits": _text(row.get("credits")),
        "submitted_at": created,
        "delivered_at": delivered,
        "read_at": read,
    }
    provider_status = str(row.get("status") or "").strip()
    return PulledMessage(message_id, fields, _statuses(channel, provider_status, delivered, read, created))


def _int(value: Any) -> int | None:
    try:
        return int(str(value))
    except (TypeError, ValueError):
        return None


def _credits(value: Any) -> Decimal | None:
    try:
        return None if value is None else Decimal(str(value))
    except InvalidOperation:
        return None


def _fold(statuses: Iterable[PulledStatus], current: PulledStatus | None) -> PulledStatus | None:
    """The status that ends up current, by the webhooks' rule, taking the reports oldest first."""
    ordered = sorted(statuses, key=lambda s: (s.occurred is None, s.occurred or datetime.min))
    for pulled in ordered:
        if current is None or supersedes(pulled.status, pulled.occurred, current.status, current.occurred):
            current = pulled
    return current


def _merged(pulled: Iterable[PulledMessage]) -> dict[str, PulledMessage]:
    """One entry per message id (a row repeated on a page adds its statuses to the first)."""
    by_id: dict[str, PulledMessage] = {}
    for message in pulled:
        known = by_id.get(message.id)
        if known is None:
            by_id[message.id] = message
            continue
        have = {s.provider_status for s in known.statuses}
        known.statuses += [s for s in message.statuses if s.provider_status not in have]
        for name, value in message.fields.items():
            if known.fields.get(name) is None:
                known.fields[name] = value
    return by_id


def store(session: orm.Session, pulled: Iterable[PulledMessage | None]) -> Counts:
    """Write a page of pulled statuses in the session's transaction; count what was new."""
    by_id = _merged(p for p in pulled if p is not None)
    counts = Counts(seen=len(by_id))
    if not by_id:
        return counts
    now = utcnow()
    ids = sorted(by_id)
    messages = []
    for message_id in ids:
        message = by_id[message_id]
        first = _fold(message.statuses, None)
        assert first is not None
        row = {name: None for name in FILLED} | message.fields
        row.update(credits=_credits(row["credits"]), id=message_id, source=PULL_SOURCE)
        row.update(status=first.status, provider_status=first.provider_status, status_at=first.occurred)
        row.update(created_at=now, updated_at=now)
        messages.append(row)
    created = {row[0] for row in insert_new_rows(session, Message.__table__, messages, ["id"], ["id"])}
    events = [
        {
            "message_id": message_id,
            "raw_event_id": None,
            "origin": Origin.pull,
            "source": PULL_SOURCE,
            "status": status.status,
            "provider_status": status.provider_status,
            "occurred_at": status.occurred,
            "received_at": now,
        }
        for message_id in ids
        for status in sorted(by_id[message_id].statuses, key=lambda s: s.provider_status)
    ]
    keys = ["message_id", "provider_status"]
    added = {tuple(row) for row in insert_new_rows(session, MessageEvent.__table__, events, keys, keys)}
    known: dict[str, list[PulledStatus]] = {}
    for message_id in ids:
        new = [s for s in by_id[message_id].statuses if (message_id, s.provider_status) in added]
        if message_id in created:
            counts.new_rows += 1
        elif new:
            known[message_id] = new
        if not new:
            counts.unchanged += 1
        counts.new_statuses += len(new)
    if known:
        _fold_into_known(session, {i: by_id[i] for i in known}, known, now)
    # As a webhook's would: each message with a status new to it is a change to forward.
    changes = [forwarding.StoredChange("message.status", i) for i in ids if i in created or i in known]
    forwarding.record_changes(session.connection(), changes)
    return counts


def _fold_into_known(
    session: orm.Session,
    pulled: dict[str, PulledMessage],
    new: dict[str, list[PulledStatus]],
    now: datetime,
) -> None:
    """Make the new statuses current where the rule says so; fill columns receiver lacks."""
    table = cast(sa.Table, Message.__table__)
    current = session.execute(
        sa.select(table.c.id, table.c.status, table.c.provider_status, table.c.status_at)
        .where(table.c.id.in_(sorted(new)))
        .order_by(table.c.id)
        # FOR NO KEY UPDATE: no conflict with the KEY SHARE locks of concurrent event inserts.
        .with_for_update(key_share=True)
    ).all()
    updates = []
    for message_id, status, provider_status, status_at in current:
        before = PulledStatus(Status(status), provider_status, status_at)
        after = _fold(new[message_id], before)
        assert after is not None
        fields = pulled[message_id].fields
        updates.append(
            {
                "b_id": message_id,
                "b_status": after.status,
                "b_provider_status": after.provider_status,
                "b_status_at": after.occurred,
                "b_updated_at": now,
                **{f"b_{name}": fields.get(name) for name in FILLED},
            }
        )
    fill = {
        name: sa.func.coalesce(table.c[name], sa.bindparam(f"b_{name}", type_=table.c[name].type))
        for name in FILLED
    }
    statement = (
        sa.update(table)
        .where(table.c.id == sa.bindparam("b_id"))
        .values(
            status=sa.bindparam("b_status"),
            provider_status=sa.bindparam("b_provider_status"),
            status_at=sa.bindparam("b_status_at"),
            updated_at=sa.bindparam("b_updated_at"),
            **fill,
        )
    )
    for update in updates:
        update["b_credits"] = _credits(update["b_credits"])
    session.execute(statement, updates)
