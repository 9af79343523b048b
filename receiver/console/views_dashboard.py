"""The delivery dashboard: charts of a period and source, from the stats service."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from typing import Any

from flask import render_template, request

from ..db import get_session
from ..stats import StatsQueryError
from . import dashboard as dashboards
from .blueprint import bp


@bp.get("/dashboard")
def dashboard() -> Any:
    """Delivery rate by day and by operator, failures, time to deliver, calls: for a period and source."""
    today = datetime.now(UTC).date()
    try:
        since = _date(request.args.get("since"), today - timedelta(days=6))
        until = _date(request.args.get("until"), today)
        source = (request.args.get("source") or "").strip()[:64] or None
        board = dashboards.dashboard(get_session(), since, until, source)
    except (ValueError, StatsQueryError) as exc:
        return render_template("console/dashboard.html", board=None, error=str(exc), args=request.args), 400
    return render_template("console/dashboard.html", board=board, error=None, args=request.args)


def _date(value: str | None, default: date) -> date:
    if not value:
        return default
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise ValueError(f"not a date (YYYY-MM-DD): {value[:20]!r}") from None
