"""Recording downloads against a stand-in provider on 127.0.0.1, one job at a time in this process.

The same jobs in a real worker process: test_worker.py.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from flask import Flask

from receiver.db import utcnow
from receiver.models import Recording, RecordingState
from receiver.recordings.download import Result, backoff, numbers_match, sniff_audio
from receiver.recordings.files import storage_path
from receiver.recordings.sweep import sweep
from receiver.tasks import Jobs, get_jobs
from tests.provider_stub import ProviderStub, recording_row, voice_record


@pytest.fixture
def stub() -> Iterator[ProviderStub]:
    with ProviderStub() as server:
        yield server


@pytest.fixture
def settings(settings: dict[str, Any], stub: ProviderStub) -> dict[str, Any]:
    settings.update(
        DOWNLOAD_ALLOW_PRIVATE=True,
        DOWNLOAD_ALLOW_HTTP=True,
        PROVIDER_ACCESS_TOKEN=stub.token,
        PROVIDER_BASE_URL=f"{stub.url}/api/v2/",
        RECORDING_RETRY_BASE=0.05,
        RECORDING_RETRY_MAX=0.2,
    )
    return settings


def configure(app: Flask, **values: Any) -> None:
    """Change settings of the app's jobs before its first job runs."""
    app.config.update(values)
    app.extensions["receiver.jobs"] = Jobs(app)


def post_call(hooks: Any, record: dict[str, Any]) -> int:
    response = hooks.post(record)
    assert response.status_code == 200, response.get_json()
    return int(response.get_json()["events"][0])


def recording_of(app: Flask, call_id: int) -> Recording:
    with app.extensions["receiver.db"].new_session() as session:
        return session.scalars(sa.select(Recording).where(Recording.call_id == call_id)).one()


def run_job(app: Flask, recording_id: int, max_runs: int = 10) -> list[Result]:
    """Run the job as the worker would, following planned retries (bounded)."""
    downloader = get_jobs(app).downloader()
    results = []
    for _ in range(max_runs):
        result = downloader.run(recording_id)
        results.append(result)
        if result.retry_in is None:
            break
        time.sleep(min(result.retry_in, 2.0))
    return results


def stored_files(app: Flask) -> list[Path]:
    root = Path(app.config["RECORDINGS_DIR"])
    return sorted(p for p in root.rglob("*") if p.is_file() and ".tmp" not in p.parts)


def test_a_working_url_is_stored_content_addressed_and_a_second_run_does_nothing(app, hooks, stub):
    recording = recording_of(app, post_call(hooks, voice_record(stub, "ok", "first")))
    assert recording.state == RecordingState.pending

    assert [r.state for r in run_job(app, recording.id)] == [RecordingState.stored]
    stored = recording_of(app, recording.call_id)
    body = stub.audio_for("/audio/ok/first.mp3")
    assert stored.sha256 == hashlib.sha256(body).hexdigest()
    assert (stored.size_bytes, stored.content_type, stored.attempts) == (len(body), "audio/mpeg", 1)
    path = storage_path(Path(app.config["RECORDINGS_DIR"]), stored.sha256)
    assert path.read_bytes() == body
    assert stored_files(app) == [path]

    assert run_job(app, recording.id) == [Result(recording.id, None)]
    assert stub.hits["/audio/ok/first.mp3"] == 1
    assert recording_of(app, recording.call_id).attempts == 1


def test_a_url_answering_500_twice_is_retried_with_backoff_then_stored(app, hooks, stub):
    recording = recording_of(app, post_call(hooks, voice_record(stub, "flaky", "flaky")))
    results = run_job(app, recording.id)
    assert [r.state for r in results] == [
        RecordingState.retrying,
        RecordingState.retrying,
        RecordingState.stored,
    ]
    assert all(0 < r.retry_in <= 0.2 for r in results[:2])
    stored = recording_of(app, recording.call_id)
    assert (stored.state, stored.attempts, stored.last_error) == (RecordingState.stored, 3, "HTTP 500")


def test_a_retry_is_never_planned_past_the_url_expiry_less_the_margin(app, hooks, stub, settings):
    configure(app, RECORDING_URL_TTL=1000, RECORDING_RETRY_BASE=3600.0, RECORDING_RETRY_MAX=3600.0)
    recording = recording_of(app, post_call(hooks, voice_record(stub, "flaky", "deadline")))
    result = get_jobs(app).downloader().run(recording.id)
    planned = recording_of(app, recording.call_id)
    deadline = planned.url_expires_at - timedelta(seconds=app.config["RECORDING_EXPIRY_MARGIN"])
    assert result.state == RecordingState.retrying
    assert planned.next_attempt_at == deadline
    assert result.retry_in is not None and 690 < result.retry_in <= 700


def test_backoff_has_jitter_and_a_cap():
    delays = {round(backoff(3, 10.0, 600.0), 6) for _ in range(50)}
    assert len(delays) > 1 and all(20.0 <= d <= 40.0 for d in delays)
    assert all(300.0 <= backoff(30, 10.0, 600.0) <= 600.0 for _ in range(20))


