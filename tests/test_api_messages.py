"""GET /api/v1/messages and /api/v1/messages/<id>: filters, history, keys, errors."""

from __future__ import annotations

from datetime import timedelta

import pytest
import sqlalchemy as sa

from receiver.models import Status
from receiver.sources import revoke_api_key
from tests import factories
from tests.payloads import SMS_DLR, channel_status, sms


def test_list_holds_spec_fields_and_history_newest_first(hooks, api):
    assert hooks.post(sms(id="a:1", status="AWAITING-DLR", deliv_at=None)).status_code == 200
    assert hooks.post(sms(id="a:1", status="DELIVRD")).status_code == 200
    assert hooks.post(sms(id="a:2", mobile="919999000001", custom="otp-7")).status_code == 200
    body = api("/api/v1/messages").get_json()
    assert body["next_cursor"] is None
    assert [m["id"] for m in body["data"]] == ["a:2", "a:1"]
    first = body["data"][1]
    for key in (
        "id",
        "source",
        "channel",
        "mobile",
        "status",
        "provider_status",
        "custom",
        "created_at",
        "submitted_at",
        "sent_at",
        "delivered_at",
        "read_at",
        "events",
    ):
        assert key in first
    assert first["source"] == "portal"
    assert first["status"] == "delivered"
    assert first["created_at"].endswith("Z")
    assert [e["provider_status"] for e in first["events"]] == ["AWAITING-DLR", "DELIVRD"]
    assert set(first["events"][0]) >= {"status", "provider_status", "occurred_at", "received_at"}


def test_by_id_has_history_oldest_first(hooks, api):
    for minute, status in enumerate(["queued", "sent", "read", "delivered"]):
        payload = channel_status("whatsapp", status, "wa:1", f"2024-01-01T10:0{minute}:00Z")
        assert hooks.post(payload).status_code == 200
    message = api("/api/v1/messages/wa:1").get_json()
    assert message["status"] == "read"
    assert [e["status"] for e in message["events"]] == ["accepted", "sent", "read", "delivered"]
    assert message["events"][0]["occurred_at"] == "2024-01-01T10:00:00Z"


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("mobile=919999000001", {"f:2"}),
        ("status=failed", {"f:3"}),
        ("status=delivered&mobile=918921269xxx", {"f:1"}),
        ("channel=whatsapp", {"f:4"}),
        ("channel=sms", {"f:1", "f:2", "f:3"}),
        ("custom=otp-7", {"f:2"}),
        ("source=portal", {"f:1", "f:2", "f:3", "f:4"}),
        ("source=other", set()),
    ],
)
def test_filters(hooks, api, query, expected):
    hooks.post(sms(id="f:1"))
    hooks.post(sms(id="f:2", mobile="919999000001", custom="otp-7"))
    hooks.post(sms(id="f:3", status="UNDELIV"))
    hooks.post(channel_status("whatsapp", "delivered", "f:4", "2024-01-01T10:00:00Z"))
    body = api(f"/api/v1/messages?{query}").get_json()
    assert {m["id"] for m in body["data"]} == expected


def test_since_until_bound_created_at(app, api):
    ids = factories.messages(app, 5, step=timedelta(hours=12))  # 1 Jan 00:00 ... 3 Jan 00:00
    day = api("/api/v1/messages?since=2026-01-01&until=2026-01-02").get_json()["data"]
    assert [m["id"] for m in day] == [ids[1], ids[0]]
    later = api("/api/v1/messages?since=2026-01-01T12:00:00Z").get_json()["data"]
    assert [m["id"] for m in later] == ids[1:][::-1]
    zoned = api("/api/v1/messages", query_string={"until": "2026-01-01T17:30:00+05:30"}).get_json()["data"]
    assert [m["id"] for m in zoned] == [ids[0]]  # 12:00 UTC is not before 12:00 UTC


