"""Quiet logs while a dependency is down: one line a cause an interval, with a count.

A job queue or database that is down fails every request and every polling loop the same way;
a traceback each time (dozens a second) drowns the log and tells nothing new.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Hashable

INTERVAL = 30.0


class Throttle:
    """Say yes to a cause once an `interval`; count the times it was held back meanwhile."""

    def __init__(self, interval: float = INTERVAL) -> None:
        self.interval = interval
        self._last: dict[Hashable, tuple[float, int]] = {}
        self._lock = threading.Lock()

    def __call__(self, cause: Hashable) -> int | None:
        """None to hold this one back; else how many were held back since the last yes."""
        now = time.monotonic()
        with self._lock:
            said, held = self._last.get(cause, (None, 0))
            if said is not None and now - said < self.interval:
                self._last[cause] = (said, held + 1)
                return None
            self._last[cause] = (now, 0)
            return held


def repeated(held: int, interval: float = INTERVAL) -> str:
    """The count a throttled log line ends with ("" for none)."""
    return f" ({held} more like this in the last {interval:.0f} s)" if held else ""


class QuietRepeats(logging.Filter):
    """For a handler: records with a traceback pass once a cause an interval.

    The cause is the logger, the message and the exception's type. The first record of a cause
    keeps its traceback; later ones are one line with the exception and how many were held back.
    """

    def __init__(self, interval: float = INTERVAL) -> None:
        super().__init__()
        self.throttle = Throttle(interval)
        self._seen: set[Hashable] = set()

    def filter(self, record: logging.LogRecord) -> bool:
        if not record.exc_info or record.exc_info[0] is None:
            return True
        error = record.exc_info[1]
        cause = (record.name, str(record.msg), record.exc_info[0])
        held = self.throttle(cause)
        if held is None:
            return False
        if cause in self._seen:
            record.msg = f"{record.getMessage()}: {type(error).__name__}: {error}" + repeated(
                held, self.throttle.interval
            )
            record.args, record.exc_info, record.exc_text = (), None, None
        self._seen.add(cause)
        return True