def add_api_rows(stub: ProviderStub, name: str) -> None:
    """Two pages of decoys, then the call's recording (times in the provider's zone, Asia/Kolkata)."""
    stub.recordings = [
        recording_row(stub, "other-numbers", "919999999999", "918867130000", "2021-04-09 16:27:56"),
        recording_row(
            stub, "same-numbers-hours-later", "918919520000", "918867130000", "2021-04-09 21:00:00"
        ),
        recording_row(stub, "another", "917777777777", "916666666666", "2021-04-09 16:28:00"),
        recording_row(stub, name, "+91 89195 20000", "8867130000", "2021-04-09 16:27:57"),
    ]


def test_a_403_expired_url_is_fetched_through_the_recordings_api(app, hooks, stub):
    add_api_rows(stub, "fresh-one")
    stub.throttle = 1  # the first API request gets 429 with Retry-After: 1
    recording = recording_of(app, post_call(hooks, voice_record(stub, "expired", "gone")))

    started = time.monotonic()
    assert [r.state for r in run_job(app, recording.id)] == [RecordingState.stored]
    assert time.monotonic() - started >= 0.9  # Retry-After was honoured
    stored = recording_of(app, recording.call_id)
    assert stored.sha256 == hashlib.sha256(stub.audio_for("/audio/fresh/fresh-one")).hexdigest()
    assert stored.attempts == 1
    assert stub.hits["/audio/expired/gone.mp3"] == 1
    assert stub.hits["/audio/fresh/fresh-one"] == 1
    # one 429, then both pages; every request with the token and the documented date filter
    assert len(stub.api_requests) == 3
    assert {r["authorization"] for r in stub.api_requests} == {f"Bearer {stub.token}"}
    assert [r["query"].get("page", ["1"]) for r in stub.api_requests] == [["1"], ["1"], ["2"]]
    assert stub.api_requests[1]["query"]["datetime[r.created_at]"] == ["Apr 09, 2021 - Apr 09, 2021"]


def test_an_expired_url_goes_straight_to_the_recordings_api(app, hooks, stub):
    app.config["RECORDING_URL_TTL"] = 0
    add_api_rows(stub, "fresh-two")
    recording = recording_of(app, post_call(hooks, voice_record(stub, "ok", "too-late")))
    assert [r.state for r in run_job(app, recording.id)] == [RecordingState.stored]
    assert stub.hits["/audio/ok/too-late.mp3"] == 0
    assert stub.hits["/audio/fresh/fresh-two"] == 1


def test_a_recording_the_api_does_not_have_is_retried_then_fails(app, hooks, stub):
    configure(app, RECORDING_MAX_ATTEMPTS=3)
    recording = recording_of(app, post_call(hooks, voice_record(stub, "expired", "nowhere")))
    results = run_job(app, recording.id)
    assert [r.state for r in results] == [
        RecordingState.fallback,
        RecordingState.fallback,
        RecordingState.failed,
    ]
    failed = recording_of(app, recording.call_id)
    assert failed.attempts == 3
    assert "not (yet) in the recordings API" in failed.last_error


def test_without_an_access_token_an_expired_url_fails_with_a_clear_error(app, hooks, stub):
    configure(app, PROVIDER_ACCESS_TOKEN=None)
    recording = recording_of(app, post_call(hooks, voice_record(stub, "expired", "no-token")))
    assert [r.state for r in run_job(app, recording.id)] == [RecordingState.failed]
    assert "PROVIDER_ACCESS_TOKEN is not set" in recording_of(app, recording.call_id).last_error


def test_a_rejected_token_or_a_login_page_is_a_clear_error_and_never_shows_the_token(app, hooks, stub):
    configure(app, PROVIDER_ACCESS_TOKEN="wrong-token-123")
    recording = recording_of(app, post_call(hooks, voice_record(stub, "expired", "bad-token")))
    get_jobs(app).downloader().run(recording.id)
    error = recording_of(app, recording.call_id).last_error
    assert "refused PROVIDER_ACCESS_TOKEN (401)" in error and "wrong-token-123" not in error


def test_an_html_login_page_instead_of_json_is_a_clear_error(app, hooks, stub):
    stub.html_login = True
    recording = recording_of(app, post_call(hooks, voice_record(stub, "expired", "login")))
    get_jobs(app).downloader().run(recording.id)
    error = recording_of(app, recording.call_id).last_error
    assert "HTML page (a login page?) instead of JSON" in error and stub.token not in error


def test_content_that_is_not_audio_goes_to_the_api_and_fails_when_that_is_not_audio_either(app, hooks, stub):
    stub.recordings = [
        {**recording_row(stub, "x", "918919520000", "918867130000", "2021-04-09 16:27:57"),
         "audio": f"{stub.url}/audio/html/page"}
    ]  # fmt: skip
    recording = recording_of(app, post_call(hooks, voice_record(stub, "html", "page")))
    assert [r.state for r in run_job(app, recording.id)] == [RecordingState.failed]
    failed = recording_of(app, recording.call_id)
    assert failed.last_error.startswith("not audio (text/html")
    assert stub.hits["/audio/html/page.mp3"] == 1 and stub.hits["/audio/html/page"] == 1
    assert stored_files(app) == []


