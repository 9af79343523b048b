"""Input no provider sends but anyone on the internet can: each gets a JSON answer, never a 500,
and every authenticated request is kept raw (quarantined when it cannot be read)."""

from __future__ import annotations

import json

import pytest
import sqlalchemy as sa

from receiver.ingest.service import Settings, reprocess
from receiver.models import Message, RawState
from tests.conftest import raw_events, row_counts
from tests.payloads import CONTACT_CREATED, VMN_INBOUND, sms
from tests.test_hooks_answers import DROP_FAULT, FAULT_TRIGGERS, get_db_engine

DEEP = b'{"challenge": "c", "a": ' + b"[" * 100_000 + b"]" * 100_000 + b"}"


def _quarantined(app, response, field: str, *words: str) -> None:
    """A 422 in the error shape naming `field`, and the request kept raw and quarantined."""
    assert response.status_code == 422, response.get_data(as_text=True)
    body = response.get_json()
    assert (body["status"], body["code"]) == ("ERROR", 422)
    assert field in body["errors"], body["errors"]
    text = " ".join(body["errors"][field]).lower()
    assert all(word in text for word in words), text
    (raw,) = raw_events(app)
    assert raw.state == RawState.quarantined
    assert raw.id == body["event"]
    assert field in raw.errors
    counts = row_counts(app)
    assert counts["messages"] == counts["inbound_messages"] == counts["calls"] == 0


# -- deep nesting ----------------------------------------------------------------------------


def test_json_nested_100000_levels_is_quarantined(hooks, app):
    response = hooks.post(DEEP, content_type="application/json")
    _quarantined(app, response, "body", "nested")
    assert raw_events(app)[0].body == DEEP


@pytest.mark.parametrize("query", ["", "?token=anything"])
def test_deep_json_without_a_secret_is_refused_not_a_500(client, source_secret, app, query):
    """The handshake's challenge is looked for before the secret is checked."""
    response = client.post(f"/hooks/portal{query}", data=DEEP, content_type="application/json")
    assert response.status_code == 401
    assert response.get_json()["status"] == "ERROR"
    assert row_counts(app)["raw_events"] == 0


def test_nesting_over_the_limit_is_quarantined_even_when_python_could_parse_it(hooks, app):
    nested: dict = {"leaf": "x"}
    for _ in range(40):
        nested = {"n": nested}
    response = hooks.post(sms(id="deep:1", extra=nested))
    _quarantined(app, response, "body", "nested deeper than")


@pytest.mark.parametrize("literal", [b"NaN", b"Infinity", b"-Infinity", b"1e999"])
def test_numbers_json_cannot_hold_are_quarantined(hooks, app, literal):
    body = b'{"id": "nan:1", "status": "DELIVRD", "mobile": "9190", "extra": ' + literal + b"}"
    response = hooks.post(body, content_type="application/json")
    assert response.status_code == 422
    assert raw_events(app)[0].state == RawState.quarantined


# -- source names ----------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["port%00al", "p" * 65, "portal%0A", "Portal"])
def test_a_source_name_that_cannot_exist_is_404(client, source_secret, app, name):
    response = client.post(f"/hooks/{name}", json=sms(), headers={"Authorization": f"Bearer {source_secret}"})
    assert response.status_code == 404
    assert response.get_json()["status"] == "ERROR"
    assert row_counts(app)["raw_events"] == 0


