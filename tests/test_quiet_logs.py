"""Logs while a dependency is down: quiet and rate-limited, and never a secret in the web's."""

from __future__ import annotations

import logging
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from receiver.server import redact
from tests.provider_stub import ProviderStub, voice_record, worker_env


def _closed_port() -> int:
    """A port on 127.0.0.1 where nothing listens: a Redis that is down (connection refused)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.mark.parametrize(
    ("logged", "kept"),
    [
        ("Invalid HTTP request line: 'GET /hooks/p?secret=S1 HTTP/1.1'", "?secret=REDACTED HTTP/1.1"),
        ("GET /hooks/p?a=1&token=S1&b=2", "?a=1&token=REDACTED&b=2"),
        ("GET /x?access_token=S1#frag", "?access_token=REDACTED#frag"),
        ("GET /x?secr%65t=S1", "?secr%65t=REDACTED"),  # the name as the app decodes it
        ("Invalid HTTP Header: 'Authorization Bearer S1'", "'Authorization REDACTED'"),
        ("Invalid HTTP Header: 'X-Api-Key: S1'", "'X-Api-Key: REDACTED'"),
        ("bearer S1, more", "bearer REDACTED, more"),
    ],
)
def test_redact_replaces_credential_values_only(logged, kept):
    redacted = redact(logged)

    assert "S1" not in redacted
    assert kept in redacted


def test_redact_leaves_other_parameters_alone():
    logged = "GET /hooks/p?secretive=1&tokens=2 HTTP/1.1"
    assert redact(logged) == logged


@pytest.fixture
def stub():
    with ProviderStub() as server:
        yield server


@pytest.fixture
def settings(settings, stub):
    settings.update(REDIS_URL=f"redis://127.0.0.1:{_closed_port()}/0")
    return settings


def test_the_web_says_once_that_the_queue_is_down_not_once_a_webhook(hooks, stub, caplog):
    with caplog.at_level(logging.WARNING, logger="receiver.recordings.queue"):
        for number in range(5):
            response = hooks.post(voice_record(stub, "ok", f"queue-down-{number}"))
            assert response.status_code == 200  # stored; the sweep will queue the download

    records = [r for r in caplog.records if r.name == "receiver.recordings.queue"]
    assert len(records) == 1
    assert records[0].exc_info is None  # one line, no traceback
    assert "ConnectionError" in records[0].getMessage()


@pytest.mark.slow
def test_the_worker_does_not_log_a_traceback_a_poll_while_the_queue_is_down(settings, app, tmp_path):
    log = tmp_path / "worker.log"
    env = worker_env(settings, WORKER_CONCURRENCY=8)
    with open(log, "ab") as out:
        worker = subprocess.Popen(
            [str(Path(sys.executable).parent / "receiver"), "worker"], env=env, stdout=out, stderr=out
        )
    try:
        deadline = time.monotonic() + 30
        while "Error reading from queue" not in log.read_text():  # started, and found Redis down
            assert time.monotonic() < deadline, log.read_text()[-3000:]
            time.sleep(0.1)
        time.sleep(3)  # eight polling threads and the scheduler, each failing many times meanwhile
    finally:
        worker.terminate()
        worker.wait(timeout=30)

    text = log.read_text()
    assert text.count("Error reading from queue") == 1
    assert text.count("Traceback") <= 6  # one a cause (chained: the error and what raised it)
