"""/metrics: counters in process, gauges from the database, the token, and several gunicorn workers."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
from prometheus_client.mmap_dict import MmapedDict
from prometheus_client.parser import text_string_to_metric_families

from receiver.models import RawState, Recording, RecordingState
from tests import factories
from tests.payloads import OBD, SMS_DLR, VMN_INBOUND, sms

ROOT = Path(__file__).resolve().parent.parent


def _samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    samples = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return samples


def _value(samples, name: str, **labels: str) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


def _scrape(client, **kwargs):
    response = client.get("/metrics", **kwargs)
    assert response.status_code == 200, response.data
    return _samples(response.get_data(as_text=True))


def test_ingest_outcomes_by_kind(client, hooks):
    before = _scrape(client)
    hooks.post(SMS_DLR)  # stored
    hooks.post(SMS_DLR)  # duplicate
    hooks.post(VMN_INBOUND)  # stored
    hooks.post(b"{broken", headers={"Content-Type": "application/json"})  # quarantined
    hooks.post({"event": "mystery:thing", "payload": {"id": "1"}})  # accepted (kind not understood)
    client.post("/hooks/portal/voice", json=OBD)  # rejected: no secret
    client.post("/hooks/nobody", json=SMS_DLR)  # rejected: unknown source
    after = _scrape(client)

    def delta(kind: str, outcome: str) -> float:
        name = "receiver_ingest_events_total"
        return _value(after, name, kind=kind, outcome=outcome) - _value(
            before, name, kind=kind, outcome=outcome
        )

    assert delta("sms-status", "stored") == 1
    assert delta("sms-status", "duplicate") == 1
    assert delta("inbound", "stored") == 1
    assert delta("unrecognised", "quarantined") == 1
    assert delta("voice", "rejected") == 1
    assert delta("unknown", "rejected") == 1
    accepted = sum(
        value - before.get(key, 0.0)
        for key, value in after.items()
        if key[0] == "receiver_ingest_events_total" and ("outcome", "accepted") in key[1]
    )
    assert accepted == 1


def test_requests_by_endpoint_and_status(client, api):
    before = _scrape(client)
    api("/api/v1/messages")
    api("/api/v1/messages/nope")
    client.get("/api/v1/messages")
    after = _scrape(client)
    name = "receiver_http_requests_total"
    for rule, status in (
        ("/api/v1/messages", "200"),
        ("/api/v1/messages/<path:message_id>", "404"),
        ("/api/v1/messages", "401"),
    ):
        labels = {"endpoint": rule, "method": "GET", "status": status}
        assert _value(after, name, **labels) - _value(before, name, **labels) == 1, (rule, status)
    assert _value(after, "receiver_http_request_duration_seconds_count", endpoint="/api/v1/messages") >= 2


def test_recording_and_replay_gauges_come_from_the_database(app, client, hooks):
    call_id = hooks.post(dict(OBD, recording_url=None)).get_json()["events"][0]
    made = datetime.now(UTC) - timedelta(minutes=10)
    with app.extensions["receiver.db"].new_session() as session, session.begin():
        for n, state in enumerate([RecordingState.pending, RecordingState.retrying, RecordingState.stored]):
            session.add(
                Recording(
                    call_id=call_id,
                    url=f"https://example.test/{n}.mp3",
                    url_sha256=f"{n}" * 64,
                    url_expires_at=made + timedelta(hours=2),
                    state=state,
                    created_at=made + timedelta(minutes=n),
                    updated_at=made,
                )
            )
    factories.raw_event(app, state=RawState.quarantined)
    factories.raw_event(app, state=RawState.pending)
    factories.raw_event(app, state=RawState.pending)
    samples = _scrape(client)
    assert _value(samples, "receiver_recordings", state="pending") == 1
    assert _value(samples, "receiver_recordings", state="retrying") == 1
    assert _value(samples, "receiver_recordings", state="stored") == 1
    assert _value(samples, "receiver_recordings", state="failed") == 0
    assert 590 < _value(samples, "receiver_recording_oldest_pending_seconds") < 3600
    assert _value(samples, "receiver_raw_events_waiting", state="pending") == 2
    assert _value(samples, "receiver_raw_events_waiting", state="quarantined") == 1


def test_no_waiting_recording_is_age_zero(client):
    assert _value(_scrape(client), "receiver_recording_oldest_pending_seconds") == 0


@pytest.mark.parametrize("token", ["metrics-t0ken"])
def test_metrics_token(settings, token):
    from receiver import create_app

    settings["METRICS_TOKEN"] = token
    client = create_app(settings).test_client()
    assert client.get("/metrics").status_code == 401
    assert client.get("/metrics", headers={"Authorization": "Bearer wrong"}).status_code == 401
    assert client.get("/metrics", headers={"Authorization": "Bearer nön-ascii"}).status_code == 401
    response = client.get("/metrics", headers={"Authorization": f"Bearer {token}"})
    assert response.status_code == 200
    assert response.headers["Content-Type"].startswith("text/plain")
    assert "receiver_http_requests_total" in response.get_data(as_text=True)


def test_metrics_are_public_without_token(client):
    assert client.get("/metrics").status_code == 200


# -- several gunicorn workers ------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def gunicorn(migrated, tmp_path):
    """gunicorn with two workers on 127.0.0.1, sharing a multiprocess metrics folder."""
    folder = tmp_path / "prometheus"
    folder.mkdir()
    for pid in (999_999, os.getpid()):  # a process long gone, and one alive (as a worker would be)
        MmapedDict(str(folder / f"counter_{pid}.db")).close()
    port = _free_port()
    env = {
        **os.environ,
        "DATABASE_URL": migrated,
        "PROMETHEUS_MULTIPROC_DIR": str(folder),
        "VAR_DIR": str(tmp_path / "var"),
        "REDIS_URL": "",
        "METRICS_TOKEN": "",
        "WEB_CONCURRENCY": "2",
        "ACCESS_LOG": "",
    }
    process = subprocess.Popen(
        [
            str(Path(sys.executable).parent / "gunicorn"),
            "--config",
            str(ROOT / "receiver" / "gunicorn_conf.py"),
            "--bind",
            f"127.0.0.1:{port}",
            "wsgi:app",
        ],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                if httpx.get(f"{base}/healthz", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert process.poll() is None, "gunicorn exited"
            assert time.monotonic() < deadline, "gunicorn did not start"
            time.sleep(0.2)
        yield base, folder
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)


@pytest.mark.slow
def test_counters_add_up_across_gunicorn_workers(gunicorn):
    base, folder = gunicorn
    assert not (folder / "counter_999999.db").exists(), "the master kept a dead process's samples"
    assert (folder / f"counter_{os.getpid()}.db").exists(), "the master dropped a live process's samples"

    def hit(_: int) -> int:
        with httpx.Client(timeout=10) as client:
            return client.get(f"{base}/api/v1/openapi.json").status_code

    with ThreadPoolExecutor(8) as pool:
        assert set(pool.map(hit, range(60))) == {200}
    writers = {path.name for path in folder.glob("counter_*.db")}
    assert len(writers) >= 2, f"one worker answered everything: {writers}"
    # Whichever worker answers the scrape, it reports every worker's requests.
    for _ in range(6):
        samples = _samples(httpx.get(f"{base}/metrics", timeout=10).text)
        labels = {"endpoint": "/api/v1/openapi.json", "method": "GET", "status": "200"}
        assert _value(samples, "receiver_http_requests_total", **labels) == 60
        assert _value(samples, "receiver_recordings", state="pending") == 0


@pytest.mark.slow
def test_webhooks_through_gunicorn_are_counted_once(gunicorn, app, source_secret):
    base, _ = gunicorn
    headers = {"Authorization": f"Bearer {source_secret}"}

    def post(n: int) -> int:
        with httpx.Client(timeout=10) as client:
            return client.post(f"{base}/hooks/portal", json=sms(id=f"gw:{n}"), headers=headers).status_code

    with ThreadPoolExecutor(6) as pool:
        assert set(pool.map(post, range(30))) == {200}
    samples = _samples(httpx.get(f"{base}/metrics", timeout=10).text)
    assert _value(samples, "receiver_ingest_events_total", kind="sms-status", outcome="stored") == 30


def test_latency_kept_in_memory_is_written_as_observing_would():
    from prometheus_client import CollectorRegistry, Histogram

    from receiver import metrics

    values = [0.0005, 0.001, 0.003, 0.05, 0.05, 0.7, 3.0, 9.0]
    direct = Histogram(
        "direct", "", ["endpoint"], buckets=metrics._LATENCY_BUCKETS, registry=CollectorRegistry()
    )
    pending = metrics.Pending()
    for value in values:
        direct.labels(endpoint="/flush-test").observe(value)
        pending.observe_latency("/flush-test", value)
    before = {
        s.labels.get("le"): s.value
        for s in metrics.LATENCY.collect()[0].samples
        if s.labels["endpoint"] == "/flush-test"
    }
    assert before == {}  # nothing written before the flush

    pending.flush()

    def samples(histogram: Histogram) -> dict[tuple[str, str | None], float]:
        return {
            (s.name.rsplit("_", 1)[-1], s.labels.get("le")): s.value
            for s in histogram.collect()[0].samples
            if s.labels["endpoint"] == "/flush-test" and not s.name.endswith("_created")
        }

    assert samples(metrics.LATENCY) == samples(direct)
