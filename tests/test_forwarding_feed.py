"""The outbox and the pull feed: each stored change, with the resource as the API showed it right
after the commit, oldest first, through `GET /api/v1/changes`."""

from __future__ import annotations

import pytest
import sqlalchemy as sa

from receiver.forwarding import outbox
from receiver.forwarding.models import Change
from tests.payloads import C2C, SMS_DLR, UNSUBSCRIPTION, VMN_INBOUND, sms

MESSAGE = SMS_DLR["id"]


def feed(api, **params):
    answer = api("/api/v1/changes", query_string=params)
    assert answer.status_code == 200, answer.get_json()
    return answer.get_json()


def test_each_status_change_carries_the_message_as_the_api_showed_it_then(hooks, api):
    assert hooks.post(sms(status="SENT", deliv_at=None, deliv_time=None)).status_code == 200
    first = api(f"/api/v1/messages/{MESSAGE}").get_json()
    assert hooks.post(SMS_DLR).status_code == 200
    second = api(f"/api/v1/messages/{MESSAGE}").get_json()
    assert hooks.post(SMS_DLR).get_json()["message"] == "duplicate"  # nothing new, no change

    page = feed(api)
    assert [c["type"] for c in page["data"]] == ["message.status", "message.status"]
    assert [c["data"] for c in page["data"]] == [first, second]
    assert first["status"] == "sent" and second["status"] == "delivered"
    assert len(second["events"]) == 2
    assert all(c["id"].startswith("chg_") and c["timestamp"].endswith("Z") for c in page["data"])
    # The last page still gives a cursor; polling it again finds what came since.
    assert feed(api, cursor=page["next_cursor"]) == {"data": [], "next_cursor": page["next_cursor"]}
    hooks.post(VMN_INBOUND)
    later = feed(api, cursor=page["next_cursor"])
    assert [c["type"] for c in later["data"]] == ["inbound"]
    assert later["data"][0]["data"] == api("/api/v1/inbound/our-message-id").get_json()
    assert int(later["next_cursor"]) > int(page["next_cursor"])


def test_the_feed_pages_by_cursor_and_filters_by_type(hooks, api):
    for n in range(5):
        hooks.post(sms(id=f"m{n}"))
    hooks.post(VMN_INBOUND)
    first = feed(api, limit=2)
    second = feed(api, limit=2, cursor=first["next_cursor"])
    rest = feed(api, limit=10, cursor=second["next_cursor"])
    ids = [c["data"]["id"] for c in first["data"] + second["data"] + rest["data"]]
    assert ids == ["m0", "m1", "m2", "m3", "m4", "our-message-id"]
    assert [c["type"] for c in feed(api, types="inbound")["data"]] == ["inbound"]
    assert len(feed(api, types="message.status,inbound")["data"]) == 6


@pytest.mark.parametrize(
    "params",
    [
        {"types": "message.status,bogus"},
        {"cursor": "abc"},
        {"cursor": "99999999999999999999"},
        {"cursor": "1\n"},
        {"cursor": "\u0663"},
        {"limit": 0},
    ],
)
def test_bad_feed_arguments_are_a_json_422(api, params):
    answer = api("/api/v1/changes", query_string=params)
    assert answer.status_code == 422
    assert answer.get_json()["code"] == 422


def test_the_feed_needs_an_api_key(client):
    answer = client.get("/api/v1/changes")
    assert answer.status_code == 401 and answer.get_json()["status"] == "ERROR"


def test_the_feed_is_in_the_openapi_document(client):
    document = client.get("/api/v1/openapi.json").get_json()
    assert "/api/v1/changes" in document["paths"]


def test_a_change_committed_late_with_a_lower_id_is_not_skipped(app):
    """Two writers: the first takes the lower id and commits after the second. A reader going by
    id past the second would never see the first; positions follow visibility instead."""
    db = app.extensions["receiver.db"]
    if db.engine.dialect.name != "postgresql":
        pytest.skip("SQLite has one writer at a time: a later transaction cannot commit first")
    row = {"type": "inbound", "resource": "inbound:x", "data": {}}
    with db.new_session() as early, db.new_session() as late, db.new_session() as reader:
        early.execute(sa.insert(Change).values(**row))  # the lower id, not committed yet
        late.execute(sa.insert(Change).values(**row))
        late.commit()
        assert outbox.sequence(reader) == 1
        seen = [c.id for c in outbox.read(reader, 0, None, 10)]
        reader.rollback()
        early.commit()
        assert outbox.sequence(reader) == 1
        seen += [c.id for c in outbox.read(reader, 1, None, 10)]
        assert sorted(seen) == seen[::-1]  # the late-committed lower id came second, not never
        assert len(seen) == 2


def test_calls_with_their_recordings_and_opt_outs_are_changes_as_the_api_shows_them(hooks, api):
    call_id = hooks.post(C2C, path="/hooks/portal/voice").get_json()["events"][0]
    hooks.post(UNSUBSCRIPTION)
    changes = feed(api)["data"]
    assert [c["type"] for c in changes] == ["call", "opt_out"]
    call = api(f"/api/v1/calls/{call_id}").get_json()
    assert call["recordings"] and changes[0]["data"] == call
    assert changes[1]["data"] == api("/api/v1/opt-outs").get_json()["data"][0]


def test_old_changes_are_pruned_unless_a_destination_still_waits_for_one(settings, app, hooks, runner):
    from datetime import timedelta

    from receiver.db import utcnow
    from receiver.forwarding.models import Delivery

    settings.update(DOWNLOAD_ALLOW_HTTP=True, DOWNLOAD_ALLOW_PRIVATE=True)
    app.config.update(DOWNLOAD_ALLOW_HTTP=True, DOWNLOAD_ALLOW_PRIVATE=True)
    assert (
        runner.invoke(
            args=["destinations", "add", "crm", "--url", "http://127.0.0.1:9/", "--events", "inbound"]
        ).exit_code
        == 0
    )
    hooks.post(SMS_DLR)
    hooks.post(VMN_INBOUND)
    db = app.extensions["receiver.db"]
    with db.new_session() as session:
        outbox.sequence(session)
        from receiver.forwarding import dispatch
        from receiver.forwarding.models import Destination

        destination_id = session.scalar(sa.select(Destination.id))
        session.commit()
        assert dispatch.fan_out(session, destination_id) == 1  # the inbound message waits for crm
        with session.begin():
            session.execute(sa.update(Change).values(created_at=utcnow() - timedelta(days=30)))
        assert outbox.prune(session, utcnow() - timedelta(days=14)) == 1
        left = session.execute(sa.select(Change.type)).scalars().all()
        assert left == ["inbound"]
        session.commit()
        with session.begin():
            session.execute(sa.update(Delivery).values(state="delivered"))
        assert outbox.prune(session, utcnow() - timedelta(days=14)) == 1
        assert session.scalar(sa.select(sa.func.count()).select_from(Delivery)) == 0
