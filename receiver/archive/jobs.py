"""The archive's job: the ARCHIVE_AFTER_DAYS policy, daily on the app's queue, in one worker at a time."""

from __future__ import annotations

import logging

from flask import Flask
from huey import crontab

from .. import jobqueue
from .policy import run_policy

log = logging.getLogger(__name__)

# When the worker runs the policy (UTC): after midnight, away from the top of the hour.
SCHEDULE = {"minute": "17", "hour": "3"}


def init_app(app: Flask) -> None:
    """Register the daily policy task on the app's queue (it runs where periodic tasks are enabled)."""
    huey = jobqueue.get_queue(app)

    def archive_policy() -> None:
        if not app.config.get("ARCHIVE_AFTER_DAYS"):
            return
        with huey.lock_task("archive-policy"), app.app_context():
            engine = app.extensions["receiver.db"].engine
            try:
                run_policy(app.config, engine)
            except Exception:
                log.exception("archive policy failed; nothing was deleted that no verified archive holds")
                raise

    huey.periodic_task(crontab(**SCHEDULE), name="archive_policy")(archive_policy)
