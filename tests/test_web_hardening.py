"""The web process as the Procfile runs it (gunicorn with receiver/gunicorn_conf.py) against the
internet's worst: slow clients, malformed requests, and a database or job queue that hangs.

Each test starts a real gunicorn on a free 127.0.0.1 port against the test database; hung
dependencies are played by a TCP proxy in front of the shared servers (tests/tcp_proxy.py),
paused and resumed, never by stopping those servers.
"""

from __future__ import annotations

import json
import secrets
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis
import sqlalchemy as sa

from receiver.models import Recording, RecordingState
from tests.payloads import sms
from tests.provider_stub import ProviderStub, voice_record, worker_env
from tests.tcp_proxy import PausableProxy

pytestmark = pytest.mark.slow

BIN = Path(sys.executable).parent
CONF = Path(__file__).resolve().parents[1] / "receiver" / "gunicorn_conf.py"
REDIS_PORT = 6379


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Web:
    """A gunicorn process started as the Procfile's `web` line starts it."""

    def __init__(self, env: dict[str, str], cwd: Path) -> None:
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = cwd / "web.log"
        with open(self.log, "ab") as out:
            self.process = subprocess.Popen(
                [str(BIN / "gunicorn"), "--config", str(CONF), f"--bind=127.0.0.1:{self.port}", "wsgi:app"],
                env=env,
                cwd=Path(__file__).resolve().parents[1],
                stdout=out,
                stderr=out,
            )
        deadline = time.monotonic() + 60
        while True:
            assert self.process.poll() is None, f"gunicorn exited\n{self.log.read_text()[-3000:]}"
            try:
                if httpx.get(f"{self.url}/healthz", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, "gunicorn did not start"
            time.sleep(0.2)

    def raw(self, data: bytes, timeout: float = 5.0) -> bytes:
        """Send bytes as they are; return everything answered until the server closes."""
        with socket.create_connection(("127.0.0.1", self.port), timeout=timeout) as sock:
            sock.sendall(data)
            return _read_all(sock)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)


def _read_all(sock: socket.socket) -> bytes:
    answer = b""
    while True:
        try:
            chunk = sock.recv(65536)
        except ConnectionResetError:  # closed with our unread request bytes still in its buffer
            return answer
        if not chunk:
            return answer
        answer += chunk


def _json_answer(answer: bytes) -> tuple[int, dict[str, str], Any]:
    head, _, body = answer.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = dict(line.split(": ", 1) for line in lines[1:])
    return int(lines[0].split()[1]), {k.lower(): v for k, v in headers.items()}, json.loads(body)


@pytest.fixture
def start_web(settings: dict[str, Any], tmp_path: Path) -> Iterator[Callable[..., Web]]:
    started: list[Web] = []

    def start(**extra: Any) -> Web:
        env = worker_env(settings, ACCESS_LOG="", **extra)
        env.setdefault("WEB_CONCURRENCY", "2")
        web = Web(env, tmp_path)
        started.append(web)
        return web

    yield start
    for web in started:
        web.stop()


