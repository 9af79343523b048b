"""The delivery dashboard: the stats service's figures for a period and source, as charts.

Every figure comes from receiver.stats, the service behind `/api/v1/stats/...`, so a bar on the
dashboard is the number the API answers for the same window.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

from sqlalchemy import orm

from ..stats import CallStatsQuery, MessageStatsQuery, StatsQueryError, call_stats, message_stats
from ..stats.query import LATEST
from . import charts

FAILED = ("failed", "rejected", "expired")
TOP = 12  # bars in a chart by operator or provider status


@dataclass
class Dashboard:
    since: date
    until: date  # the last day shown
    source: str | None
    messages: dict[str, Any] = field(default_factory=dict)
    calls: dict[str, Any] = field(default_factory=dict)
    charts: list[charts.Chart] = field(default_factory=list)


def _days(since: date, until: date) -> list[str]:
    return [(since + timedelta(days=n)).isoformat() for n in range((until - since).days + 1)]


def _by(rows: list[dict[str, Any]], key: str) -> dict[str, dict[str, Any]]:
    return {str(row[key]): row for row in rows}


def dashboard(session: orm.Session, since: date, until: date, source: str | None) -> Dashboard:
    """The charts of `since` to `until` (whole UTC days, both included), of one source or all;
    receiver.stats.StatsQueryError for a period the stats refuse."""
    start = datetime.combine(since, time(), UTC)
    if until >= LATEST.date():  # the day after it would be past the calendar's end
        raise StatsQueryError("until", f"must be before {LATEST.date()}")
    end = datetime.combine(until + timedelta(days=1), time(), UTC)
    board = Dashboard(since, until, source)

    def messages(*group_by: str) -> list[dict[str, Any]]:
        return message_stats(session, MessageStatsQuery(start, end, group_by, source=source))

    def calls(*group_by: str) -> list[dict[str, Any]]:
        return call_stats(session, CallStatsQuery(start, end, group_by, source=source))

    board.messages = (messages() or [{}])[0]
    calls_by_day = _by(calls("day"), "day")
    board.calls = {
        name: sum(row[name] for row in calls_by_day.values())
        for name in ("calls", "answered", "recordings_stored", "recordings_waiting", "recordings_failed")
    }
    days = _days(since, until)
    by_day = _by(messages("day"), "day")
    rate = [by_day.get(day, {}).get("delivery_rate") for day in days]
    board.charts.append(
        charts.vertical(
            "rate-day", "Delivery rate by day", days, [("delivery rate", rate)], charts.percent, "%", 1.0
        )
    )
    operators = sorted(messages("operator"), key=lambda row: -row["total"])[:TOP]
    board.charts.append(
        charts.horizontal(
            "rate-operator",
            "Delivery rate by operator (the busiest)",
            [(row["operator"] or "(unknown)", row["delivery_rate"]) for row in operators],
            charts.percent,
            "delivery rate",
            1.0,
        )
    )
    failures = [
        (row["provider_status"], sum(row[status] for status in FAILED)) for row in messages("provider_status")
    ]
    failures = sorted((point for point in failures if point[1]), key=lambda point: -point[1])[:TOP]
    board.charts.append(
        charts.horizontal("failures", "Failures by provider status", failures, charts.count, "messages")
    )
    p50 = [by_day.get(day, {}).get("delivery_seconds_p50") for day in days]
    p90 = [by_day.get(day, {}).get("delivery_seconds_p90") for day in days]
    board.charts.append(
        charts.vertical(
            "deliver-time",
            "Time to deliver by day (median and 90th percentile)",
            days,
            [("median", p50), ("90th percentile", p90)],
            charts.seconds,
            "seconds",
        )
    )
    board.charts.append(
        charts.vertical(
            "calls-day",
            "Calls by day (all and answered)",
            days,
            [
                ("calls", [calls_by_day.get(day, {}).get("calls", 0) for day in days]),
                ("answered", [calls_by_day.get(day, {}).get("answered", 0) for day in days]),
            ],
            charts.count,
            "calls",
        )
    )
    return board