# -- NUL bytes and lone surrogates -------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "field"),
    [
        (b'{"id": "nul:1", "status": "DELIVRD", "mobile": "91\\u000090"}', "mobile"),
        (b'{"id": "sur:1", "status": "DELIVRD", "custom": "x\\ud800"}', "custom"),
        (b'{"id": "sur:2", "status": "DELIVRD", "custom": "\\udfff"}', "custom"),
        (b'{"id": "nul:2", "status": "DELIVRD", "unknown_field": "a\\u0000"}', "unknown_field"),
        (b'[{"id": "a:1", "status": "DELIVRD"}, {"id": "a:2\\u0000", "status": "DELIVRD"}]', "1.id"),
        (b'{"id": "nul:3", "status": "DELIVRD", "a\\u0000b": 1}', "a\\u0000b"),
        (b'{"id": "nul:4", "status": "DELIVRD", "tags": ["ok", "\\ud83d"]}', "tags.1"),
    ],
)
def test_nul_or_lone_surrogate_in_a_value_is_quarantined(hooks, app, body, field):
    response = hooks.post(body, content_type="application/json", headers={"X-Odd": "a\x00b\xff"})
    _quarantined(app, response, field)
    raw = raw_events(app)[0]
    assert raw.body == body
    assert raw.headers["X-Odd"] == "a\x00b\xff"  # a header is kept as received


def test_nul_deep_inside_an_envelope_names_its_path(hooks, app):
    payload = json.loads(json.dumps(VMN_INBOUND))
    payload["payload"]["recipient"]["user"]["first_name"] = "Ra\x00m"
    response = hooks.post(payload)
    _quarantined(app, response, "payload.recipient.user.first_name", "nul")


def test_nul_in_a_query_parameter_is_quarantined(client, source_secret, app):
    response = client.get(f"/hooks/portal?secret={source_secret}&id=q:1&status=DELIVRD&mobile=9%0090")
    _quarantined(app, response, "mobile", "nul")


@pytest.mark.parametrize(
    ("path", "body", "content_type", "field"),
    [
        # a message's reference, as JSON
        (
            "/hooks/portal",
            b'{"id": "nul:5", "status": "DELIVRD", "mobile": "9190", "custom": "a\\u0000b"}',
            "application/json",
            "custom",
        ),
        # an opt-out's value, as a form
        (
            "/hooks/portal/unsubscription",
            b"receiver=9190&type=category&value=W%00UC",
            "application/x-www-form-urlencoded",
            "value",
        ),
        # a contact's first name, as JSON to a URL naming another kind
        (
            "/hooks/portal/sms-status",
            json.dumps(dict(CONTACT_CREATED, first_name="De\x00mo")).encode(),
            "application/json",
            "first_name",
        ),
        # the opt-out's channel, from the URL's query
        (
            "/hooks/portal/unsubscription?channel=s%00ms",
            b"receiver=9190&type=all&value=x",
            "application/x-www-form-urlencoded",
            "channel",
        ),
    ],
)
def test_nul_in_a_stored_text_field_is_quarantined_and_replay_says_so_again(
    hooks, app, path, body, content_type, field
):
    """No database column takes a NUL (PostgreSQL's text refuses it): a 422 naming the field, the
    request kept raw, and a replay that answers 422 again rather than leaving it pending."""
    response = hooks.post(body, path=path, content_type=content_type)
    _quarantined(app, response, field, "nul")
    assert row_counts(app)["opt_outs"] == row_counts(app)["contact_events"] == 0
    (raw,) = raw_events(app)
    assert raw.body == body
    with app.app_context(), app.extensions["receiver.db"].new_session() as session:
        outcome = reprocess(session, raw.id, Settings.from_config(app.config))
    assert outcome.code == 422
    (raw,) = raw_events(app)
    assert (raw.state, raw.replays) == (RawState.quarantined, 1)


# -- values longer or larger than their columns ------------------------------------------------


@pytest.mark.parametrize(
    ("payload", "field"),
    [
        ({"event": "x" * 40 + ":unsubscription", "payload": {"receiver": "9190", "type": "sms"}}, "event"),
        (
            {"event": "whatsapp:message:in", "payload": {"id": "i:1", "from": "91", "channel": "y" * 40}},
            "channel",
        ),
        ({"id": "w:1", "status": "read", "channel": "z" * 40, "from": "91"}, "channel"),
        (sms(id="big:1", units=2**31), "units"),
        ({"from": "91", "to": "92", "duration": 3_000_000_000, "source": "OBD"}, "duration"),
        ({"from": "91", "to": "92", "billing": -(2**31), "source": "OBD"}, "billing"),
    ],
)
def test_a_value_its_column_cannot_hold_is_quarantined(hooks, app, payload, field):
    """PostgreSQL refuses them (VARCHAR(32) channels, 32-bit integers): never left pending."""
    path = "/hooks/portal/whatsapp" if payload.get("channel", "").startswith("z") else "/hooks/portal"
    _quarantined(app, hooks.post(payload, path=path), field)


