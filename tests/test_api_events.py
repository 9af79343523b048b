"""Raw events: list by state, one by id, replay by API and by `receiver replay`."""

from __future__ import annotations

import base64
import json
from datetime import timedelta

import sqlalchemy as sa

from receiver.ingest.service import Settings
from receiver.models import Message, MessageEvent, RawEvent, RawState
from tests import factories
from tests.payloads import OBD, SMS_DLR, sms


def _pending_sms(app, message_id: str, **values) -> int:
    """A raw event a past bug left pending: its body is a valid SMS report."""
    return factories.raw_event(
        app, body=json.dumps(sms(id=message_id)).encode(), state=RawState.pending, **values
    )


def _post(client, api_key: str, path: str):
    return client.post(path, headers={"Authorization": f"Bearer {api_key}"})


def _count(app, model) -> int:
    with app.extensions["receiver.db"].new_session() as session:
        return session.scalar(sa.select(sa.func.count()).select_from(model))


def test_list_by_state_and_detail(hooks, api):
    stored = hooks.post(SMS_DLR)
    quarantined = hooks.post(b'{"id": "x", "status": ', headers={"Content-Type": "application/json"})
    assert (stored.status_code, quarantined.status_code) == (200, 422)
    listed = api("/api/v1/events?state=quarantined").get_json()["data"]
    assert len(listed) == 1
    event = listed[0]
    assert event["state"] == "quarantined"
    assert event["errors"]
    assert "body" not in event and "headers" not in event
    assert {e["state"] for e in api("/api/v1/events").get_json()["data"]} == {"processed", "quarantined"}
    detail = api(f"/api/v1/events/{event['id']}").get_json()
    assert detail["body"] == '{"id": "x", "status": '
    assert detail["body_encoding"] == "utf-8"
    assert detail["headers"]["Content-Type"] == "application/json"
    assert "Authorization" not in detail["headers"]


def test_binary_body_is_base64(app, api):
    raw_id = factories.raw_event(app, body=b"\xff\x00\x01", state=RawState.quarantined)
    detail = api(f"/api/v1/events/{raw_id}").get_json()
    assert detail["body_encoding"] == "base64"
    assert base64.b64decode(detail["body"]) == b"\xff\x00\x01"


def test_events_filter_by_source_and_time(app, api):
    early = factories.raw_event(app, source="alpha", received_at=factories.T0)
    late = factories.raw_event(app, source="beta", received_at=factories.T0 + timedelta(days=1))
    assert [e["id"] for e in api("/api/v1/events?source=alpha").get_json()["data"]] == [early]
    assert [e["id"] for e in api("/api/v1/events?since=2026-01-02").get_json()["data"]] == [late]
    assert [e["id"] for e in api("/api/v1/events?until=2026-01-02").get_json()["data"]] == [early]


def test_replay_stores_what_a_pending_event_says(app, client, operate_key, api):
    raw_id = _pending_sms(app, "replay:1")
    assert api("/api/v1/messages/replay:1").status_code == 404
    assert api(f"/api/v1/events/{raw_id}").get_json()["replays"] == 0
    answer = _post(client, operate_key, f"/api/v1/events/{raw_id}/replay")
    assert answer.status_code == 200, answer.get_json()
    body = answer.get_json()
    # The webhook's own answer, and the raw event afterwards.
    assert {k: body[k] for k in ("status", "code", "message", "events")} == {
        "status": "OK",
        "code": 200,
        "message": "stored",
        "events": ["replay:1"],
    }
    assert body["event"]["id"] == raw_id
    assert body["event"]["state"] == "processed"
    assert body["event"]["replays"] == 1
    assert body["event"]["replayed_at"].endswith("Z")
    assert api(f"/api/v1/events/{raw_id}").get_json()["replays"] == 1
    message = api("/api/v1/messages/replay:1").get_json()
    assert [e["raw_event_id"] for e in message["events"]] == [raw_id]
    again = _post(client, operate_key, f"/api/v1/events/{raw_id}/replay")
    assert again.status_code == 409
    assert again.get_json()["status"] == "ERROR"
    assert _count(app, MessageEvent) == 1


def test_replay_of_a_still_broken_event_answers_422_with_errors(client, operate_key, api, hooks):
    hooks.post(b"{nope", headers={"Content-Type": "application/json"})
    raw_id = api("/api/v1/events?state=quarantined").get_json()["data"][0]["id"]
    for times in (1, 2):
        answer = _post(client, operate_key, f"/api/v1/events/{raw_id}/replay")
        assert answer.status_code == 422
        replayed = answer.get_json()
        assert (replayed["status"], replayed["code"], replayed["message"]) == (
            "ERROR",
            422,
            "validation failed",
        )
        assert "body" in replayed["errors"]
        assert replayed["event"]["state"] == "quarantined"
        assert replayed["event"]["replays"] == times


