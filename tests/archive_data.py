"""Rows for the archive tests, written straight into the database with chosen times."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from receiver.archive.format import CODECS, TABLES
from receiver.models import (
    Call,
    ContactEvent,
    InboundMessage,
    Message,
    MessageEvent,
    OptOut,
    RawEvent,
    Recording,
)
from receiver.recordings.files import storage_path

DAY1 = datetime(2026, 1, 10, tzinfo=UTC)
CUTOFF = datetime(2026, 1, 12, tzinfo=UTC)


class Seeder:
    """Inserts raw events and the rows made from them, as ingest would, at the times given."""

    def __init__(self, engine: sa.Engine, recordings_dir: Path) -> None:
        self.engine = engine
        self.recordings_dir = recordings_dir
        self.n = 0

    def raw(self, conn: sa.Connection, at: datetime, body: bytes | None = None) -> int:
        self.n += 1
        body = body if body is not None else b'{"id":"x"}\xff\x00 not utf-8 ' + str(self.n).encode()
        return conn.execute(
            sa.insert(RawEvent.__table__).returning(RawEvent.__table__.c.id),
            {
                "source": "portal",
                "received_at": at,
                "method": "POST",
                "path": "/hooks/portal",
                "kind_hint": None,
                "query_string": "a=1&b=%C3%A9",
                "headers": {"Content-Type": "application/json", "X-Z": "é", "A": ["1", 2]},
                "body": body,
                "remote_addr": "203.0.113.9",
                "sha256": hashlib.sha256(body).hexdigest(),
                "fingerprint": f"fp-{self.n}",
                "state": "processed",
                "kinds": ["sms-status"],
                "errors": None,
                "processed_at": at + timedelta(milliseconds=3),
            },
        ).scalar_one()

    def message(self, message_id: str, created: datetime, events: list[tuple[str, datetime]]) -> None:
        """A message first heard of at `created`, with one event per (provider status, received time)."""
        with self.engine.begin() as conn:
            conn.execute(
                sa.insert(Message.__table__),
                {
                    "id": message_id,
                    "source": "portal",
                    "channel": "sms",
                    "mobile": "918921269000",
                    "mobile_canonical": "918921269000",
                    "sender": "MOBTXT",
                    "custom": "ref-ü",
                    "credits": Decimal("2.5000"),
                    "units": 2,
                    "status": "delivered",
                    "provider_status": events[-1][0],
                    "status_at": events[-1][1],
                    "submitted_at": created - timedelta(seconds=5),
                    "created_at": created,
                    "updated_at": events[-1][1],
                },
            )
            for status, at in events:
                raw_id = self.raw(conn, at)
                conn.execute(
                    sa.insert(MessageEvent.__table__),
                    {
                        "message_id": message_id,
                        "raw_event_id": raw_id,
                        "source": "portal",
                        "status": "delivered" if status == "DELIVRD" else "sent",
                        "provider_status": status,
                        "occurred_at": at - timedelta(seconds=1),
                        "received_at": at,
                    },
                )

    def late_event(self, message_id: str, status: str, at: datetime) -> None:
        with self.engine.begin() as conn:
            raw_id = self.raw(conn, at)
            conn.execute(
                sa.insert(MessageEvent.__table__),
                {
                    "message_id": message_id,
                    "raw_event_id": raw_id,
                    "source": "portal",
                    "status": "read",
                    "provider_status": status,
                    "occurred_at": at,
                    "received_at": at,
                },
            )
            conn.execute(
                sa.update(Message.__table__)
                .where(Message.__table__.c.id == message_id)
                .values(status="read", provider_status=status, updated_at=at)
            )

    def inbound(self, inbound_id: str, at: datetime) -> None:
        with self.engine.begin() as conn:
            raw_id = self.raw(conn, at)
            conn.execute(
                sa.insert(InboundMessage.__table__),
                {
                    "id": inbound_id,
                    "source": "portal",
                    "raw_event_id": raw_id,
                    "channel": "whatsapp",
                    "from_number": "918074000000",
                    "to_number": "919019000000",
                    "from_canonical": "918074000000",
                    "to_canonical": "919019000000",
                    "type": "text",
                    "text": "hello\nworld ✓",
                    "contact": {"name": "A", "nested": {"b": [1, 2.5, None]}},
                    "occurred_at": at,
                    "received_at": at,
                },
            )

    def call(self, key: str, at: datetime, audio: bytes | None, state: str = "pending") -> int:
        """A call with one recording: stored (with its file) when `audio` is given, else in `state`."""
        with self.engine.begin() as conn:
            raw_id = self.raw(conn, at)
            call_id = conn.execute(
                sa.insert(Call.__table__).returning(Call.__table__.c.id),
                {
                    "dedupe_key": key,
                    "source": "portal",
                    "raw_event_id": raw_id,
                    "service": "OBD",
                    "from_number": "918919520000",
                    "to_number": "918867130000",
                    "from_canonical": "918919520000",
                    "to_canonical": "918867130000",
                    "start_at": at - timedelta(minutes=1),
                    "end_at": at,
                    "duration": 23,
                    "status": "ANSWER",
                    "received_at": at,
                },
            ).scalar_one()
            values: dict[str, Any] = {
                "call_id": call_id,
                "url": f"https://audio.example/{key}.mp3",
                "url_sha256": hashlib.sha256(key.encode()).hexdigest(),
                "url_expires_at": at + timedelta(hours=2),
                "state": state,
                "created_at": at,
                "updated_at": at,
            }
            if audio is not None:
                sha = hashlib.sha256(audio).hexdigest()
                path = storage_path(self.recordings_dir, sha)
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_bytes(audio)
                values.update(
                    state="stored", sha256=sha, size_bytes=len(audio), content_type="audio/mpeg", stored_at=at
                )
            conn.execute(sa.insert(Recording.__table__), values)
            return int(call_id)

    def opt_out(self, key: str, at: datetime) -> None:
        with self.engine.begin() as conn:
            raw_id = self.raw(conn, at)
            conn.execute(
                sa.insert(OptOut.__table__),
                {
                    "key": key,
                    "provider_id": "436",
                    "source": "portal",
                    "raw_event_id": raw_id,
                    "channel": "whatsapp",
                    "receiver": "+91 70020 80000",
                    "number_canonical": "917002080000",
                    "type": "category",
                    "value": "WUC",
                    "occurred_at": at,
                    "received_at": at,
                },
            )

    def contact(self, key: str, at: datetime) -> None:
        with self.engine.begin() as conn:
            raw_id = self.raw(conn, at)
            conn.execute(
                sa.insert(ContactEvent.__table__),
                {
                    "key": hashlib.sha256(key.encode()).hexdigest(),
                    "source": "portal",
                    "raw_event_id": raw_id,
                    "contact_id": "86",
                    "identity": "demo@gmail.com",
                    "number": "09845012345",
                    "number_canonical": "919845012345",
                    "email": "demo@gmail.com",
                    "first_name": "Démo",
                    "last_name": "Test",
                    "status": "Subscriber updated successfully",
                    "occurred_at": at - timedelta(seconds=2),
                    "contact": {"id": 86, "attributes": {"membership": "platinum", "n": [1, 2.5, None]}},
                    "received_at": at,
                },
            )


def seed(engine: sa.Engine, recordings_dir: Path) -> Seeder:
    """Three days of everything: two before CUTOFF, one after, and edge cases around it."""
    s = Seeder(engine, recordings_dir)
    for day in range(3):
        base = DAY1 + timedelta(days=day)
        for i in range(3):
            at = base + timedelta(hours=i, microseconds=i * 7)
            s.message(f"msg-{day}-{i}", at, [("AWAITING-DLR", at), ("DELIVRD", at + timedelta(minutes=3))])
            s.inbound(f"in-{day}-{i}", at)
            s.opt_out(f"opt-{day}-{i}", at)
            s.contact(f"contact-{day}-{i}", at)
        s.call(f"call-{day}-a", base + timedelta(hours=5), f"ID3 audio {day}".encode() * 100)
        s.call(f"call-{day}-b", base + timedelta(hours=6), None)
    # The same audio twice: one file in the archive.
    s.call("call-dup", DAY1 + timedelta(hours=7), b"ID3 audio 0" * 100)
    # A message first heard of before the cutoff whose report came after it: archived whole.
    s.message(
        "msg-straddles",
        CUTOFF - timedelta(minutes=1),
        [("AWAITING-DLR", CUTOFF - timedelta(minutes=1)), ("DELIVRD", CUTOFF + timedelta(hours=1))],
    )
    return s


def snapshot(engine: sa.Engine) -> dict[str, list[str]]:
    """Every archived table's rows, canonically encoded and sorted: equal snapshots, equal rows."""
    from receiver.archive.format import dumps

    result: dict[str, list[str]] = {}
    with engine.connect() as conn:
        for table in TABLES:
            codec = CODECS[table.name]
            result[table.name] = sorted(dumps(codec.encode(row)) for row in conn.execute(sa.select(table)))
    return result


def counts(engine: sa.Engine) -> dict[str, int]:
    with engine.connect() as conn:
        return {t.name: conn.scalar(sa.select(sa.func.count()).select_from(t)) or 0 for t in TABLES}
