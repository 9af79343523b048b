"""A provider-like sender, a recordings host and slow clients, all on 127.0.0.1.

The sender retries every answer that is not a 2xx (and every timeout or refused connection) as
the platform does, only sooner (1 s instead of 30 minutes), until its deadline; it remembers
every answer it saw, so a run can say what a client saw during a fault.
"""

from __future__ import annotations

import http.server
import json
import queue
import socket
import threading
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import httpx

# An MP3 (ID3 tag) of 64 KiB: receiver checks that a recording's first bytes are audio.
AUDIO = b"ID3\x03\x00\x00\x00\x00\x00\x0f" + bytes(range(256)) * 255 + b"\x00" * 246


@dataclass
class Event:
    key: str  # the message id, or the call's mid
    kind: str  # "sms" or "voice"
    body: dict[str, Any]
    acked_at: float | None = None
    attempts: int = 0


@dataclass
class Answers:
    """Every answer seen, with the time it came and how long it took."""

    seen: list[tuple[float, str, float]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def add(self, outcome: str, started: float) -> None:
        now = time.monotonic()
        with self.lock:
            self.seen.append((now, outcome, now - started))

    def between(self, start: float, end: float) -> dict[str, Any]:
        with self.lock:
            window = [(outcome, took) for at, outcome, took in self.seen if start <= at <= end]
        return {
            "answers": dict(Counter(outcome for outcome, _ in window)),
            "slowest_s": round(max((took for _, took in window), default=0.0), 3),
        }

    def first_ok_after(self, moment: float) -> float | None:
        with self.lock:
            times = [at for at, outcome, _ in self.seen if at >= moment and outcome.startswith("2")]
        return min(times) if times else None


def sms_event() -> Event:
    key = f"{uuid.uuid4()}:1"
    now = int(time.time())
    body = {
        "id": key,
        "mobile": "919845012345",
        "status": "DELIVRD",
        "credits": "1.0000",
        "units": 1,
        "submit_at": str(now - 5),
        "sent_at": str(now - 4),
        "deliv_at": str(now),
        "custom": "faults",
    }
    return Event(key, "sms", body)


def voice_event(recordings_url: str) -> Event:
    mid = f"fault-{uuid.uuid4()}"
    body = {
        "bridge": "918068280000",
        "from": "918919520000",
        "to": "918867130000",
        "source": "OBD",
        "mid": mid,
        "flow_id": 1,
        "start_at": time.strftime("%Y-%m-%d %H:%M:%S"),
        "end_at": time.strftime("%Y-%m-%d %H:%M:%S"),
        "duration": "12",
        "status": "ANSWER",
        "recording_url": f"{recordings_url}/rec/{mid}.mp3",
    }
    return Event(mid, "voice", body)


class Sender:
    """Sends events at a steady rate from a few threads, each retried until a 2xx or the deadline."""

    def __init__(self, url: str, secret: str, *, threads: int = 8, timeout: float = 10.0) -> None:
        self.url = url
        self.headers = {"Authorization": f"Bearer {secret}", "Content-Type": "application/json"}
        self.timeout = timeout
        self.answers = Answers()
        self.events: list[Event] = []
        self._queue: queue.Queue[Event | None] = queue.Queue()
        self._deadline = float("inf")
        self._threads = [threading.Thread(target=self._run, daemon=True) for _ in range(threads)]
        for thread in self._threads:
            thread.start()

    def send(self, event: Event) -> None:
        self.events.append(event)
        self._queue.put(event)

    def _run(self) -> None:
        with httpx.Client(timeout=self.timeout) as client:
            while (event := self._queue.get()) is not None:
                while event.acked_at is None and time.monotonic() < self._deadline:
                    event.attempts += 1
                    started = time.monotonic()
                    try:
                        answer = client.post(self.url, headers=self.headers, content=json.dumps(event.body))
                        outcome = str(answer.status_code)
                    except httpx.TimeoutException:
                        outcome = "timeout"
                    except httpx.TransportError:
                        outcome = "no connection"
                    self.answers.add(outcome, started)
                    if outcome.startswith("2"):
                        event.acked_at = time.monotonic()
                    else:
                        time.sleep(1.0)

    def finish(self, deadline_s: float) -> None:
        """Let every event be retried until acknowledged or `deadline_s` from now; then stop."""
        self._deadline = time.monotonic() + deadline_s
        for _ in self._threads:
            self._queue.put(None)
        for thread in self._threads:
            thread.join(timeout=deadline_s + self.timeout + 5)


def pace(sender: Sender, make: Any, rate: float, seconds: float) -> None:
    """Hand `rate` events a second to the sender for `seconds`."""
    start = time.monotonic()
    sent = 0
    while (elapsed := time.monotonic() - start) < seconds:
        due = int(elapsed * rate) + 1
        while sent < due:
            sender.send(make())
            sent += 1
        time.sleep(0.02)


class RecordingsHost:
    """Serves an MP3 for any /rec/<name>.mp3, optionally trickled over `seconds`."""

    def __init__(self, seconds: float = 0.0) -> None:
        host = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 (http.server's name)
                host.requests += 1
                self.send_response(200)
                self.send_header("Content-Type", "audio/mpeg")
                self.send_header("Content-Length", str(len(AUDIO)))
                self.end_headers()
                chunks = 16
                step = len(AUDIO) // chunks
                try:
                    for i in range(chunks):
                        self.wfile.write(AUDIO[i * step : (i + 1) * step if i < chunks - 1 else None])
                        if host.seconds:
                            time.sleep(host.seconds / chunks)
                except OSError:
                    pass

            def log_message(self, *args: Any) -> None:
                pass

        self.seconds = seconds
        self.requests = 0
        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


class Slowloris:
    """Connections that send part of a request and then one byte every few seconds."""

    def __init__(self, port: int, path: str, count: int, *, body: bool) -> None:
        self.sockets: list[socket.socket] = []
        # Classic slowloris: one more header line now and then; or one more body byte.
        self._drip = b"1" if body else b"X-a: b\r\n"
        self._stop = threading.Event()
        for i in range(count):
            sock = socket.create_connection(("127.0.0.1", port), timeout=5)
            if body:  # headers complete, a wrong secret, a body announced and never sent
                head = (
                    f"POST {path} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer wrong-{i}\r\n"
                    "Content-Type: application/json\r\nContent-Length: 1000\r\n\r\n{"
                )
            else:  # the request line and one header, then nothing
                head = f"POST {path} HTTP/1.1\r\nHost: x\r\n"
            sock.sendall(head.encode())
            self.sockets.append(sock)
        self._thread = threading.Thread(target=self._trickle, daemon=True)
        self._thread.start()

    def _trickle(self) -> None:
        while not self._stop.wait(5.0):
            for sock in list(self.sockets):
                try:
                    sock.send(self._drip)
                except OSError:
                    pass  # closed by the server: counted at the end

    def closed_by_server(self) -> int:
        """How many of the connections the server has closed (an end of stream or a reset)."""
        closed = 0
        for sock in self.sockets:
            sock.setblocking(False)
            try:
                while chunk := sock.recv(65536):  # an answer (408) may come before the end
                    del chunk
                closed += 1
            except BlockingIOError:
                pass  # still open, nothing more to read
            except OSError:
                closed += 1
        return closed

    def close(self) -> None:
        self._stop.set()
        for sock in self.sockets:
            sock.close()