# -- forms -----------------------------------------------------------------------------------


def _multipart(boundary: str, parts: list[tuple[str, bytes]]) -> bytes:
    chunks = [
        f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n'.encode() + value + b"\r\n"
        for name, value in parts
    ]
    return b"".join(chunks) + f"--{boundary}--\r\n".encode()


GOOD_PARTS = [("id", b"mp:1"), ("mobile", b"9190"), ("status", b"DELIVRD")]


def test_multipart_form_is_read(hooks, app):
    body = _multipart("xyz", GOOD_PARTS)
    response = hooks.post(body, content_type="multipart/form-data; boundary=xyz")
    assert response.status_code == 200, response.get_json()
    assert row_counts(app)["messages"] == 1


@pytest.mark.parametrize(
    ("content_type", "body", "words"),
    [
        ("multipart/form-data", _multipart("xyz", GOOD_PARTS), ("boundary",)),
        ("multipart/form-data; boundary=other", _multipart("xyz", GOOD_PARTS), ("multipart",)),
        ("multipart/form-data; boundary=xyz", _multipart("xyz", GOOD_PARTS)[:-10], ("multipart",)),
        (
            "multipart/form-data; boundary=xyz",
            _multipart("xyz", GOOD_PARTS + [(f"f{i}", b"x") for i in range(1000)]),
            ("parts",),
        ),
        ("multipart/form-data; boundary=xyz", _multipart("xyz", [("id", b"\xff\xfe")]), ("utf-8",)),
        ("application/x-www-form-urlencoded", b"id=f:1&mobile=\xff&status=DELIVRD", ("utf-8",)),
        ("application/x-www-form-urlencoded", b"id=f:1&mobile=%FF&status=DELIVRD", ("utf-8",)),
        ("application/x-www-form-urlencoded", "&".join(["a=1"] * 1001).encode(), ("fields",)),
    ],
)
def test_a_form_that_cannot_be_parsed_is_quarantined(hooks, app, content_type, body, words):
    response = hooks.post(body, content_type=content_type)
    _quarantined(app, response, "body", *words)
    assert raw_events(app)[0].body == body


# -- the stored query string ------------------------------------------------------------------


def test_query_string_is_stored_byte_for_byte_less_credentials(client, source_secret, app):
    query = (
        "b=%FF&a=1+2&a=3&blank=&flag&c=%20x&secret="
        + source_secret
        + "&token=t0k&access_token=a%2Bb&secr%65t=hidden&Secret=hidden&ACCESS%5FTOKEN=hidden"
        + "&id=q%3A1&status=DELIVRD&mobile=9190"
    )
    response = client.get(f"/hooks/portal?{query}")
    assert response.status_code == 200, response.get_json()
    (raw,) = raw_events(app)
    assert raw.query_string == (
        "b=%FF&a=1+2&a=3&blank=&flag&c=%20x&secret=REDACTED"
        "&token=REDACTED&access_token=REDACTED&secr%65t=REDACTED&Secret=REDACTED&ACCESS%5FTOKEN=REDACTED"
        "&id=q%3A1&status=DELIVRD&mobile=9190"
    )
    # A credential's name in any case is never stored, nor read as a field of the payload.
    assert "hidden" not in raw.query_string and b"hidden" not in raw.body