@pytest.fixture
def hook_headers(source_secret: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {source_secret}"}


def test_fifty_slow_clients_do_not_hold_the_service(app, start_web, hook_headers):
    """Headers trickled a line at a time, or a body trickled a byte at a time after its
    Content-Length (with the right secret, so that the app reads it): a normal webhook is still
    answered while 50 such connections are open."""
    web = start_web()
    authorization = f"Authorization: {hook_headers['Authorization']}\r\n".encode()
    slow: list[tuple[socket.socket, bytes]] = []
    stop = threading.Event()
    try:
        for number in range(50):
            sock = socket.create_connection(("127.0.0.1", web.port), timeout=5)
            if number % 2:
                sock.sendall(b"POST /hooks/portal HTTP/1.1\r\nHost: receiver\r\n")
                slow.append((sock, b"X-Slow: 1\r\n"))
            else:
                sock.sendall(
                    b"POST /hooks/portal HTTP/1.1\r\n" + authorization + b"Content-Length: 1000\r\n\r\n{"
                )
                slow.append((sock, b" "))

        def trickle() -> None:
            while not stop.wait(0.5):
                for sock, more in slow:
                    try:
                        sock.sendall(more)
                    except OSError:
                        pass

        threading.Thread(target=trickle, daemon=True).start()
        time.sleep(1)

        answer = httpx.post(
            f"{web.url}/hooks/portal", json=sms(id="slowloris:1"), headers=hook_headers, timeout=5
        )

        assert answer.status_code == 200, answer.text
        assert answer.json()["message"] == "stored"
    finally:
        stop.set()
        for sock, _ in slow:
            sock.close()


def test_slow_clients_are_dropped_at_their_deadlines(app, start_web, hook_headers):
    """Headers not complete within gunicorn's keepalive (5 s): the connection is closed. A body
    not complete within WEB_BODY_TIMEOUT of its headers: 408 in JSON, then closed."""
    web = start_web(WEB_BODY_TIMEOUT="2")
    headers_only = socket.create_connection(("127.0.0.1", web.port), timeout=20)
    headers_only.sendall(b"POST /hooks/portal HTTP/1.1\r\nHost: receiver\r\n")
    body = socket.create_connection(("127.0.0.1", web.port), timeout=20)
    body.sendall(
        f"POST /hooks/portal HTTP/1.1\r\nAuthorization: {hook_headers['Authorization']}\r\n".encode()
        + b"Content-Length: 1000\r\n\r\n{"
    )
    with headers_only, body:
        for _ in range(4):  # still trickling past the body's deadline
            time.sleep(0.5)
            body.sendall(b" ")

        status, headers, document = _json_answer(_read_all(body))
        assert status == 408
        assert headers["connection"] == "close"
        assert document["status"] == "ERROR" and document["code"] == 408

        assert _read_all(headers_only) == b""  # closed without a word


def test_a_wrong_authorization_is_refused_before_the_body_is_read(app, start_web, source_secret):
    web = start_web()
    with socket.create_connection(("127.0.0.1", web.port), timeout=5) as sock:
        sock.sendall(
            b"POST /hooks/portal HTTP/1.1\r\nHost: receiver\r\nAuthorization: Bearer wrong-secret\r\n"
            b"Content-Type: application/json\r\nContent-Length: 1000\r\n\r\n{"
        )
        status, headers, document = _json_answer(_read_all(sock))  # 999 bytes never sent

    assert status == 401
    assert headers["connection"] == "close"
    assert document == {"status": "ERROR", "code": 401, "message": "missing or invalid secret"}


@pytest.mark.parametrize(
    ("request_bytes", "code"),
    [
        (b"GET /hooks/portal?secret=XYZ\x01 HTTP/1.1\r\nHost: receiver\r\n\r\n", 400),
        (b"GET /" + b"a" * 5000 + b" HTTP/1.1\r\nHost: receiver\r\n\r\n", 414),
        (b"GET / HTTP/1.1\r\nHost: receiver\r\nX-Big: " + b"a" * 9000 + b"\r\n\r\n", 431),
    ],
    ids=["400", "414", "431"],
)
def test_the_http_servers_own_errors_are_json(app, start_web, request_bytes, code):
    web = start_web()

    status, headers, document = _json_answer(web.raw(request_bytes))

    assert status == code
    assert headers["content-type"] == "application/json"
    assert document["status"] == "ERROR" and document["code"] == code and document["message"]


@pytest.mark.parametrize("worker", ["gevent", "gthread"])
@pytest.mark.parametrize(
    "chunks",
    [b"zz\r\n{}\r\n0\r\n\r\n", b"-2\r\n{}\r\n0\r\n\r\n", b"2\r\n{}XX0\r\n\r\n"],
    ids=["bad-size", "negative-size", "no-terminator"],
)
def test_a_chunked_body_with_broken_framing_is_a_400_and_nothing_after_it_is_read(
    app, start_web, hook_headers, worker, chunks
):
    """Never a 500; and the connection is closed, so that bytes after the broken body are never
    taken for a request of their own (request smuggling)."""
    web = start_web(WEB_WORKER_CLASS=worker)
    answer = web.raw(
        b"POST /hooks/portal HTTP/1.1\r\nHost: receiver\r\n"
        + f"Authorization: {hook_headers['Authorization']}\r\n".encode()
        + b"Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n"
        + chunks
        + b"GET /healthz HTTP/1.1\r\nHost: receiver\r\n\r\n"
    )

    assert answer.count(b"HTTP/1.1 ") == 1, answer
    status, headers, document = _json_answer(answer)
    assert status == 400
    assert headers["connection"] == "close"
    assert document["status"] == "ERROR" and document["code"] == 400 and "malformed" in document["message"]
    web.stop()
    assert "Traceback" not in web.log.read_text()


def test_a_malformed_request_line_leaves_its_secret_out_of_the_error_log(app, start_web):
    web = start_web()
    malformed = [
        b"GET /hooks/portal?secret=XYZ-in-the-query\x01 HTTP/1.1\r\nHost: receiver\r\n\r\n",
        b"GET /hooks/portal?a=1&access_token=XYZ-access HTTP/1.1 junk\r\n\r\n",
        b"POST /hooks/portal HTTP/1.1\r\nAuthorization Bearer XYZ-in-a-header\r\n\r\n",
    ]
    for request_bytes in malformed:
        assert web.raw(request_bytes).startswith(b"HTTP/1.1 400")
    web.stop()

    log = web.log.read_text()
    assert "Invalid" in log  # gunicorn did log each refusal
    assert "XYZ" not in log


@pytest.fixture
def postgres_url(migrated: str) -> str:
    if not migrated.startswith("postgresql"):
        pytest.skip("a hung database server needs PostgreSQL (SQLite is a file in the process)")
    return migrated


def test_a_hung_database_gives_503_with_retry_after_then_recovers(app, start_web, hook_headers, postgres_url):
    """Hung at each place a webhook waits: a statement on a connection in steady use, a new
    connection, and the ping of a connection idle for a while."""
    url = sa.make_url(postgres_url)
    with PausableProxy(url.port or 5432) as proxy, httpx.Client(timeout=8) as client:
        # 8 s: far more than the 4 s deadline, so a hang fails the test rather than stalling it.
        behind_proxy = url.set(host="127.0.0.1", port=proxy.port).render_as_string(hide_password=False)
        web = start_web(DATABASE_URL=behind_proxy, WEB_CONCURRENCY="1")
        hook = f"{web.url}/hooks/portal"

        def webhook(number: int) -> httpx.Response:
            return client.post(hook, json=sms(id=f"hung:{number}"), headers=hook_headers)

        def unavailable(number: int) -> None:
            answer = webhook(number)
            assert answer.status_code == 503, answer.text
            assert answer.headers["Retry-After"]
            assert answer.json()["status"] == "ERROR"

        assert webhook(1).status_code == 200
        proxy.pause()
        unavailable(2)  # its statement gets no answer
        assert client.get(f"{web.url}/healthz").status_code == 200  # the worker serves meanwhile
        unavailable(3)  # the connection was dropped: a new one gets no answer

        proxy.resume()
        _recovered(webhook, 4)
        time.sleep(2.5)  # the pooled connection is idle now: its next use pings it first
        proxy.pause()
        unavailable(5)

        proxy.resume()
        _recovered(webhook, 6)


def _recovered(webhook: Callable[[int], httpx.Response], number: int) -> None:
    deadline = time.monotonic() + 20
    while (answer := webhook(number)).status_code != 200 and time.monotonic() < deadline:
        time.sleep(0.5)
    assert answer.status_code == 200, answer.text
    assert answer.json()["message"] in ("stored", "duplicate")


@pytest.fixture
def stub() -> Iterator[ProviderStub]:
    with ProviderStub() as server:
        yield server


def test_a_hung_job_queue_does_not_hold_a_voice_webhook_and_the_sweep_downloads_later(
    app, settings, start_web, hook_headers, stub, tmp_path
):
    prefix = f"receivertest{secrets.token_hex(4)}"
    queue = redis.Redis(port=REDIS_PORT)
    try:
        with PausableProxy(REDIS_PORT) as proxy:
            web = start_web(REDIS_URL=f"redis://127.0.0.1:{proxy.port}/0", REDIS_PREFIX=prefix)
            answer = httpx.post(
                f"{web.url}/hooks/portal",
                json=voice_record(stub, "ok", "queued-call"),
                headers=hook_headers,
                timeout=5,
            )
            assert answer.status_code == 200, answer.text
            assert queue.llen(f"huey.redis.{prefix}") == 1  # gevent's web enqueues on Redis

            proxy.pause()

            answer = httpx.post(
                f"{web.url}/hooks/portal",
                json=voice_record(stub, "ok", "hung-queue-call"),
                headers=hook_headers,
                timeout=2,  # generous: the hand-over to the queue is given up after 0.4 s
            )
            assert answer.status_code == 200, answer.text
            web.stop()
            assert "could not hand 1 recording(s) to the worker" in web.log.read_text()

        env = worker_env(
            settings,
            REDIS_URL=f"redis://127.0.0.1:{REDIS_PORT}/0",
            REDIS_PREFIX=prefix,
            DOWNLOAD_ALLOW_PRIVATE=True,
            DOWNLOAD_ALLOW_HTTP=True,
            RECORDING_SWEEP_INTERVAL=0.5,
            RECORDING_REQUEUE_AFTER=1,
            WORKER_CONCURRENCY=2,
        )
        log = tmp_path / "worker.log"
        with open(log, "ab") as out:
            worker = subprocess.Popen([str(BIN / "receiver"), "worker"], env=env, stdout=out, stderr=out)
        try:
            deadline = time.monotonic() + 40
            while _recording_states(app) != [RecordingState.stored] * 2:
                assert time.monotonic() < deadline, log.read_text()[-3000:]
                time.sleep(0.2)
        finally:
            worker.terminate()
            worker.wait(timeout=30)
        assert "no job held, queued again" in log.read_text()
    finally:
        for key in queue.scan_iter(f"huey.*.{prefix}*"):
            queue.delete(key)


def _recording_states(app) -> list[RecordingState]:
    with app.extensions["receiver.db"].new_session() as session:
        return list(session.scalars(sa.select(Recording.state)))


def test_gunicorns_master_imports_none_of_the_apps_libraries():
    """gevent patches the standard library in each worker after the fork: a library the master
    imported before (SQLAlchemy's pool locks, redis-py's sockets) would keep blocking ones."""
    probe = (
        "import sys, receiver.server; "
        "print(sorted(m for m in ('flask', 'sqlalchemy', 'psycopg', 'redis', 'huey', 'httpx', 'receiver.db')"
        " if m in sys.modules))"
    )
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "[]"


def test_each_instance_has_its_control_socket_under_its_var_dir(start_web, settings, tmp_path):
    """gunicorn's default control socket is one per user (~/.gunicorn): a second instance of the
    same user took it over from the first."""
    home = tmp_path / "home"
    home.mkdir()
    start_web(HOME=str(home), XDG_RUNTIME_DIR="")
    ours = Path(settings["VAR_DIR"]) / "gunicorn.ctl"
    deadline = time.monotonic() + 20
    while not ours.is_socket() and time.monotonic() < deadline:
        time.sleep(0.2)
    assert ours.is_socket()
    assert not (home / ".gunicorn").exists()
