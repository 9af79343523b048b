"""The read API's answers, built from plain rows (receiver/api/rows.py), are byte for byte what the
output schemas dump from the same rows loaded as ORM objects: same keys in the same order, times,
amounts, nulls, enums, JSON columns, unicode, and nested lists in the same order."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
import sqlalchemy as sa
from marshmallow import Schema, fields
from sqlalchemy import orm

from receiver.api import queries, rows, schemas
from receiver.models import (
    Call,
    ContactEvent,
    InboundMessage,
    Message,
    MessageEvent,
    OptOut,
    RawEvent,
    RawState,
    Recording,
    RecordingState,
    Status,
)
from tests import factories

T0 = datetime(2026, 3, 1, 10, 0, tzinfo=UTC)
UNICODE = 'ünïcødé ✓ 中文 \U0001f600 "quoted" \\ </script>'


def _store(app) -> None:
    """Rows with every kind of value the answers hold, including the awkward ones."""
    raw_id = factories.raw_event(app)
    factories.raw_event(
        app,
        state=RawState.quarantined,
        kinds=["dlr", None],
        errors={"0": {"mobile": ["Longer than 255."]}, "note": UNICODE},
        processed_at=T0 + timedelta(microseconds=1),
        kind_hint="dlr",
    )
    factories.raw_event(app, state=RawState.pending, body=UNICODE.encode())
    with app.extensions["receiver.db"].new_session() as session, session.begin():
        session.add_all(
            [
                Message(  # every column set, times with and without a fraction of a second
                    id=f"full:1:{UNICODE}",
                    source="portal",
                    channel="sms",
                    mobile="918921269xxx",
                    sender="MOBTXT",
                    service="T",
                    custom=UNICODE,
                    custom1="c1",
                    custom2="",
                    cid="1234",
                    foreign_id="f-1",
                    credits=Decimal("2.5000"),
                    units=2,
                    operator="Jio",
                    operator_code="RJ",
                    region="Bangalore",
                    region_code="KA",
                    country="India",
                    country_code="in",
                    submitted_at=T0,
                    sent_at=T0 + timedelta(seconds=1, microseconds=500),
                    delivered_at=T0 + timedelta(seconds=9),
                    read_at=T0 + timedelta(seconds=10, microseconds=123456),
                    status=Status.read,
                    provider_status="READ",
                    status_at=T0 + timedelta(seconds=10),
                    created_at=T0,
                    updated_at=T0 + timedelta(seconds=10),
                ),
                Message(  # only what a message must hold: every other value null, and no events
                    id="bare:1",
                    source="portal",
                    channel="whatsapp",
                    status=Status.unknown,
                    provider_status="",
                    created_at=T0 + timedelta(minutes=1),
                    updated_at=T0 + timedelta(minutes=1),
                ),
                Message(
                    id="zero:1",
                    source="other",
                    channel="rcs",
                    mobile=UNICODE,
                    credits=Decimal("0.0000"),
                    units=0,
                    status=Status.failed,
                    provider_status="UNDELIV",
                    created_at=T0 - timedelta(days=400),
                    updated_at=T0,
                ),
            ]
        )
        session.flush()
        # Stored out of order: the history is by the provider's time (arrival time without one).
        for n, (status, provider, occurred, received) in enumerate(
            [
                (Status.read, "READ", T0 + timedelta(seconds=10), T0 + timedelta(seconds=11)),
                (Status.accepted, "AWAITING-DLR", None, T0),
                (
                    Status.delivered,
                    "DELIVRD",
                    T0 + timedelta(seconds=9, microseconds=7),
                    T0 + timedelta(hours=1),
                ),
                (Status.sent, "SENT", T0 + timedelta(seconds=9, microseconds=7), T0 + timedelta(seconds=2)),
            ]
        ):
            session.add(
                MessageEvent(
                    message_id=f"full:1:{UNICODE}",
                    raw_event_id=raw_id,
                    source="portal" if n else UNICODE[:64],
                    status=status,
                    provider_status=provider,
                    occurred_at=occurred,
                    received_at=received,
                )
            )
        session.add(
            MessageEvent(
                message_id="zero:1",
                raw_event_id=raw_id,
                source="other",
                status=Status.failed,
                provider_status="UNDELIV",
                occurred_at=None,
                received_at=T0,
            )
        )
        session.add_all(
            [
                InboundMessage(
                    id="in:1",
                    source="portal",
                    raw_event_id=raw_id,
                    channel="whatsapp",
                    from_number="918074XXXXXX",
                    to_number="919019XXXXXX",
                    type="text",
                    text=UNICODE,
                    contact={"name": UNICODE, "numbers": ["1", 2, None], "nested": {"a": True}},
                    occurred_at=T0 + timedelta(microseconds=10),
                    received_at=T0,
                ),
                InboundMessage(
                    id="in:2", source="portal", raw_event_id=raw_id, channel="sms", received_at=T0
                ),
            ]
        )
        with_start = Call(
            dedupe_key="a" * 64,
            source="portal",
            raw_event_id=raw_id,
            service="OBD",
            from_number="918919520000",
            to_number=UNICODE,
            mid="m-1",
            start_at=T0,
            end_at=T0 + timedelta(seconds=23, microseconds=1),
            duration=23,
            billing=30,
            status="ANSWER",
            received_at=T0,
        )
        without_start = Call(dedupe_key="b" * 64, source="portal", raw_event_id=raw_id, received_at=T0)
        session.add_all([with_start, without_start])
        session.flush()
        for n, state in enumerate([RecordingState.stored, RecordingState.failed]):
            session.add(
                Recording(
                    call_id=with_start.id,
                    url=f"https://example.com/{n}.mp3",
                    url_sha256=f"{n}" * 64,
                    url_expires_at=T0 + timedelta(days=1),
                    state=state,
                    attempts=n,
                    last_error=UNICODE if n else None,
                    sha256="f" * 64 if not n else None,
                    size_bytes=2**40 if not n else None,
                    content_type="audio/mpeg" if not n else None,
                )
            )
        session.add_all(
            [
                OptOut(
                    key="id:1",
                    provider_id="1",
                    source="portal",
                    raw_event_id=raw_id,
                    channel="sms",
                    receiver=UNICODE,
                    number_canonical=UNICODE,
                    type="all",
                    value="*",
                    status=UNICODE,
                    occurred_at=T0 + timedelta(microseconds=5),
                    received_at=T0,
                ),
                OptOut(
                    key="id:2", source="portal", raw_event_id=raw_id, received_at=T0 + timedelta(seconds=1)
                ),
                ContactEvent(
                    key="c" * 64,
                    source="portal",
                    raw_event_id=raw_id,
                    contact_id="86",
                    identity="demo@gmail.com",
                    number="+91 98450 12345",
                    number_canonical="919845012345",
                    email="demo@gmail.com",
                    first_name=UNICODE,
                    last_name="Test",
                    status="Subscriber created successfully",
                    occurred_at=T0 + timedelta(microseconds=9),
                    contact={"attributes": {"n": [1, 2.5, None]}, "name": UNICODE},
                    received_at=T0,
                ),
                ContactEvent(key="d" * 64, source="portal", raw_event_id=raw_id, received_at=T0),
            ]
        )


def _schema_answer(app, body) -> bytes:
    """What the app answered before: the schema's dump, as flask-smorest writes it."""
    with app.test_request_context():
        return app.json.response(body).get_data()


