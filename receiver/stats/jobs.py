"""The roll-up as a service for the worker and the command: run it until it has caught up."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import sqlalchemy as sa
from flask import Flask
from sqlalchemy import orm

from .rollup import STATE_ID, roll_up
from .tables import StatsCell, StatsDelay, StatsRollupState

log = logging.getLogger(__name__)


@dataclass
class CatchUp:
    hours: int = 0
    runs: int = 0
    done: bool = False


def catch_up(
    session: orm.Session,
    grace: timedelta,
    *,
    max_runs: int | None = None,
    progress: Callable[[CatchUp], None] | None = None,
) -> CatchUp:
    """Roll up history (a day a transaction) and then the latest changes; stop after `max_runs`."""
    result = CatchUp()
    while max_runs is None or result.runs < max_runs:
        run = roll_up(session, grace=grace)
        result.runs += 1
        result.hours += run.hours
        if progress is not None:
            progress(result)
        if run.done:
            result.done = True
            break
    return result


def rebuild(session: orm.Session) -> None:
    """Drop every summary and the watermark: the next roll-up starts again from the oldest message."""
    with session.begin():
        session.execute(sa.delete(StatsRollupState).where(StatsRollupState.id == STATE_ID))
        session.execute(sa.delete(StatsCell))
        session.execute(sa.delete(StatsDelay))


# A worker's run each minute does at most this many days of history, so that it hands back soon.
RUNS_PER_MINUTE = 30


def init_app(app: Flask) -> None:
    """Register the roll-up on the app's queue: each minute, where periodic tasks run."""
    from huey import crontab

    huey: Any = app.extensions["receiver.huey"]

    def stats_rollup() -> None:
        grace = timedelta(seconds=app.config["STATS_ROLLUP_GRACE"])
        with huey.lock_task("stats-rollup"), app.app_context():
            with app.extensions["receiver.db"].new_session() as session:
                result = catch_up(session, grace, max_runs=RUNS_PER_MINUTE)
            if result.hours:
                log.info("stats roll-up: %d hours rebuilt in %d runs", result.hours, result.runs)

    huey.periodic_task(crontab(minute="*"), name="stats_rollup")(stats_rollup)
