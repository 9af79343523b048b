"""Give up on a dependency that stops answering (hung, not refused), in the web's gevent worker.

A database or job queue that hangs (a stopped process, a black-holed network) answers no
timeout of its own, and its kernel may still acknowledge TCP keepalives: only the caller's own
clock ends the wait. Under gevent every wait on a socket is a switch to the event loop, so a
timer of the loop can interrupt it (an exception thrown into the waiting greenlet). Elsewhere
(threads, tests, commands) a `Deadline` does nothing, and the dependencies' socket, connect and
statement timeouts bound the wait instead.
"""

from __future__ import annotations

import sys
from types import TracebackType
from typing import Any


def cooperative() -> bool:
    """Whether this process runs under gevent's monkey patching (the web's default worker)."""
    monkey = sys.modules.get("gevent.monkey")
    return monkey is not None and bool(monkey.is_module_patched("socket"))


class DeadlineExpired(BaseException):
    """Thrown into the block where it waits once its deadline has passed.

    A BaseException, not an Exception: libraries treat it as they treat KeyboardInterrupt,
    dropping a connection caught mid-command rather than reusing it (SQLAlchemy invalidates it,
    redis-py disconnects), and no `except Exception` of theirs or ours swallows it.
    """


class Deadline:
    """Interrupt the block where it waits once `seconds` pass without `restart()`.

    Once expired, the interruption is thrown again every RETHROW seconds until the block ends: a
    library may lose the first in cleanup of its own (SQLAlchemy's ping restores a connection's
    autocommit in a `finally`, which fails on the interrupted connection and raises instead) and
    go on to wait elsewhere (a new connection). At the end `expired` says whether it ran out;
    whatever the block raised after that is taken as a consequence and not raised again. Nothing
    happens outside gevent or when `seconds` is 0.
    """

    RETHROW = 0.1

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.expired = False
        self._loop: Any = None
        self._timer: Any = None
        self._greenlet: Any = None
        if seconds > 0 and cooperative():
            # gevent only where it already runs: a process without it never imports it.
            import gevent

            self._loop = gevent.get_hub().loop

    def __enter__(self) -> Deadline:
        if self._loop is not None:
            from gevent import getcurrent  # as above: gevent runs in this process

            self._greenlet = getcurrent()
            self._start(self.seconds)
        return self

    def restart(self) -> None:
        """Count `seconds` from now (progress was made); not once it has run out."""
        if self._timer is not None and not self.expired:
            self._stop()
            self._start(self.seconds)

    def _start(self, seconds: float) -> None:
        self._timer = self._loop.timer(seconds)
        self._timer.start(self._expire)

    def _stop(self) -> None:
        if self._timer is not None:
            self._timer.stop()
            self._timer.close()
            self._timer = None

    def _expire(self) -> None:
        self.expired = True
        self._stop()
        self._start(self.RETHROW)
        self._greenlet.throw(DeadlineExpired(f"no answer within {self.seconds:g} s"))

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> bool:
        if self._loop is None:
            return False
        self._stop()
        return self.expired and isinstance(exc, DeadlineExpired | Exception)
