"""The worker's reconciliation: daily at RECONCILE_AT (UTC) for the previous two days, `stuck` hourly.

Both do nothing without PROVIDER_ACCESS_TOKEN. A queue lock keeps two workers from running the
same task at once; should one run twice all the same, it adds nothing the second time.
"""

from __future__ import annotations

import logging
from datetime import timedelta
from zoneinfo import ZoneInfo

from flask import Flask

from .service import ReconcileFailed, summary
from .setup import reconciler
from .times import today

log = logging.getLogger(__name__)

DAYS_BACK = 2  # the previous two days: the second pass catches reports that came late
STUCK_OLDER_THAN = timedelta(hours=6)
STUCK_WITHIN = timedelta(days=7)


def run_daily(app: Flask) -> list[str]:
    """sms, calls, inbound and the report for each of the previous two days; what failed, if anything."""
    failures: list[str] = []
    first = today(ZoneInfo(app.config["PROVIDER_TIMEZONE"]))
    with reconciler(app) as service:
        for back in range(DAYS_BACK, 0, -1):
            day = first - timedelta(days=back)
            for kind, run in (
                ("sms", service.sms),
                ("calls", service.calls),
                ("inbound", service.inbound),
                ("report", service.report),
            ):
                try:
                    outcome = run(day)
                except ReconcileFailed as exc:
                    failures.append(f"{kind} {day}: {exc}")
                    continue
                if outcome.comparison is not None:
                    state = "differ" if outcome.comparison.differences else "agree"
                    log.info("reconcile report %s: the counts %s", day, state)
                else:
                    log.info("reconcile %s %s: %s", kind, day, summary(outcome.counts, kind))
    return failures


def init_app(app: Flask) -> None:
    """Register the daily and hourly tasks on the app's queue (they run in `receiver worker`)."""
    from huey import crontab

    huey = app.extensions["receiver.huey"]
    hour, minute = app.config["RECONCILE_AT"]

    def reconcile_daily() -> None:
        if not app.config.get("PROVIDER_ACCESS_TOKEN"):
            return
        with huey.lock_task("reconcile-daily"), app.app_context():
            failures = run_daily(app)
        if failures:
            log.error("reconcile: %d run(s) failed: %s", len(failures), "; ".join(failures))

    def reconcile_stuck() -> None:
        if not app.config.get("PROVIDER_ACCESS_TOKEN"):
            return
        with huey.lock_task("reconcile-stuck"), app.app_context(), reconciler(app) as service:
            try:
                outcome = service.stuck(STUCK_OLDER_THAN, STUCK_WITHIN)
            except ReconcileFailed as exc:
                log.error("reconcile stuck: %s", exc)
                return
            log.info("reconcile stuck: %s", summary(outcome.counts, "stuck"))

    huey.periodic_task(crontab(minute=str(minute), hour=str(hour)), name="reconcile_daily")(reconcile_daily)
    huey.periodic_task(crontab(minute="41"), name="reconcile_stuck")(reconcile_stuck)
