"""Customer endpoints on 127.0.0.1 for forwarding tests: real HTTP servers that record what they
receive and answer as told (fail, throttle, go away, hang until released), and can be stopped
and started again on the same port."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass
class Received:
    headers: dict[str, str]
    body: bytes
    at: float = field(default_factory=time.monotonic)

    @property
    def json(self) -> Any:
        return json.loads(self.body)

    @property
    def id(self) -> str:
        return self.headers["webhook-id"]


# (status, extra headers) for the n-th request (0-based) and what it carried.
Answer = Callable[[int, Received], tuple[int, dict[str, str]]]


def always(status: int = 200, **headers: str) -> Answer:
    return lambda _n, _r: (status, headers)


class Sink:
    """A customer endpoint. `answer` decides each reply; `hold` (when set) is waited on first."""

    def __init__(self, answer: Answer | None = None, port: int = 0) -> None:
        self.answer = answer or always(200)
        self.received: list[Received] = []
        self.hold: threading.Event | None = None
        self.arrived = threading.Event()
        self._lock = threading.Lock()
        self._port = port
        self._server: ThreadingHTTPServer | None = None
        self.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._port}/hook"

    def start(self) -> None:
        sink = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:  # noqa: N802 (http.server's name)
                length = int(self.headers.get("Content-Length", "0"))
                received = Received({k.lower(): v for k, v in self.headers.items()}, self.rfile.read(length))
                with sink._lock:
                    n = len(sink.received)
                    sink.received.append(received)
                sink.arrived.set()
                if sink.hold is not None:
                    sink.hold.wait(60)
                status, headers = sink.answer(n, received)
                self.send_response(status)
                for name, value in headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"ok")

            def log_message(self, *_args: Any) -> None:
                pass

        server = ThreadingHTTPServer(("127.0.0.1", self._port), Handler)
        server.daemon_threads = True
        self._port = server.server_address[1]
        self._server = server
        threading.Thread(target=server.serve_forever, daemon=True).start()

    def stop(self) -> None:
        """Close the port: connections are refused until `start`."""
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def ids(self) -> list[str]:
        with self._lock:
            return [r.id for r in self.received]

    def bodies(self) -> list[Any]:
        with self._lock:
            return [r.json for r in self.received]
