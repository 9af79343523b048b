"""Recording jobs in real `receiver worker` processes, on the SQLite queue and on Redis."""

from __future__ import annotations

import hashlib
import os
import secrets
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
import sqlalchemy as sa

from receiver.models import Recording, RecordingState
from receiver.recordings.jobs import get_jobs
from tests.provider_stub import ProviderStub, recording_row, voice_record, worker_env

pytestmark = pytest.mark.slow

RECEIVER = Path(sys.executable).parent / "receiver"
REDIS_URL = "redis://127.0.0.1:6379/0"
# Short enough that a killed worker's recording is back within seconds, not minutes.
FAST = {
    "DOWNLOAD_ALLOW_PRIVATE": True,
    "DOWNLOAD_ALLOW_HTTP": True,
    "RECORDING_RETRY_BASE": 0.2,
    "RECORDING_RETRY_MAX": 0.5,
    "RECORDING_LEASE": 1.5,
    "RECORDING_SWEEP_INTERVAL": 0.5,
    "RECORDING_REQUEUE_AFTER": 2,
    "WORKER_CONCURRENCY": 2,
}


@pytest.fixture
def stub() -> Iterator[ProviderStub]:
    with ProviderStub() as server:
        yield server


@pytest.fixture(params=["sqlite-queue", pytest.param("redis-queue", marks=pytest.mark.redis)])
def queue(request: pytest.FixtureRequest, settings: dict[str, Any]) -> Iterator[str]:
    """The queue the app and its workers share: SQLite under the test's VAR_DIR, or Redis."""
    if request.param == "sqlite-queue":
        yield request.param
        return
    prefix = f"receivertest{secrets.token_hex(4)}"
    settings.update(REDIS_URL=REDIS_URL, REDIS_PREFIX=prefix)
    yield request.param
    client = redis.Redis.from_url(REDIS_URL)
    for pattern in (f"huey.*.{prefix}*", f"{prefix}:*"):
        for key in client.scan_iter(pattern):
            client.delete(key)


class Worker:
    def __init__(self, env: dict[str, str], cwd: Path, log: Path) -> None:
        self.log = log
        with open(log, "ab") as out:
            self.process = subprocess.Popen(
                [str(RECEIVER), "worker"], env=env, cwd=cwd, stdout=out, stderr=out
            )

    def kill(self) -> None:
        os.kill(self.process.pid, signal.SIGKILL)
        self.process.wait(timeout=10)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)


@pytest.fixture
def start_worker(
    settings: dict[str, Any], stub: ProviderStub, tmp_path: Path
) -> Iterator[Callable[..., Worker]]:
    workers: list[Worker] = []

    def start(**extra: Any) -> Worker:
        env = worker_env(
            settings,
            **FAST,
            PROVIDER_ACCESS_TOKEN=stub.token,
            PROVIDER_BASE_URL=f"{stub.url}/api/v2/",
            **extra,
        )
        worker = Worker(env, tmp_path, tmp_path / "worker.log")
        workers.append(worker)
        return worker

    yield start
    for worker in workers:
        worker.stop()


def wait_for(what: str, predicate: Callable[[], Any], timeout: float = 40.0, log: Path | None = None) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.1)
    tail = log.read_text()[-3000:] if log and log.exists() else ""
    raise AssertionError(f"timed out after {timeout} s waiting for {what}\n{tail}")


def recordings(app) -> dict[int, Recording]:
    with app.extensions["receiver.db"].new_session() as session:
        return {r.call_id: r for r in session.scalars(sa.select(Recording))}


def post_call(hooks, record) -> int:
    response = hooks.post(record)
    assert response.status_code == 200, response.get_json()
    return int(response.get_json()["events"][0])


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def test_the_worker_downloads_ok_slow_flaky_and_expired_recordings(
    queue, app, hooks, stub, start_worker, tmp_path
):
    stub.slow_seconds = 1.5
    stub.throttle = 1
    stub.recordings = [recording_row(stub, "fresh", "918919520000", "918867130000", "2021-04-09 16:27:58")]
    worker = start_worker()
    calls = {
        kind: post_call(hooks, voice_record(stub, kind, f"{kind}-call"))
        for kind in ("slow", "ok", "flaky", "expired")
    }

    def all_done() -> bool:
        return all(
            r.state in (RecordingState.stored, RecordingState.failed) for r in recordings(app).values()
        )

    wait_for("every recording stored", all_done, log=worker.log)
    rows = recordings(app)
    expected = {
        "ok": stub.audio_for("/audio/ok/ok-call.mp3"),
        "slow": stub.audio_for("/audio/slow/slow-call.mp3"),
        "flaky": stub.audio_for("/audio/flaky/flaky-call.mp3"),
        "expired": stub.audio_for("/audio/fresh/fresh"),
    }
    for kind, body in expected.items():
        row = rows[calls[kind]]
        assert (row.state, row.sha256, row.size_bytes) == (RecordingState.stored, sha(body), len(body)), kind
    assert rows[calls["flaky"]].attempts == 3
    assert rows[calls["ok"]].stored_at < rows[calls["slow"]].stored_at  # the slow one held up nobody
    assert stub.hits["/audio/expired/expired-call.mp3"] == 1
    assert get_jobs(app).huey.pending_count() == 0


def test_a_worker_killed_mid_download_leaves_a_recording_that_ends_stored_once_and_intact(
    app, hooks, stub, start_worker, tmp_path
):
    stub.audio_size = 200_000
    stub.slow_seconds = 3.0
    path = "/audio/slow/killed.mp3"
    first = start_worker()
    call_id = post_call(hooks, voice_record(stub, "slow", "killed"))
    wait_for("the download to start", lambda: stub.bytes_sent[path] > 0, log=first.log)
    first.kill()
    killed = recordings(app)[call_id]
    assert killed.state == RecordingState.downloading and killed.locked_until is not None

    second = start_worker()
    stored = wait_for(
        "the recording to be stored",
        lambda: (r := recordings(app)[call_id]).state == RecordingState.stored and r,
        log=second.log,
    )
    body = stub.audio_for(path)
    assert (stored.sha256, stored.size_bytes, stored.attempts) == (sha(body), len(body), 2)
    assert "taken back by the sweep" in stored.last_error
    root = Path(app.config["RECORDINGS_DIR"])
    files = [p for p in root.rglob("*") if p.is_file() and ".tmp" not in p.parts]
    assert [p.read_bytes() == body for p in files] == [True]
    assert stub.hits[path] == 2


def test_a_recording_whose_job_was_lost_is_found_by_the_sweep(app, hooks, stub, start_worker):
    call_id = post_call(hooks, voice_record(stub, "ok", "lost"))
    huey = get_jobs(app).huey
    assert huey.pending_count() == 1
    huey.flush()  # the job is lost: the queue emptied, the row still pending
    assert huey.pending_count() == 0

    worker = start_worker()
    stored = wait_for(
        "the sweep to find the recording",
        lambda: (r := recordings(app)[call_id]).state == RecordingState.stored and r,
        log=worker.log,
    )
    assert stored.sha256 == sha(stub.audio_for("/audio/ok/lost.mp3"))
    assert stored.attempts == 1