def test_period_edges(app, api):
    factories.messages(app, 2)
    assert api("/api/v1/messages?since=2026-01-02&until=2026-01-01").get_json()["data"] == []
    widest = {"since": "0001-01-01T00:00:00+05:00", "until": "9999-12-31T23:59:59.5-05:00"}
    assert len(api("/api/v1/messages", query_string=widest).get_json()["data"]) == 2
    assert len(api("/api/v1/messages?since=2025-12-31t23:00:00z").get_json()["data"]) == 2


def test_limit_default_and_cap(app, api):
    factories.messages(app, 1005)
    assert len(api("/api/v1/messages").get_json()["data"]) == 100
    assert len(api("/api/v1/messages?limit=7").get_json()["data"]) == 7
    capped = api("/api/v1/messages?limit=5000").get_json()
    assert len(capped["data"]) == 1000
    assert capped["next_cursor"]


@pytest.mark.parametrize(
    ("query", "field"),
    [
        ("status=DELIVRD", "status"),
        ("status=", "status"),
        ("channel=fax", "channel"),
        ("since=yesterday", "since"),
        ("since=2026-13-01", "since"),
        ("until=2026-01-01T25:00:00", "until"),
        ("limit=0", "limit"),
        ("limit=-3", "limit"),
        ("limit=ten", "limit"),
        ("mobile=", "mobile"),
        ("mobile=91%00", "mobile"),
        ("format=xml", "format"),
        ("bogus=1", "bogus"),
        ("cursor=abc", "cursor"),
    ],
)
def test_bad_input_is_422_naming_the_field(api, query, field):
    response = api(f"/api/v1/messages?{query}")
    assert response.status_code == 422
    body = response.get_json()
    assert body["status"] == "ERROR"
    assert body["code"] == 422
    assert list(body["errors"]) == [field]


def test_missing_message_is_404_in_error_shape(api):
    response = api("/api/v1/messages/nope")
    assert response.status_code == 404
    assert response.get_json() == {"status": "ERROR", "code": 404, "message": "no message 'nope'"}
    assert api("/api/v1/messages/a%00b").status_code == 404


def test_missing_or_bad_or_revoked_key_is_401(app, client, api_key, hooks):
    hooks.post(SMS_DLR)
    for headers in ({}, {"Authorization": "Bearer rk_nope_nope"}, {"Authorization": api_key}):
        response = client.get("/api/v1/messages", headers=headers)
        assert response.status_code == 401
        assert response.get_json()["status"] == "ERROR"
    good = {"Authorization": f"Bearer {api_key}"}
    assert client.get(f"/api/v1/messages/{SMS_DLR['id']}", headers=good).status_code == 200
    with app.extensions["receiver.db"].new_session() as session:
        revoke_api_key(session, "tests")
    for path in ("/api/v1/messages", f"/api/v1/messages/{SMS_DLR['id']}", "/api/v1/calls", "/api/v1/events"):
        assert client.get(path, headers=good).status_code == 401


def test_status_filter_takes_every_canonical_status(app, api):
    factories.messages(app, 2, status=Status.expired, provider_status="EXPIRED")
    for status in Status:
        response = api(f"/api/v1/messages?status={status.value}")
        assert response.status_code == 200
        assert len(response.get_json()["data"]) == (2 if status == Status.expired else 0)


def test_a_read_request_takes_one_pooled_connection(app, api, hooks):
    """The key check and the view share one transaction: one checkout a request."""
    hooks.post(SMS_DLR)
    checkouts = []

    def count(*_: object) -> None:
        checkouts.append(1)

    engine = app.extensions["receiver.db"].engine
    sa.event.listen(engine, "checkout", count)
    try:
        for path in (f"/api/v1/messages/{SMS_DLR['id']}", "/api/v1/messages", "/api/v1/messages/nope"):
            checkouts.clear()
            assert api(path).status_code in (200, 404)
            assert len(checkouts) == 1, path
    finally:
        sa.event.remove(engine, "checkout", count)
