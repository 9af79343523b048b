"""A stand-in for the provider on 127.0.0.1: recording URLs and the recordings API (PROVIDER.md §4).

Recording URLs, by path:
- `/audio/ok/<name>`: the audio, at once.
- `/audio/slow/<name>`: the audio in small chunks with a pause between them (`slow_seconds` in all).
- `/audio/flaky/<name>`: 500 for the first two requests of each name, then the audio.
- `/audio/expired/<name>`: 403 with an "expired" S3-style body.
- `/audio/html/<name>`: 200 with an HTML page.
- `/audio/redirect/<name>?to=<url>`: 302 to `to`.
- `/audio/fresh/<name>`: the audio; what the recordings API hands out.

The recordings API, `GET /api/v2/voice/recordings`, needs `Authorization: Bearer <token>`; it
serves `recordings` (a list of dicts) `per_page` at a time with Laravel `links`/`meta`, answers
429 with Retry-After to the first `throttle` requests, and an HTML login page when `html_login`.
With `datetime[r.created_at]=Apr 07, 2019 - Apr 09, 2019` it serves only the rows created on
those days. Its `links` carry `?page=N` alone, as the provider's documented answers do: a client
that follows them as they are pages through every day's recordings.
"""

from __future__ import annotations

import hashlib
import json
import os
import ssl
import threading
import time
from collections import Counter
from datetime import datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit


def fake_audio(name: str, size: int = 64 * 1024) -> bytes:
    """Deterministic bytes that start like an MP3 file (an ID3 tag)."""
    seed = hashlib.sha256(name.encode()).digest()
    body = (seed * (size // len(seed) + 1))[: size - 10]
    return b"ID3\x04\x00\x00\x00\x00\x00\x00" + body


class ProviderStub(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, token: str = "provider-token", tls: ssl.SSLContext | None = None) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.tls = tls
        if tls is not None:  # HTTPS, reached as https://localhost:<port>
            self.socket = tls.wrap_socket(self.socket, server_side=True)
        self.token = token
        self.audio_size = 64 * 1024
        self.slow_seconds = 2.0
        self.per_page = 2
        self.throttle = 0
        self.retry_after = "1"
        self.html_login = False
        self.recordings: list[dict[str, Any]] = []
        self.hits: Counter[str] = Counter()
        self.api_requests: list[dict[str, Any]] = []
        self.bytes_sent: Counter[str] = Counter()
        self.lock = threading.Lock()
        self.thread = threading.Thread(target=self.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        host, port = self.server_address[:2]
        if self.tls is not None:
            return f"https://localhost:{port}"
        return f"http://{host}:{port}"

    def audio_for(self, path: str) -> bytes:
        return fake_audio(path.rsplit("/", 1)[-1], self.audio_size)

    def __enter__(self) -> ProviderStub:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.shutdown()
        self.server_close()


class _Handler(BaseHTTPRequestHandler):
    server: ProviderStub
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - quiet
        pass

    def do_GET(self) -> None:  # noqa: N802
        parts = urlsplit(self.path)
        with self.server.lock:
            self.server.hits[parts.path] += 1
            count = self.server.hits[parts.path]
        if parts.path.startswith("/api/v2/voice/recordings"):
            return self._recordings_api(parse_qs(parts.query))
        kind = parts.path.split("/")[2] if parts.path.startswith("/audio/") else ""
        if kind in ("ok", "fresh"):
            return self._audio(parts.path)
        if kind == "slow":
            return self._audio(parts.path, slow=True)
        if kind == "flaky":
            if count <= 2:
                return self._send(500, b'{"message": "internal error"}', "application/json")
            return self._audio(parts.path)
        if kind == "expired":
            body = b"<Error><Code>AccessDenied</Code><Message>Request has expired</Message></Error>"
            return self._send(403, body, "application/xml")
        if kind == "html":
            return self._send(200, b"<!doctype html><html><body>Not found</body></html>", "text/html")
        if kind == "redirect":
            target = parse_qs(parts.query)["to"][0]
            self.send_response(302)
            self.send_header("Location", target)
            self.send_header("Content-Length", "0")
            self.end_headers()
            return None
        return self._send(404, b"not found", "text/plain")

    def _send(
        self, status: int, body: bytes, content_type: str, headers: dict[str, str] | None = None
    ) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(body)

    def _audio(self, path: str, slow: bool = False) -> None:
        body = self.server.audio_for(path)
        self.send_response(200)
        self.send_header("Content-Type", "audio/mpeg")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if not slow:
            self.wfile.write(body)
            return
        pieces = 20
        step = len(body) // pieces + 1
        for start in range(0, len(body), step):
            try:
                self.wfile.write(body[start : start + step])
                self.wfile.flush()
            except (BrokenPipeError, ConnectionResetError):
                return
            with self.server.lock:
                self.server.bytes_sent[path] += len(body[start : start + step])
            time.sleep(self.server.slow_seconds / pieces)

    def _recordings_api(self, query: dict[str, list[str]]) -> None:
        server = self.server
        with server.lock:
            server.api_requests.append(
                {"query": query, "authorization": self.headers.get("Authorization"), "at": time.time()}
            )
            number = len(server.api_requests)
        if self.headers.get("Authorization") != f"Bearer {server.token}":
            return self._send(
                401, b'{"status": "ERROR", "code": 401, "message": "Unauthenticated."}', "application/json"
            )
        if server.html_login:
            page = b"<!DOCTYPE html><html><form action='https://portal.mobtexting.com/login'></form></html>"
            return self._send(200, page, "text/html; charset=UTF-8")
        if number <= server.throttle:
            body = b'{"status": "ERROR", "code": 429, "message": "Too Many Attempts."}'
            return self._send(429, body, "application/json", {"Retry-After": server.retry_after})
        rows = server.recordings
        days = query.get("datetime[r.created_at]")
        if days:
            first, last = (datetime.strptime(d.strip(), "%b %d, %Y").date() for d in days[0].split(" - "))
            rows = [r for r in rows if first <= datetime.fromisoformat(r["created_at"]).date() <= last]
        document = laravel_page(f"{server.url}/api/v2/voice/recordings", rows, query, server.per_page)
        return self._send(200, json.dumps(document).encode(), "application/json")


def laravel_page(url: str, rows: Any, query: dict[str, list[str]], per: int) -> dict[str, Any]:
    """A Laravel paginator's answer: `data`, and `links` that carry `?page=N` alone (no filters)."""
    page = int(query.get("page", ["1"])[0])
    last = max(1, -(-len(rows) // per))

    def link(number: int) -> str:
        return f"{url}?page={number}"

    return {
        "data": list(rows[(page - 1) * per : page * per]),
        "links": {
            "first": link(1),
            "last": link(last),
            "prev": link(page - 1) if page > 1 else None,
            "next": link(page + 1) if page < last else None,
        },
        "meta": {
            "current_page": page,
            "from": (page - 1) * per + 1,
            "last_page": last,
            "path": url,
            "per_page": per,
            "to": min(page * per, len(rows)),
            "total": len(rows),
        },
    }


def recording_row(
    stub: ProviderStub, name: str, call_from: str, call_to: str, created_at: str
) -> dict[str, Any]:
    """One item of the recordings API, as documented (`audio` a fresh URL on the stub)."""
    return {
        "id": abs(hash(name)) % 10**6,
        "call_from": call_from,
        "call_to": call_to,
        "audio": f"{stub.url}/audio/fresh/{name}?X-Amz-Expires=3600",
        "duration": "00:00:23",
        "agent": None,
        "created_at": created_at,
    }


def worker_env(settings: dict[str, Any], **extra: Any) -> dict[str, str]:
    """The environment of a `receiver worker` subprocess sharing a test app's database and queue."""
    env = {k: v for k, v in os.environ.items() if k not in ("REDIS_URL", "DATABASE_URL")}
    env["RECEIVER_ENV_FILE"] = os.devnull
    for name, value in {**settings, **extra}.items():
        if value is None or name == "TESTING":
            continue
        if isinstance(value, bool):
            value = "true" if value else "false"
        elif isinstance(value, list | tuple):
            value = ",".join(value)
        env[name] = str(value)
    return env


def voice_record(stub: ProviderStub, kind: str, name: str, **changes: Any) -> dict[str, Any]:
    """An OBD call record (PROVIDER.md §4) whose recording URL is on the stub."""
    record: dict[str, Any] = {
        "bridge": 918068280000,
        "from": 918919520000,
        "to": 918867130000,
        "source": "OBD",
        "mid": name,
        "flow_id": 123,
        "start_at": "2021-04-09 16:27:39",
        "end_at": "2021-04-09 16:27:55",
        "duration": "16",
        "status": "ANSWER",
        "recording_url": f"{stub.url}/audio/{kind}/{name}.mp3",
    }
    record.update(changes)
    return record