def test_a_recording_over_the_size_cap_is_refused_and_marked_failed(app, hooks, stub):
    configure(app, RECORDING_MAX_BYTES=1000)
    recording = recording_of(app, post_call(hooks, voice_record(stub, "ok", "big")))
    assert [r.state for r in run_job(app, recording.id)] == [RecordingState.failed]
    assert "over the cap of 1000" in recording_of(app, recording.call_id).last_error
    tmp = Path(app.config["RECORDINGS_DIR"]) / ".tmp"
    assert not tmp.exists() or list(tmp.iterdir()) == []


def test_two_calls_with_the_same_audio_share_one_file(app, hooks, stub):
    first = recording_of(app, post_call(hooks, voice_record(stub, "ok", "same")))
    second = recording_of(app, post_call(hooks, voice_record(stub, "flaky", "same", mid="other")))
    run_job(app, first.id)
    run_job(app, second.id)
    assert recording_of(app, first.call_id).sha256 == recording_of(app, second.call_id).sha256
    assert len(stored_files(app)) == 1


def test_the_sweep_takes_back_expired_leases_and_lost_jobs_only(app, hooks, stub):
    ids = [recording_of(app, post_call(hooks, voice_record(stub, "ok", f"s{n}"))).id for n in range(4)]
    crashed, lost, held, fresh = ids
    policy = get_jobs(app).policy
    now = utcnow()
    with app.extensions["receiver.db"].new_session() as session, session.begin():
        r = Recording
        session.execute(
            sa.update(r)
            .where(r.id == crashed)
            .values(state=RecordingState.downloading, locked_until=now - timedelta(seconds=1))
        )
        session.execute(
            sa.update(r)
            .where(r.id == lost)
            .values(next_attempt_at=now - timedelta(seconds=policy.requeue_after + 5))
        )
        session.execute(
            sa.update(r)
            .where(r.id == held)
            .values(
                state=RecordingState.downloading,
                locked_until=now + timedelta(seconds=60),
                next_attempt_at=now - timedelta(seconds=policy.requeue_after + 5),
            )
        )
    with app.extensions["receiver.db"].new_session() as session:
        assert sorted(sweep(session, policy)) == sorted([crashed, lost])
    with app.extensions["receiver.db"].new_session() as session:
        assert sweep(session, policy) == []  # taken back once, not at every sweep
    taken = {i: _by_id(app, i) for i in ids}
    assert taken[crashed].state == RecordingState.retrying
    assert "taken back by the sweep" in taken[crashed].last_error
    assert taken[fresh].state == RecordingState.pending and taken[held].state == RecordingState.downloading
    assert [r.state for r in run_job(app, crashed)] == [RecordingState.stored]


def _by_id(app: Flask, recording_id: int) -> Recording:
    with app.extensions["receiver.db"].new_session() as session:
        return session.get_one(Recording, recording_id)


def test_sniff_audio_knows_the_usual_formats_and_refuses_text():
    assert sniff_audio(b"RIFF\x00\x00\x00\x00WAVEfmt ") == "audio/wav"
    assert sniff_audio(b"\xff\xfb\x90\x00") == "audio/mpeg"
    assert sniff_audio(b"OggS\x00") == "audio/ogg"
    assert sniff_audio(b"\x00\x00\x00\x20ftypM4A ") == "audio/mp4"
    assert sniff_audio(b"<html>") is None and sniff_audio(b"") is None


def test_numbers_match_across_formats():
    assert numbers_match("+91 89195 20000", 918919520000)
    assert numbers_match("8919520000", "918919520000")
    assert not numbers_match("918919520001", "918919520000")
    assert not numbers_match("20000", "918919520000")
    assert not numbers_match(None, "918919520000")


def test_numbers_match_by_the_canonical_rule_of_every_number_filter():
    """A trunk `0` or `00` prefix is the same number; a national number is in the default country,
    not in any country whose code happens to end it."""
    assert numbers_match("08919520000", "918919520000")
    assert numbers_match("00918919520000", "+91 89195-20000")
    assert not numbers_match("+44 8919520000", "8919520000")
    assert not numbers_match("448919520000", "918919520000")
    assert numbers_match("8919520000", "18919520000", country_code="1")
    assert not numbers_match("8919520000", "918919520000", country_code="1")
    assert not numbers_match("", "") and not numbers_match(" ", None)


def test_a_loopback_url_is_refused_by_default_and_never_fetched(app, hooks, stub):
    configure(app, DOWNLOAD_ALLOW_PRIVATE=False, PROVIDER_ACCESS_TOKEN=None)
    recording = recording_of(app, post_call(hooks, voice_record(stub, "ok", "internal")))
    assert [r.state for r in run_job(app, recording.id)] == [RecordingState.failed]
    assert "127.0.0.1 is a loopback address" in recording_of(app, recording.call_id).last_error
    assert stub.hits["/audio/ok/internal.mp3"] == 0