def test_query_bytes_a_url_cannot_hold_are_percent_encoded(client, source_secret, app):
    """gunicorn refuses a request line with bytes over 0x7f; another server may pass them on
    (WSGI gives them as latin-1 text): no 500, and they are kept percent-encoded."""
    response = client.get(
        "/hooks/portal",
        environ_overrides={
            "QUERY_STRING": f"id=q:2&status=DELIVRD&mobile=9190&x=\x7f %41\xff&secret={source_secret}"
        },
    )
    assert response.status_code == 200, response.get_json()
    assert raw_events(app)[0].query_string == (
        "id=q:2&status=DELIVRD&mobile=9190&x=%7F%20%41%FF&secret=REDACTED"
    )
    wrong = client.get("/hooks/portal", environ_overrides={"QUERY_STRING": "secret=\xff"})
    assert wrong.status_code == 401


def test_a_stored_query_string_replays_as_it_was_first_read(client, source_secret, app):
    """A query-only report kept raw by a fault (injected by a trigger) is stored by a replay with
    the same values the first reading would have given."""
    engine = get_db_engine(app)
    dialect = engine.dialect.name
    with engine.begin() as connection:
        for statement in FAULT_TRIGGERS[dialect]:
            connection.execute(sa.text(statement))
    try:
        response = client.get(
            f"/hooks/portal?id=q%3A3&status=DELIVRD&mobile=%2B91+98450&custom=boom"
            f"&custom1=%E2%82%AC&custom2=%FF&custom2=second&secret={source_secret}"
        )
        assert response.status_code == 202
    finally:
        with engine.begin() as connection:
            for statement in DROP_FAULT[dialect]:
                connection.execute(sa.text(statement))
    (raw,) = raw_events(app)
    with app.app_context(), app.extensions["receiver.db"].new_session() as session:
        outcome = reprocess(session, raw.id, Settings.from_config(app.config))
        assert (outcome.code, outcome.events) == (200, ["q:3"])
        message = session.get(Message, "q:3")
        assert (message.mobile, message.custom1, message.custom2) == ("+91 98450", "€", "second")


# -- large arrays -------------------------------------------------------------------------------


def test_an_array_over_max_events_is_quarantined_whole(hooks, app):
    """One request may not hold the database (and SQLite's single writer) for seconds."""
    body = [sms(id=f"many:{i}") for i in range(1001)]
    response = hooks.post(body)
    _quarantined(app, response, "body", "1001 events", "at most 1000")


def test_reports_in_an_array_are_stored_as_one_by_one(hooks, app, api):
    """Status reports of distinct messages are written together; a message named twice, one
    already stored and a status seen before all end as they would one request at a time."""
    assert hooks.post(sms(id="arr:a", status="AWAITING-DLR")).status_code == 200
    array = [
        sms(id="arr:a", status="DELIVRD", deliv_at="1701086585"),
        sms(id="arr:b", status="UNDELIV"),
        sms(id="arr:c", status="AWAITING-DLR"),
        sms(id="arr:c", status="DELIVRD"),
        sms(id="arr:d", status="DELIVRD", custom="d-custom"),
        sms(id="arr:a", status="AWAITING-DLR"),
    ]
    response = hooks.post(array)
    assert response.status_code == 200
    assert response.get_json()["events"] == ["arr:a", "arr:b", "arr:c", "arr:c", "arr:d", "arr:a"]
    statuses = {m: api(f"/api/v1/messages/{m}").get_json() for m in ("arr:a", "arr:b", "arr:c", "arr:d")}
    assert {m: body["status"] for m, body in statuses.items()} == {
        "arr:a": "delivered",
        "arr:b": "failed",
        "arr:c": "delivered",
        "arr:d": "delivered",
    }
    assert [e["provider_status"] for e in statuses["arr:a"]["events"]] == ["AWAITING-DLR", "DELIVRD"]
    assert len(statuses["arr:c"]["events"]) == 2
    assert statuses["arr:d"]["custom"] == "d-custom"
    assert row_counts(app)["message_events"] == 6
    assert hooks.post(array).get_json()["message"] == "duplicate"
