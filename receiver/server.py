"""The gunicorn workers of `web`: gevent's (the default) and gthread's, made fit for the internet.

On top of gunicorn's own workers they:
- answer gunicorn's own errors (400, 414, 431, 501...) as JSON in the `{status, code, message}`
  shape, without echoing the request back;
- keep credentials out of the error log: a malformed request line or header is logged with the
  values of `secret`, `token` and `access_token` and of credential headers replaced;
- close the connection after an answer that says `Connection: close` (gunicorn drops that header
  from an app's answer and would otherwise read a refused request's body to keep the connection);
- answer a body whose framing is broken (a bad chunk size, a chunk without its CRLF, a body that
  ends before its Content-Length) 400 in JSON and close the connection, rather than 500;
- under gevent, give a request's body WEB_BODY_TIMEOUT seconds (default 30) after its headers to
  arrive; past that the app answers 408 and the connection is closed. The request line and
  headers must arrive within gunicorn's `keepalive` seconds of the connection opening (or of the
  previous answer): gevent's worker applies that itself, closing the connection silently.

Under gevent each connection is a greenlet, so a slow client holds no thread and no database
connection while its request trickles in; the database and the job queue are given deadlines of
their own (receiver.db, receiver.recordings.queue).

This module is imported by gunicorn's master before it forks: it imports nothing of the app
(see receiver/__init__.py), only gunicorn, gevent and the standard library.
"""

from __future__ import annotations

import json
import logging
import os
import re
import time
from typing import Any
from urllib.parse import unquote_plus

from gunicorn import util
from gunicorn.http.errors import ParseException
from gunicorn.workers.ggevent import GeventWorker
from gunicorn.workers.gthread import ThreadWorker as GthreadWorker

from .credentials import CREDENTIAL_HEADERS, REDACTED, is_credential

# Query parameters (which carry credentials: receiver.credentials), and headers that do.
_PARAM = re.compile(r"(?P<lead>^|[?&;\s'\"(])(?P<name>[^=&;\s'\"?]+)=(?P<value>[^&;\s'\"#]*)")
_SCHEME = re.compile(r"(?i)\b(?P<scheme>bearer|basic|digest|token)(?P<gap>\s+)[^\s'\",]+")
_HEADER = re.compile(
    rf"(?i)\b(?P<name>{'|'.join(map(re.escape, CREDENTIAL_HEADERS))})(?P<sep>[\s:=]+)[^'\"]*"
)

# Short messages for gunicorn's error answers; never the request itself, which may carry a secret.
_MESSAGES = {
    400: "malformed request: the request line or a header could not be parsed",
    403: "forbidden",
    414: "request line too long",
    417: "expectation not supported",
    431: "request header fields too large",
    500: "internal error",
    501: "transfer coding not supported",
}


def redact(text: str) -> str:
    """`text` with the values of credential parameters and headers replaced by REDACTED."""

    def param(match: re.Match[str]) -> str:
        if not is_credential(unquote_plus(match["name"])):
            return match[0]
        return f"{match['lead']}{match['name']}={REDACTED}"

    text = _PARAM.sub(param, text)
    text = _HEADER.sub(lambda m: f"{m['name']}{m['sep']}{REDACTED}", text)
    return _SCHEME.sub(lambda m: f"{m['scheme']}{m['gap']}{REDACTED}", text)


class RedactSecrets(logging.Filter):
    """Rewrite a log record's message and traceback with `redact`."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        redacted = redact(message)
        if redacted != message:
            record.msg, record.args = redacted, ()
        if record.exc_info and not record.exc_text:
            record.exc_text = redact(logging.Formatter().formatException(record.exc_info))
        return True


class _Captured:
    """Stands in for the client socket while gunicorn writes its HTML error answer."""

    def __init__(self) -> None:
        self.data = b""

    def gettimeout(self) -> float:
        return 0.0

    def setblocking(self, _flag: bool) -> None:
        pass

    def sendall(self, data: bytes) -> None:
        self.data += data


def _status_of(answer: bytes) -> tuple[int, str]:
    """The code and reason of an HTTP answer's status line; 500 when there is none."""
    parts = answer.split(b"\r\n", 1)[0].split(b" ", 2)
    if len(parts) == 3 and parts[1].isdigit():
        return int(parts[1]), parts[2].decode("latin-1")
    return 500, "Internal Server Error"