def _orm_page(session, listing, schema, options=()):
    objects = session.scalars(queries.filtered(listing, {}).options(*options)).all()
    return schema.dump({"data": objects, "next_cursor": None})


LISTS = [
    ("/api/v1/messages", queries.MESSAGES, schemas.MessagePageSchema(), [orm.selectinload(Message.events)]),
    ("/api/v1/inbound", queries.INBOUND, schemas.InboundPageSchema(), []),
    ("/api/v1/calls", queries.CALLS, schemas.CallPageSchema(), [orm.selectinload(Call.recordings)]),
    ("/api/v1/events", queries.EVENTS, schemas.EventPageSchema(), []),
    ("/api/v1/opt-outs", queries.OPT_OUTS, schemas.OptOutPageSchema(), []),
    ("/api/v1/recordings", queries.RECORDINGS, schemas.RecordingPageSchema(), []),
    ("/api/v1/contacts", queries.CONTACTS, schemas.ContactEventPageSchema(), []),
]


@pytest.mark.parametrize(("path", "listing", "schema", "options"), LISTS, ids=[p for p, *_ in LISTS])
def test_list_pages_are_the_schema_dumps(app, api, path, listing, schema, options):
    _store(app)
    with app.extensions["receiver.db"].new_session() as session:
        expected = _orm_page(session, listing, schema, options)
    assert expected["data"]
    response = api(path)
    assert response.status_code == 200
    assert response.mimetype == "application/json"
    assert response.get_data() == _schema_answer(app, expected)


def test_single_message_and_call_are_the_schema_dumps(app, api):
    _store(app)
    with app.extensions["receiver.db"].new_session() as session:
        messages = session.scalars(sa.select(Message).options(orm.selectinload(Message.events))).all()
        calls = session.scalars(sa.select(Call).options(orm.selectinload(Call.recordings))).all()
        expected = {f"/api/v1/messages/{m.id}": schemas.MessageDetailSchema().dump(m) for m in messages} | {
            f"/api/v1/calls/{c.id}": schemas.CallDetailSchema().dump(c) for c in calls
        }
    assert len(expected) == 5
    for path, dumped in expected.items():
        response = api(path)
        assert response.status_code == 200, path
        assert response.get_data() == _schema_answer(app, dumped), path
    full = api(f"/api/v1/messages/full:1:{UNICODE}").get_json()
    assert [e["provider_status"] for e in full["events"]] == ["AWAITING-DLR", "DELIVRD", "SENT", "READ"]
    assert full["credits"] == "2.5000"
    assert full["sent_at"] == "2026-03-01T10:00:01.000500Z"


def test_pages_are_the_schema_dumps_page_by_page(app, api):
    _store(app)
    factories.messages(app, 7, start=T0 + timedelta(minutes=2))
    with app.extensions["receiver.db"].new_session() as session:
        objects = session.scalars(
            queries.filtered(queries.MESSAGES, {}).options(orm.selectinload(Message.events))
        ).all()
        dumped = schemas.MessageDetailSchema(many=True).dump(objects)
    served, cursor = [], None
    while True:
        body = api("/api/v1/messages", query_string={"limit": 3, **({"cursor": cursor} if cursor else {})})
        served.extend(body.get_json()["data"])
        cursor = body.get_json()["next_cursor"]
        if cursor is None:
            break
    assert served == dumped


def test_a_schema_the_rows_cannot_serve_is_refused_at_import():
    class Computed(Schema):
        id = fields.String()
        shout = fields.Method("_shout")

        def _shout(self, message: Message) -> str:
            return message.id.upper()

    with pytest.raises(TypeError, match="shout"):
        rows.Resource(Computed(), Message)
    with pytest.raises(TypeError, match="events"):
        rows.Resource(schemas.MessageDetailSchema(), Message)  # a nested list with no Nest
    with pytest.raises(TypeError, match="recordings"):
        rows.Resource(
            schemas.MessageSchema(), Message, recordings=rows.Nest(Recording.call_id, order=(Recording.id,))
        )
    assert isinstance(rows.Resource(schemas.EventSchema(), RawEvent), rows.Resource)
