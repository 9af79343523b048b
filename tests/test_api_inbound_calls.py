"""GET /api/v1/inbound and /api/v1/calls: fields, filters, recordings, errors."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from receiver.models import Recording, RecordingState
from tests.payloads import C2C, OBD, RCS_INBOUND_MEDIA, VMN_INBOUND, WHATSAPP_INBOUND


def _inbound(hooks):
    for payload in (VMN_INBOUND, WHATSAPP_INBOUND, RCS_INBOUND_MEDIA):
        assert hooks.post(payload).status_code == 200


def test_inbound_fields(hooks, api):
    _inbound(hooks)
    body = api("/api/v1/inbound").get_json()
    assert body["next_cursor"] is None
    by_id = {row["id"]: row for row in body["data"]}
    vmn = by_id["our-message-id"]
    for key in ("id", "source", "channel", "from", "to", "type", "text", "media_url", "received_at"):
        assert key in vmn
    assert (vmn["channel"], vmn["from"], vmn["to"], vmn["type"]) == (
        "sms",
        "918074XXXXXX",
        "919019XXXXXX",
        "text",
    )
    assert vmn["text"] == "This is a simple text message"
    assert vmn["source"] == "portal"
    media = by_id["rcs-inbound-1"]
    assert media["media_url"] == "https://domin-name.com/your_image_path.png"
    assert api("/api/v1/inbound/our-message-id").get_json() == vmn


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ({"from": "918074XXXXXX"}, {"our-message-id"}),
        ({"from": "91XXXXXX"}, {"our-message-id-wa", "rcs-inbound-1"}),
        ({"to": "919019120xxx"}, {"our-message-id-wa"}),
        ({"channel": "rcs"}, {"rcs-inbound-1"}),
        ({"channel": "sms"}, {"our-message-id"}),
        ({"channel": "rcs", "from": "918074XXXXXX"}, set()),
        (
            {"since": "2000-01-01", "until": "2999-01-01"},
            {"our-message-id", "our-message-id-wa", "rcs-inbound-1"},
        ),
        ({"until": "2000-01-01"}, set()),
    ],
)
def test_inbound_filters(hooks, api, query, expected):
    _inbound(hooks)
    assert {row["id"] for row in api("/api/v1/inbound", query_string=query).get_json()["data"]} == expected


def test_call_fields_and_recordings(hooks, api):
    obd = hooks.post(OBD).get_json()["events"][0]
    c2c = hooks.post(C2C).get_json()["events"][0]
    call = api(f"/api/v1/calls/{obd}").get_json()
    for key in ("id", "source", "from", "to", "bridge", "mid", "status", "start_at", "end_at", "duration"):
        assert key in call
    assert call["source"] == "portal"
    assert call["service"] == "OBD"
    assert (call["from"], call["to"], call["bridge"]) == ("918919520000", "918867130000", "918068280000")
    assert call["status"] == "ANSWER"
    assert call["duration"] == 23
    assert call["start_at"] == "2021-04-09T10:57:39Z"  # 16:27:39 in Asia/Kolkata
    [recording] = call["recordings"]
    assert set(recording) == {"id", "state", "sha256", "size_bytes", "content_type", "attempts", "last_error"}
    assert recording["state"] in {s.value for s in RecordingState}
    listed = api("/api/v1/calls").get_json()["data"]
    assert {row["id"] for row in listed} == {obd, c2c}
    assert all(len(row["recordings"]) == 1 for row in listed)


def test_call_recording_state_is_the_rows(app, hooks, api):
    call_id = hooks.post(dict(OBD, recording_url=None)).get_json()["events"][0]
    now = datetime(2026, 1, 1, tzinfo=UTC)
    with app.extensions["receiver.db"].new_session() as session, session.begin():
        session.add(
            Recording(
                call_id=call_id,
                url="https://example.test/r.mp3",
                url_sha256="0" * 64,
                url_expires_at=now,
                state=RecordingState.stored,
                attempts=2,
                last_error="HTTP 503",
                sha256="a" * 64,
                size_bytes=1234,
                content_type="audio/mpeg",
                created_at=now,
                updated_at=now,
            )
        )
    [recording] = api(f"/api/v1/calls/{call_id}").get_json()["recordings"]
    assert recording == {
        "id": recording["id"],
        "state": "stored",
        "sha256": "a" * 64,
        "size_bytes": 1234,
        "content_type": "audio/mpeg",
        "attempts": 2,
        "last_error": "HTTP 503",
    }


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ({"mid": "1234-1333-XXXXX"}, {"OBD"}),
        ({"status": "COMPLETED"}, {"C2C"}),
        ({"status": "ANSWER", "from": "918919520000"}, {"OBD"}),
        ({"to": "918867130000"}, {"OBD", "C2C"}),
        ({"from": "1"}, set()),
        ({"since": "2021-04-09T10:57:39Z", "until": "2021-04-09T10:57:40Z"}, {"OBD", "C2C"}),
        ({"since": "2021-04-10"}, set()),
    ],
)
def test_call_filters(hooks, api, query, expected):
    hooks.post(OBD)
    hooks.post(C2C)
    rows = api("/api/v1/calls", query_string=query).get_json()["data"]
    assert {row["service"] for row in rows} == expected


@pytest.mark.parametrize(
    ("path", "field"),
    [
        ("/api/v1/inbound?channel=fax", "channel"),
        ("/api/v1/inbound?mobile=91", "mobile"),
        ("/api/v1/inbound?since=31/01/2026", "since"),
        ("/api/v1/calls?status=", "status"),
        ("/api/v1/calls?channel=sms", "channel"),
        ("/api/v1/calls?until=soon", "until"),
        ("/api/v1/calls?limit=1.5", "limit"),
        ("/api/v1/events?state=lost", "state"),
        ("/api/v1/events?mobile=1", "mobile"),
    ],
)
def test_bad_input_is_422_naming_the_field(api, path, field):
    response = api(path)
    assert response.status_code == 422
    assert list(response.get_json()["errors"]) == [field]


@pytest.mark.parametrize(
    "path",
    [
        "/api/v1/calls/999999",
        "/api/v1/calls/99999999999999999999999",
        "/api/v1/inbound/nope",
        "/api/v1/events/4242",
    ],
)
def test_missing_is_404_in_error_shape(api, path):
    response = api(path)
    assert response.status_code == 404
    body = response.get_json()
    assert (body["status"], body["code"]) == ("ERROR", 404)


def test_inbound_contact_object_is_kept(hooks, api):
    hooks.post(WHATSAPP_INBOUND)
    row = api("/api/v1/inbound/our-message-id-wa").get_json()
    assert row["contact"] == WHATSAPP_INBOUND["payload"]["recipient"]["user"]
    assert row["occurred_at"] == "2024-07-09T10:03:37.338022Z"
