"""Delivery analytics: messages and calls counted by group over a window, fast on big databases.

`message_stats(session, MessageStatsQuery(...))` and `call_stats(session, CallStatsQuery(...))`
return the rows `GET /api/v1/stats/messages` and `/api/v1/stats/calls` answer, as flat dicts.
Messages are read from summaries a background roll-up keeps (receiver.stats.rollup) wherever
they are known to be current, and from the messages themselves elsewhere: the answer is always
the one a full scan would give.
"""

from __future__ import annotations

from .calls import call_stats
from .messages import message_stats
from .query import (
    CALL_GROUPS,
    CALL_MEASURES,
    MAX_DAYS,
    MESSAGE_GROUPS,
    MESSAGE_MEASURES,
    CallStatsQuery,
    MessageStatsQuery,
    StatsQueryError,
)

__all__ = [
    "CALL_GROUPS",
    "CALL_MEASURES",
    "MAX_DAYS",
    "MESSAGE_GROUPS",
    "MESSAGE_MEASURES",
    "CallStatsQuery",
    "MessageStatsQuery",
    "StatsQueryError",
    "call_stats",
    "message_stats",
]
