"""A stand-in for the provider's pull APIs on 127.0.0.1, in the documented shapes.

- `GET /api/v2/sms/status?date=D` (100 a page) or `?id=`; without either, 422 as the real API.
- `GET /api/v2/sms/report?daterange=D|D`: the day's counts by status code (of `sms[D]`, or `report`).
- `GET /api/v2/voice/calls?datetime[end_at]=Apr 01, 2021 - Apr 01, 2021` (15 a page).
- `GET /api/v2/vmn/logs?date[created_at]=D`.
- `GET /api/v2/whatsapp|rcs|viber/message/status?id=`.

Paged answers are Laravel paginators whose `links` carry `?page=N` alone (tests.provider_stub).
Every `fail_429`-th request is answered 429 and every `fail_500`-th 500 (both with Retry-After:
0); `script` answers given pages 429 or 500 first, `broken_pages` 500 every time. `requests`
keeps each request's path and query.
"""

from __future__ import annotations

import json
import threading
from collections import Counter
from collections.abc import Sequence
from datetime import datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

from tests.provider_stub import laravel_page


class PullStub(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 64

    def __init__(self, token: str = "pull-token") -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.token = token
        self.sms: dict[str, Sequence[dict[str, Any]]] = {}  # day -> rows of sms/status
        self.by_id: dict[str, dict[str, Any]] = {}  # message id -> its row, for ?id=
        self.report: dict[str, dict[str, int]] | None = None
        self.calls: list[dict[str, Any]] = []
        self.inbound: list[dict[str, Any]] = []
        self.fail_429 = 0
        self.fail_500 = 0
        self.broken_pages: set[tuple[str, int]] = set()
        # (path, page) -> codes to answer (429 or 500) before the page itself, one per request
        self.script: dict[tuple[str, int], list[int]] = {}
        self.requests: list[tuple[str, dict[str, list[str]]]] = []
        self.answers: Counter[int] = Counter()
        self.keep_requests = True
        self.lock = threading.Lock()
        self.count = 0
        self.thread = threading.Thread(target=self.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        host, port = self.server_address[:2]
        return f"http://{host}:{port}/api/v2/"

    def __enter__(self) -> PullStub:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.shutdown()
        self.server_close()

    def pages_asked(self, path: str) -> list[int]:
        return [int(q.get("page", ["1"])[0]) for p, q in self.requests if p == path]


def _day_of(text: str) -> str:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).date().isoformat()


class _Handler(BaseHTTPRequestHandler):
    server: PullStub
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - quiet
        pass

    def _send(self, status: int, document: Any, headers: dict[str, str] | None = None) -> None:
        body = json.dumps(document).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(body)
        with self.server.lock:
            self.server.answers[status] += 1

    def do_GET(self) -> None:  # noqa: N802
        parts = urlsplit(self.path)
        path = parts.path.removeprefix("/api/v2/")
        query = parse_qs(parts.query)
        server = self.server
        with server.lock:
            server.count += 1
            number = server.count
            if server.keep_requests:
                server.requests.append((path, query))
        if self.headers.get("Authorization") != f"Bearer {server.token}":
            return self._send(401, {"status": "ERROR", "code": 401, "message": "Unauthenticated."})
        page = int(query.get("page", ["1"])[0])
        with server.lock:
            scripted = server.script.get((path, page))
            code = scripted.pop(0) if scripted else 0
        if code == 429 or (server.fail_429 and number % server.fail_429 == 0):
            return self._send(
                429, {"status": "ERROR", "code": 429, "message": "Too Many Attempts."}, {"Retry-After": "0"}
            )
        if (
            code == 500
            or (server.fail_500 and number % server.fail_500 == 0)
            or (path, page) in server.broken_pages
        ):
            return self._send(
                500, {"status": "ERROR", "code": 500, "message": "Server Error"}, {"Retry-After": "0"}
            )
        url = f"{server.url}{path}"
        if path == "sms/status":
            if "id" in query:
                row = server.by_id.get(query["id"][0])
                return self._send(
                    200, {"status": "OK", "code": 200, "message": "OK", "data": [row] if row else []}
                )
            if "date" not in query:
                return self._send(
                    422, {"status": "ERROR", "code": 422, "message": "id, mobile, cid, date or group_id"}
                )
            rows = server.sms.get(query["date"][0], [])
            return self._send(
                200, {"status": "OK", "code": 200, "message": "OK", **laravel_page(url, rows, query, 100)}
            )
        if path == "sms/report":
            first, _, last = query["daterange"][0].partition("|")
            counts = (server.report or {}).get(first)
            if counts is None:
                counts = dict(Counter(row["status"] for row in server.sms.get(first, [])))
            data = {first: {"date": first, "status": counts}} if counts else {}
            return self._send(200, {"status": 200, "message": "OK", "data": data})
        if path == "voice/calls":
            rows: Sequence[dict[str, Any]] = server.calls
            wanted = query.get("datetime[end_at]")
            if wanted:
                day = datetime.strptime(wanted[0].split(" - ")[0], "%b %d, %Y").date().isoformat()
                rows = [r for r in rows if r["end_at"][:10] == day]
            return self._send(200, laravel_page(url, rows, query, 15))
        if path == "vmn/logs":
            rows = server.inbound
            wanted = query.get("date[created_at]")
            if wanted:
                rows = [r for r in rows if _day_of(r["created_at"]) == wanted[0]]
            return self._send(200, laravel_page(url, rows, query, 15))
        if path.endswith("/message/status"):
            row = server.by_id.get(query.get("id", [""])[0])
            return self._send(
                200, {"status": "OK", "code": 200, "message": "OK", "data": [row] if row else []}
            )
        return self._send(404, {"status": "ERROR", "code": 404, "message": "Not Found"})
