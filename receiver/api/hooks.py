"""/hooks/<source>[/<kind>]: the platform's webhooks, decided and stored by receiver.ingest.service.

The one route that takes the platform's whole traffic is served straight from WSGI, in front of
Flask (`Hooks`, installed by `install`): a webhook costs ~0.8 ms of CPU, and Flask's request
machinery (request context, URL matching, hooks, the response object) was a sixth of it
(docs/benchmarks.md). This stays a view: it translates the request into a `Webhook` and the
service's `Answer` into HTTP, as werkzeug would read and write them, inside the app's context;
errors are answered by the app's own handlers (receiver.errors) and requests are counted by the
same metrics as every other route. Any other request goes on to Flask.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from typing import Any

from flask import Flask, Response
from werkzeug.datastructures import EnvironHeaders
from werkzeug.exceptions import ClientDisconnected
from werkzeug.http import HTTP_STATUS_CODES
from werkzeug.wsgi import get_content_length, get_input_stream

from .. import errors, metrics
from ..ingest.bodies import query_args
from ..ingest.service import Answer, Ingest, Webhook

WSGIApp = Callable[[dict[str, Any], Any], Iterable[bytes]]

PREFIX = "/hooks/"
# The routes' names as /metrics labels them (those of Flask's rules elsewhere).
RULES = ("/hooks/<source>", "/hooks/<source>/<kind>")
# What the platform may use; HEAD is GET without the body, OPTIONS says which are allowed.
METHODS = frozenset({"GET", "HEAD", "POST", "PUT"})
ALLOW = "GET, HEAD, OPTIONS, POST, PUT"


def install(app: Flask) -> None:
    """Serve the webhook routes in front of the app's other routes."""
    app.wsgi_app = Hooks(app, app.wsgi_app)  # type: ignore[method-assign]


class Hooks:
    """WSGI: the webhook routes, then `app` for every other request."""

    def __init__(self, flask_app: Flask, app: WSGIApp) -> None:
        self.flask_app = flask_app
        self.app = app

    def __call__(self, environ: dict[str, Any], start_response: Any) -> Iterable[bytes]:
        path = _decoded(environ.get("PATH_INFO", ""))
        route = _route(path)
        if route is None:
            return self.app(environ, start_response)
        source, kind = route
        method = environ.get("REQUEST_METHOD", "GET")
        started = time.perf_counter()
        metrics.PENDING.started()
        try:
            with self.flask_app.app_context():
                if method == "OPTIONS":
                    code, body, headers = 200, b"", [("Allow", ALLOW)]
                elif method not in METHODS:
                    code, body, headers = _error(405, "method not allowed")
                    headers.append(("Allow", ALLOW))
                else:
                    code, body, headers = self._take(environ, method, path, source, kind)
                    if code >= 400 and code != 422:
                        metrics.count_rejected(kind)
                metrics.count_request(RULES[kind is not None], method, code, time.perf_counter() - started)
                return _respond(environ, start_response, code, body, headers)
        finally:
            metrics.PENDING.finished()

    def _take(
        self, environ: dict[str, Any], method: str, path: str, source: str, kind: str | None
    ) -> tuple[int, bytes, list[tuple[str, str]]]:
        """Hand the request to the service; its answer, or the app's answer to what went wrong."""
        query = environ.get("QUERY_STRING", "").encode("latin-1")
        length = get_content_length(environ)
        try:
            answer = Ingest.of(self.flask_app).take(
                Webhook(
                    source=source,
                    kind=kind,
                    method=method,
                    path=path,
                    query_string=query,
                    args=query_args(query),
                    headers=EnvironHeaders(environ),
                    content_length=length,
                    remote_addr=environ.get("REMOTE_ADDR"),
                    read_body=lambda: self._read_body(environ, length),
                )
            )
        except Exception as exc:
            return _flask_answer(*errors.handle(self.flask_app, exc))
        return _answer(self.flask_app, answer)

    def _read_body(self, environ: dict[str, Any], length: int | None) -> bytes:
        """The body, as werkzeug's `get_data` reads it; one read when its length is known."""
        if length is None or not environ.get("CONTENT_LENGTH"):  # chunked: stopped past the limit
            limit = self.flask_app.config["MAX_CONTENT_LENGTH"]
            return get_input_stream(environ, max_content_length=limit).read()
        body: bytes = environ["wsgi.input"].read(length)
        if len(body) < length:
            raise ClientDisconnected()
        return body


def _route(path: str) -> tuple[str, str | None] | None:
    """`(source, kind)` of a webhook route's (decoded) path, as Flask's rules read it; None:
    another path."""
    if not path.startswith(PREFIX):
        return None
    parts = path[len(PREFIX) :].split("/")
    if len(parts) > 2 or not all(parts):
        return None  # not found, by Flask
    return parts[0], parts[1] if len(parts) == 2 else None


def _decoded(path: str) -> str:
    """A WSGI path (bytes as latin-1) as text, as werkzeug decodes it."""
    return path.encode("latin-1").decode("utf-8", "replace")


def _answer(app: Flask, answer: Answer) -> tuple[int, bytes, list[tuple[str, str]]]:
    """The answer as jsonify writes it."""
    body = (app.json.dumps(answer.body, separators=(",", ":")) + "\n").encode()
    headers = [("Content-Type", "application/json")]
    if answer.close:
        headers.append(("Connection", "close"))
    return answer.code, body, headers


def _error(code: int, message: str) -> tuple[int, bytes, list[tuple[str, str]]]:
    return _flask_answer(*errors.error_response(code, message))


def _flask_answer(response: Response, code: int) -> tuple[int, bytes, list[tuple[str, str]]]:
    """An answer the app's error handlers made, as this route writes answers."""
    return code, response.get_data(), list(response.headers.items())


def _respond(
    environ: dict[str, Any], start_response: Any, code: int, body: bytes, headers: list[tuple[str, str]]
) -> Iterable[bytes]:
    headers = [(name, value) for name, value in headers if name.lower() != "content-length"]
    headers.append(("Content-Length", str(len(body))))
    start_response(f"{code} {HTTP_STATUS_CODES.get(code, 'UNKNOWN')}", headers)
    return [] if environ.get("REQUEST_METHOD") == "HEAD" else [body]
