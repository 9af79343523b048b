"""Identical requests at the same instant end in one row: the unique constraints decide."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest
from werkzeug.serving import make_server

from tests.conftest import row_counts
from tests.payloads import OBD, channel_status, sms


@pytest.fixture
def server(app) -> Iterator[str]:
    """The app on a real threaded HTTP server on 127.0.0.1."""
    httpd = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_port}"
    httpd.shutdown()
    thread.join(timeout=10)


def _burst(url: str, secret: str, payloads: list[object]) -> list[httpx.Response]:
    barrier = threading.Barrier(len(payloads), timeout=10)

    def send(payload: object) -> httpx.Response:
        with httpx.Client(timeout=30) as client:
            barrier.wait()
            return client.post(url, json=payload, headers={"Authorization": f"Bearer {secret}"})

    with ThreadPoolExecutor(len(payloads)) as pool:
        return list(pool.map(send, payloads))


def test_identical_requests_at_once_store_one_row(server, source_secret, app):
    answers = _burst(f"{server}/hooks/portal", source_secret, [sms(id="race:1")] * 8)
    assert [a.status_code for a in answers] == [200] * 8
    messages = sorted(a.json()["message"] for a in answers)
    assert messages == ["duplicate"] * 7 + ["stored"]
    counts = row_counts(app)
    assert (counts["raw_events"], counts["messages"], counts["message_events"]) == (1, 1, 1)


def test_identical_calls_at_once_store_one_call_and_recording(server, source_secret, app):
    answers = _burst(f"{server}/hooks/portal", source_secret, [dict(OBD, mid=f"m{i % 2}") for i in range(8)])
    assert {a.status_code for a in answers} == {200}
    counts = row_counts(app)
    assert (counts["calls"], counts["recordings"]) == (2, 2)
    assert len({a.json()["events"][0] for a in answers}) == 2


def test_different_statuses_of_one_new_message_at_once(server, source_secret, app, api):
    reports = [
        channel_status("whatsapp", status, "race:wa", f"2024-01-01T10:0{minute}:00Z")
        for minute, status in enumerate(["queued", "sent", "delivered", "read"])
    ]
    answers = _burst(f"{server}/hooks/portal", source_secret, reports * 2)
    assert {a.status_code for a in answers} == {200}
    message = api("/api/v1/messages/race:wa").get_json()
    assert message["status"] == "read"
    assert sorted(e["status"] for e in message["events"]) == ["accepted", "delivered", "read", "sent"]
    assert row_counts(app)["messages"] == 1
