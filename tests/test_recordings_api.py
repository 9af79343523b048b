"""GET /api/v1/recordings/<id>/audio, and the `receiver recordings` commands."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from typing import Any

import pytest
import sqlalchemy as sa

from receiver.models import Recording, RecordingState
from receiver.tasks import get_jobs
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
