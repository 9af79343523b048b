"""As a new user would: `receiver run` (gunicorn and worker as real processes), a source added
with the command line, every documented payload posted over HTTP, everything read back."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests import payloads
from tests.processes import stop_group, wait_ready

pytestmark = pytest.mark.slow

BIN = Path(sys.executable).parent


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def service(migrated: str, tmp_path: Path) -> Iterator[tuple[str, dict[str, str]]]:
    port = _free_port()
    env = {
        **os.environ,
        "DATABASE_URL": migrated,
        "VAR_DIR": str(tmp_path / "var"),
        "RECORDINGS_DIR": str(tmp_path / "recordings"),
        "WEB_CONCURRENCY": "2",
        "ACCESS_LOG": "",
        "PUBLIC_URL": f"http://127.0.0.1:{port}",
        "RECEIVER_ENV_FILE": str(tmp_path / "no.env"),
    }
    env.pop("REDIS_URL", None)
    process = subprocess.Popen(
        [str(BIN / "receiver"), "run", "--bind", f"127.0.0.1:{port}"],
        env=env,
        cwd=tmp_path,
        start_new_session=True,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        wait_ready(process, f"{base}/readyz", lambda: "receiver run exited")
        yield base, env
    finally:
        stop_group(process)
        from tests.conftest import empty_tables

        empty_tables(migrated)


def _command(env: dict[str, str], *args: str) -> str:
    result = subprocess.run(
        [str(BIN / "receiver"), *args], env=env, capture_output=True, text=True, timeout=60, check=True
    )
    return result.stdout.strip().splitlines()[-1]


def test_a_new_user_stores_and_reads_every_documented_payload(service):
    base, env = service
    secret = _command(env, "sources", "add", "portal")
    key = _command(env, "apikeys", "create", "support")
    hook = {"Authorization": f"Bearer {secret}"}
    read = {"Authorization": f"Bearer {key}"}
    examples = [
        payloads.SMS_DLR,
        payloads.VMN_INBOUND,
        payloads.WHATSAPP_STATUS,
        payloads.WHATSAPP_INBOUND,
        payloads.RCS_INBOUND_MEDIA,
        payloads.RCS_INBOUND_TEXT,
        payloads.UNSUBSCRIPTION,
        dict(payloads.OBD, recording_url=""),
        dict(payloads.C2C, recording_url=""),
    ]
    with httpx.Client(base_url=base, timeout=10) as client:
        for example in examples:
            answer = client.post("/hooks/portal", json=example, headers=hook)
            assert answer.status_code == 200, (example, answer.text)
            assert answer.json()["message"] == "stored"
            again = client.post("/hooks/portal", json=example, headers=hook)
            assert again.json()["message"] == "duplicate"
        message = client.get(f"/api/v1/messages/{payloads.SMS_DLR['id']}", headers=read).json()
        assert message["status"] == "delivered"
        assert len(message["events"]) == 1
        whatsapp = client.get(f"/api/v1/messages/{payloads.WHATSAPP_STATUS['payload']['id']}", headers=read)
        assert whatsapp.json()["channel"] == "whatsapp"
        assert client.post("/hooks/portal", json=payloads.SMS_DLR).status_code == 401
        assert client.get("/healthz").status_code == 200
        metrics = client.get("/metrics").text
        assert "receiver_ingest_events_total" in metrics