def json_error(code: int, reason: str) -> bytes:
    """A whole HTTP/1.1 error answer with a JSON body; the connection is closed after it."""
    body = json.dumps(
        {"status": "ERROR", "code": code, "message": _MESSAGES.get(code, reason.lower())}
    ).encode()
    head = (
        f"HTTP/1.1 {code} {reason}\r\nConnection: close\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    )
    return head.encode("latin-1") + body


class _Hardened:
    """What both workers add to gunicorn's; see the module's docstring."""

    log: Any
    wsgi: Any
    body_timeout: float | None = None  # set by the gevent worker

    def load_wsgi(self) -> None:
        super().load_wsgi()  # type: ignore[misc]
        self.log.error_log.addFilter(RedactSecrets())
        self.wsgi = _Closing(self.wsgi, self.body_timeout)

    def handle_error(self, req: Any, client: Any, addr: Any, exc: BaseException) -> None:
        """Let gunicorn log (redacted) and pick the status; answer it as JSON."""
        captured = _Captured()
        super().handle_error(req, captured, addr, exc)  # type: ignore[misc]
        try:
            util.write_nonblock(client, json_error(*_status_of(captured.data)))
        except Exception:
            self.log.debug("Failed to send error message.")


class _Closing:
    """The app, with `Connection: close` honoured, a broken body refused and (under gevent) a
    deadline on the body."""

    def __init__(self, app: Any, body_timeout: float | None) -> None:
        self.app = app
        self.body_timeout = body_timeout

    def __call__(self, environ: dict[str, Any], start_response: Any) -> Any:
        deadline = time.monotonic() + self.body_timeout if self.body_timeout else None
        body = _GuardedInput(environ["wsgi.input"], deadline)
        environ["wsgi.input"] = body

        def start(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
            closing = any(
                name.lower() == "connection" and value.strip().lower() == "close" for name, value in headers
            )
            if closing or body.spoiled:
                # gunicorn's Response; its start_response is bound to it.
                response = getattr(start_response, "__self__", None)
                if response is not None and hasattr(response, "force_close"):
                    response.force_close()
            return start_response(status, headers, exc_info)

        return self.app(environ, start)


class _GuardedInput:
    """`wsgi.input` that raises 400 on a broken body and, given a deadline (greenlets only), 408
    once it has passed; either way the connection is not used again (`spoiled`)."""

    def __init__(self, stream: Any, deadline: float | None) -> None:
        self.stream = stream
        self.deadline = deadline
        self.spoiled = False

    def _within_deadline(self, read: Any, *args: Any) -> Any:
        try:
            return self._timed(read, *args)
        except ParseException as exc:
            self.spoiled = True
            from werkzeug.exceptions import BadRequest

            raise BadRequest(f"the request body is malformed: {type(exc).__name__}") from None

    def _timed(self, read: Any, *args: Any) -> Any:
        if self.deadline is None:
            return read(*args)
        import gevent

        left = self.deadline - time.monotonic()
        timer = gevent.Timeout(max(left, 0.001))
        timer.start()
        try:
            return read(*args)
        except gevent.Timeout as exc:
            if exc is not timer:
                raise
            self.spoiled = True
            from werkzeug.exceptions import RequestTimeout

            raise RequestTimeout("the request body did not arrive in time") from None
        finally:
            timer.cancel()

    def read(self, size: int | None = None) -> bytes:
        return self._within_deadline(self.stream.read, size)  # type: ignore[no-any-return]

    def readline(self, size: int | None = None) -> bytes:
        return self._within_deadline(self.stream.readline, size)  # type: ignore[no-any-return]

    def readlines(self, hint: int | None = None) -> list[bytes]:
        return self._within_deadline(self.stream.readlines, hint)  # type: ignore[no-any-return]

    def __iter__(self) -> Any:
        while True:
            line = self.readline()
            if not line:
                return
            yield line


class Worker(_Hardened, GeventWorker):
    """gevent's worker (a greenlet a connection), hardened."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.body_timeout = float(os.environ.get("WEB_BODY_TIMEOUT") or 30)


class ThreadWorker(_Hardened, GthreadWorker):
    """gthread's worker (WEB_WORKER_CLASS=gthread), hardened but for the body deadline: a slow
    client holds one of its threads until the request is complete."""