def test_replay_of_an_event_still_not_understood_answers_202(app, client, operate_key):
    raw_id = factories.raw_event(app, body=b'{"link_id": 7, "city": "Pune"}', state=RawState.pending)
    answer = _post(client, operate_key, f"/api/v1/events/{raw_id}/replay")
    assert answer.status_code == 202
    body = answer.get_json()
    assert (body["status"], body["code"], body["message"], body["events"]) == ("OK", 202, "accepted", [])
    assert (body["event"]["state"], body["event"]["replays"]) == ("pending", 1)


def test_a_read_key_cannot_replay(app, client, api_key, api):
    raw_id = _pending_sms(app, "read:1")
    refused = _post(client, api_key, f"/api/v1/events/{raw_id}/replay")
    assert refused.status_code == 403
    assert refused.get_json() == {
        "status": "ERROR",
        "code": 403,
        "message": "this API key may only read; POST needs a key of scope operate",
    }
    event = api(f"/api/v1/events/{raw_id}").get_json()
    assert (event["state"], event["replays"], event["replayed_at"]) == ("pending", 0, None)


def test_replay_unknown_event_or_without_key(client, operate_key):
    assert _post(client, operate_key, "/api/v1/events/987654/replay").status_code == 404
    assert client.post("/api/v1/events/1/replay").status_code == 401


def test_replay_command_works_through_a_backlog_in_batches_and_twice(app, runner):
    pending = [_pending_sms(app, f"backlog:{i}") for i in range(23)]
    broken = factories.raw_event(app, body=b"{broken", state=RawState.quarantined)
    done = factories.raw_event(app, body=json.dumps(sms(id="done:1")).encode(), state=RawState.processed)
    result = runner.invoke(args=["replay", "--batch-size", "5"])
    assert result.exit_code == 0, result.output
    assert "replayed 24 raw events" in result.output
    assert "stored 23" in result.output and "quarantined 1" in result.output
    assert _count(app, Message) == 23
    with app.extensions["receiver.db"].new_session() as session:
        states = dict(session.execute(sa.select(RawEvent.id, RawEvent.state)).all())
    assert {states[i] for i in pending} == {RawState.processed}
    assert (states[broken], states[done]) == (RawState.quarantined, RawState.processed)
    again = runner.invoke(args=["replay"])
    assert again.exit_code == 0, again.output
    assert "replayed 1 raw event: quarantined 1" in again.output
    assert (_count(app, Message), _count(app, MessageEvent)) == (23, 23)
    with app.extensions["receiver.db"].new_session() as session:
        replays = dict(session.execute(sa.select(RawEvent.id, RawEvent.replays)).all())
    assert (replays[pending[0]], replays[broken], replays[done]) == (1, 2, 0)


def test_replay_command_state_and_since(app, runner):
    old = _pending_sms(app, "old:1", received_at=factories.T0)
    new = _pending_sms(app, "new:1", received_at=factories.T0 + timedelta(days=2))
    factories.raw_event(
        app, body=b"{broken", state=RawState.quarantined, received_at=factories.T0 + timedelta(days=3)
    )
    result = runner.invoke(args=["replay", "--state", "pending", "--since", "2026-01-02"])
    assert result.exit_code == 0, result.output
    assert "replayed 1 raw event: stored 1" in result.output
    with app.extensions["receiver.db"].new_session() as session:
        assert session.get(RawEvent, old).state == RawState.pending
        assert session.get(RawEvent, new).state == RawState.processed
    bad = runner.invoke(args=["replay", "--state", "processed"])
    assert bad.exit_code != 0


def test_replayed_call_is_stored_with_its_recording(app, client, operate_key, api):
    raw_id = factories.raw_event(app, body=json.dumps(OBD).encode(), state=RawState.pending)
    first = _post(client, operate_key, f"/api/v1/events/{raw_id}/replay").get_json()
    assert first["message"] == "stored"
    [call] = api("/api/v1/calls").get_json()["data"]
    assert call["raw_event_id"] == raw_id
    assert len(call["recordings"]) == 1


def test_two_replays_at_once_store_everything_once(app):
    from concurrent.futures import ThreadPoolExecutor

    from receiver.ingest import replay

    pending = [_pending_sms(app, f"twice:{i}") for i in range(30)]
    settings = Settings.from_config(app.config)
    db = app.extensions["receiver.db"]

    def run(_: int):
        with app.app_context():
            return replay.replay_backlog(db, replay.REPLAYABLE, None, settings, batch_size=4)

    with ThreadPoolExecutor(2) as pool:
        results = list(pool.map(run, range(2)))
    assert sum(sum(r.values()) for r in results) >= len(pending)
    assert (_count(app, Message), _count(app, MessageEvent)) == (30, 30)
    with app.extensions["receiver.db"].new_session() as session:
        states = set(session.scalars(sa.select(RawEvent.state).where(RawEvent.id.in_(pending))))
    assert states <= {RawState.processed, RawState.duplicate}
