"""Give up on a dependency that stops answering (hung, not refused), in the web's gevent worker.

A database or job queue that hangs (a stopped process, a black-holed network) answers no
timeout of its own, and its kernel may still acknowledge TCP keepalives: only the caller's own
clock ends the wait. Under gevent every wait on a socket is a switch to the event loop, so a
`gevent.Timeout` can interrupt it. Elsewhere (threads, tests, commands) a `Deadline` does
nothing, and the dependencies' socket, connect and statement timeouts bound the wait instead.
"""

from __future__ import annotations

import sys
from types import TracebackType
from typing import Any


def cooperative() -> bool:
    """Whether this process runs under gevent's monkey patching (the web's default worker)."""
    monkey = sys.modules.get("gevent.monkey")
    return monkey is not None and bool(monkey.is_module_patched("socket"))


class Deadline:
    """Interrupt the block where it waits once `seconds` pass without `restart()`.

    The interruption is a `gevent.Timeout`, a BaseException: libraries treat it as they treat
    KeyboardInterrupt, dropping a connection caught mid-command rather than reusing it (SQLAlchemy
    invalidates it, redis-py disconnects). It ends at the block's end; `expired` then says
    whether it was interrupted. Nothing happens outside gevent or when `seconds` is 0.
    """

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.expired = False
        self._timer: Any = None
        if seconds > 0 and cooperative():
            import gevent

            self._timer = gevent.Timeout(seconds)

    def __enter__(self) -> Deadline:
        if self._timer is not None:
            self._timer.start()
        return self

    def restart(self) -> None:
        """Count `seconds` from now (progress was made); not once it has run out."""
        if self._timer is not None and self._timer.pending:
            self._timer.cancel()
            self._timer.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> bool:
        if self._timer is None:
            return False
        self._timer.close()
        if exc is not None and exc is self._timer:
            self.expired = True
            return True
        return False
