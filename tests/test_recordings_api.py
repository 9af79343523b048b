"""GET /api/v1/recordings/<id>/audio, and the `receiver recordings` commands."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from typing import Any

import pytest
import sqlalchemy as sa

from receiver.models import Recording, RecordingState
from receiver.recordings.jobs import get_jobs
from tests.provider_stub import ProviderStub, voice_record


@pytest.fixture
def stub() -> Iterator[ProviderStub]:
    with ProviderStub() as server:
        yield server


@pytest.fixture
def settings(settings: dict[str, Any], stub: ProviderStub) -> dict[str, Any]:
    settings.update(DOWNLOAD_ALLOW_PRIVATE=True, DOWNLOAD_ALLOW_HTTP=True, RECORDING_MAX_ATTEMPTS=1)
    return settings


def recording_id(app, hooks, record) -> int:
    call_id = hooks.post(record).get_json()["events"][0]
    with app.extensions["receiver.db"].new_session() as session:
        return session.scalars(sa.select(Recording.id).where(Recording.call_id == call_id)).one()


def state_of(app, rid: int) -> RecordingState:
    with app.extensions["receiver.db"].new_session() as session:
        return session.get_one(Recording, rid).state


def test_the_stored_file_is_streamed_with_its_type_and_an_etag(app, hooks, api, stub):
    rid = recording_id(app, hooks, voice_record(stub, "ok", "played"))
    assert api(f"/api/v1/recordings/{rid}/audio").status_code == 404  # not stored yet
    get_jobs(app).downloader().run(rid)

    response = api(f"/api/v1/recordings/{rid}/audio")
    body = stub.audio_for("/audio/ok/played.mp3")
    assert response.status_code == 200
    assert response.data == body
    assert response.headers["Content-Type"] == "audio/mpeg"
    etag = hashlib.sha256(body).hexdigest()
    assert response.headers["ETag"] == f'"{etag}"'

    again = api(f"/api/v1/recordings/{rid}/audio", headers={"If-None-Match": f'"{etag}"'})
    assert again.status_code == 304 and again.data == b""


@pytest.mark.parametrize(
    ("range_header", "status", "part"),
    [
        ("bytes=10-19", 206, slice(10, 20)),
        ("bytes=-5", 206, slice(-5, None)),
        ("bytes=abc", 200, slice(None)),  # not a range: ignored
        ("bytes=5-1", 200, slice(None)),
        ("items=0-9", 200, slice(None)),  # a unit other than bytes: ignored
        ("bytes=0-1,5-6", 200, slice(None)),  # several ranges: the whole file instead
        ("bytes=99999999-", 416, slice(0)),  # well-formed, beyond the end
    ],
)
def test_a_range_is_honoured_and_a_malformed_one_ignored(app, hooks, api, stub, range_header, status, part):
    rid = recording_id(app, hooks, voice_record(stub, "ok", "played"))
    get_jobs(app).downloader().run(rid)
    body = stub.audio_for("/audio/ok/played.mp3")

    response = api(f"/api/v1/recordings/{rid}/audio", headers={"Range": range_header})

    assert response.status_code == status
    if status != 416:
        assert response.data == body[part]


def test_missing_or_unstored_recordings_are_404_in_the_error_shape(app, hooks, api, client, stub):
    response = api("/api/v1/recordings/999999/audio")
    assert response.status_code == 404
    assert response.get_json() == {"status": "ERROR", "code": 404, "message": "no recording 999999"}
    assert client.get("/api/v1/recordings/1/audio").status_code == 401


def test_status_and_retry_commands(app, hooks, runner, stub):
    good = recording_id(app, hooks, voice_record(stub, "ok", "good"))
    bad = recording_id(app, hooks, voice_record(stub, "expired", "bad"))
    waiting = recording_id(app, hooks, voice_record(stub, "ok", "waiting"))
    downloader = get_jobs(app).downloader()
    downloader.run(good)
    downloader.run(bad)  # 403, no access token: failed
    assert state_of(app, bad) == RecordingState.failed

    output = runner.invoke(args=["recordings", "status"]).output
    assert "stored      1" in output and "failed      1" in output and "pending     1" in output
    assert f"failed #{bad}" in output and "PROVIDER_ACCESS_TOKEN is not set" in output

    result = runner.invoke(args=["recordings", "retry", str(good)])
    assert result.exit_code != 0 and "already stored" in result.output
    result = runner.invoke(args=["recordings", "retry"])
    assert result.exit_code == 2  # a usage error that says what to give
    assert "give a recording ID, or --failed to retry every failed recording" in result.output
    assert "not both" not in result.output
    both = runner.invoke(args=["recordings", "retry", str(bad), "--failed"])
    assert both.exit_code == 2 and "give a recording ID or --failed, not both" in both.output

    queued_before = get_jobs(app).huey.pending_count()
    result = runner.invoke(args=["recordings", "retry", "--failed"])
    assert result.exit_code == 0 and "1 recording queued again" in result.output
    assert state_of(app, bad) == RecordingState.pending
    assert get_jobs(app).huey.pending_count() == queued_before + 1
    with app.extensions["receiver.db"].new_session() as session:
        assert session.get_one(Recording, bad).attempts == 0

    result = runner.invoke(args=["recordings", "retry", str(waiting)])
    assert result.exit_code == 0 and "1 recording queued again" in result.output


def test_the_queue_depth_is_in_the_metrics(app, hooks, client, stub):
    recording_id(app, hooks, voice_record(stub, "ok", "metric"))
    metrics = client.get("/metrics").data.decode()
    assert "receiver_queue_depth 1.0" in metrics


def _retry(client, key: str, rid: int | str):  # type: ignore[no-untyped-def]
    return client.post(f"/api/v1/recordings/{rid}/retry", headers={"Authorization": f"Bearer {key}"})


def test_retry_through_the_api_resets_the_row_and_queues_a_job(
    app, hooks, client, api, api_key, operate_key, stub
):
    bad = recording_id(app, hooks, voice_record(stub, "expired", "api-bad"))
    get_jobs(app).downloader().run(bad)  # 403, no access token: failed
    assert state_of(app, bad) == RecordingState.failed

    refused = _retry(client, api_key, bad)
    assert refused.status_code == 403
    assert refused.get_json()["message"] == "this API key may only read; POST needs a key of scope operate"
    assert state_of(app, bad) == RecordingState.failed

    queued_before = get_jobs(app).huey.pending_count()
    answer = _retry(client, operate_key, bad)
    assert answer.status_code == 202, answer.get_json()
    with app.extensions["receiver.db"].new_session() as session:
        row = session.get_one(Recording, bad)
        assert (row.state, row.attempts, row.locked_until) == (RecordingState.pending, 0, None)
    assert get_jobs(app).huey.pending_count() == queued_before + 1
    (listed,) = [item for item in api("/api/v1/recordings").get_json()["data"] if item["id"] == bad]
    assert answer.get_json() == listed  # the recording as the API shows it
    assert listed["state"] == "pending" and listed["attempts"] == 0


def test_retry_through_the_api_refuses_what_it_cannot_queue(app, hooks, client, operate_key, stub):
    good = recording_id(app, hooks, voice_record(stub, "ok", "api-good"))
    held = recording_id(app, hooks, voice_record(stub, "ok", "api-held"))
    get_jobs(app).downloader().run(good)
    with app.extensions["receiver.db"].new_session() as session, session.begin():
        recording = session.get_one(Recording, held)
        recording.state = RecordingState.downloading
        recording.locked_until = recording.url_expires_at  # a job holds it
    queued_before = get_jobs(app).huey.pending_count()

    stored = _retry(client, operate_key, good)
    assert stored.status_code == 409
    assert stored.get_json() == {
        "status": "ERROR",
        "code": 409,
        "message": f"recording {good} not queued: already stored",
    }
    busy = _retry(client, operate_key, held)
    assert busy.status_code == 409
    assert busy.get_json()["message"] == f"recording {held} not queued: a job is working on it"
    assert state_of(app, held) == RecordingState.downloading
    for unknown in (987654, 2**63, 99999999999999999999):
        missing = _retry(client, operate_key, unknown)
        assert missing.status_code == 404
        assert missing.get_json() == {"status": "ERROR", "code": 404, "message": f"no recording {unknown}"}
    assert _retry(client, operate_key, -1).status_code == 404
    assert client.post(f"/api/v1/recordings/{good}/retry").status_code == 401
    assert get_jobs(app).huey.pending_count() == queued_before


@pytest.mark.parametrize(
    "args",
    [
        ["retry", "99999999999999999999"],
        ["retry", "0"],
        ["retry", "--", "-5"],
        ["status", "--limit", "-1"],
        ["status", "--limit", "0"],
        ["status", "--limit", "99999999999999999999"],
    ],
)
def test_recordings_commands_refuse_numbers_out_of_range_in_one_line(runner, args):
    result = runner.invoke(args=["recordings", *args])
    assert result.exit_code == 2, result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)
    errors = [line for line in result.output.splitlines() if line.startswith("Error")]
    assert len(errors) == 1 and "is not in the range" in errors[0], result.output


def test_recordings_status_limit_in_range_lists_that_many_failures(app, hooks, runner, stub):
    failed = [recording_id(app, hooks, voice_record(stub, "expired", f"f{i}")) for i in range(3)]
    for rid in failed:
        get_jobs(app).downloader().run(rid)
    output = runner.invoke(args=["recordings", "status", "--limit", "2"]).output
    assert output.count("failed #") == 2
    output = runner.invoke(args=["recordings", "status", "--limit", "1000"]).output
    assert output.count("failed #") == 3
