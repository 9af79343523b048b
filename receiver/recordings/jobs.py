"""The recordings' jobs: download a recording (a task on the app's queue), and the sweep for
forgotten ones (a loop every worker runs).

Jobs take ids and re-read the row; the queue only says "look at this recording now". The sweep,
run by every worker, puts back what a lost job or a killed worker left behind.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterable

from flask import Flask

from .. import jobqueue
from ..config import settings_of
from ..db import Database
from ..fetcher import Fetcher, FetchPolicy
from ..provider import make_client, make_limiter
from ..quiet import Throttle
from . import download, sweep

log = logging.getLogger(__name__)


class Jobs:
    """One app's recording jobs. The downloader (HTTP clients) is built on first use, in the worker."""

    def __init__(self, app: Flask) -> None:
        self.app = app
        self.huey = jobqueue.get_queue(app)
        self.policy = download.Policy.from_settings(settings_of(app.config))
        self._downloader: download.Downloader | None = None
        self._lock = threading.Lock()
        # Webhooks that could not hand their recordings over, said once a cause an interval.
        self.enqueue_failures = Throttle()
        self.download = self.huey.task(name="download_recording")(self._download)

    def downloader(self) -> download.Downloader:
        with self._lock:
            if self._downloader is None:
                config = self.app.config
                db: Database = self.app.extensions["receiver.db"]
                assert db.sessionmaker is not None
                limiter = make_limiter(config, db.sessionmaker)
                self._downloader = download.Downloader(
                    db.sessionmaker,
                    self.policy,
                    Fetcher(FetchPolicy.from_settings(settings_of(config))),
                    # a job waits for a request slot at most half its lease, then tries again later
                    make_client(config, limiter, max_wait=min(120.0, self.policy.lease / 2)),
                )
            return self._downloader

    def _download(self, recording_id: int) -> None:
        """The job: take one recording as far as it goes; plan its next attempt if one is due."""
        result = self.downloader().run(recording_id)
        if result.retry_in is not None:
            try:
                self.download.schedule((recording_id,), delay=result.retry_in)
            except Exception:  # the sweep finds it once its next attempt is overdue
                log.warning("recording %s: could not schedule the retry", recording_id, exc_info=True)

    def enqueue(self, recording_ids: Iterable[int]) -> None:
        for recording_id in recording_ids:
            self.download(recording_id)

    def sweep_once(self) -> list[int]:
        """Queue again every recording no job holds; remove partial files of killed jobs."""
        db: Database = self.app.extensions["receiver.db"]
        with db.new_session() as session:
            ids = sweep.sweep(session, self.policy)
        self.enqueue(ids)
        config = self.app.config
        sweep.clean_temp_files(self.policy, max(600.0, 2 * config["DOWNLOAD_TIMEOUT"], 2 * self.policy.lease))
        return ids

    def sweep_forever(self, stop: threading.Event) -> None:
        """Sweep at start, then every RECORDING_SWEEP_INTERVAL seconds until `stop` is set."""
        interval = self.app.config["RECORDING_SWEEP_INTERVAL"]
        while True:
            try:
                self.sweep_once()
            except Exception:
                log.exception("sweep failed; trying again in %s s", interval)
            if stop.wait(interval):
                return


def init_app(app: Flask) -> None:
    """Register the download task on the app's queue, and the sweep as a loop of the worker."""
    jobs = Jobs(app)
    app.extensions["receiver.jobs"] = jobs
    jobqueue.add_loop(app, "sweep", jobs.sweep_forever)


def get_jobs(app: Flask) -> Jobs:
    jobs: Jobs = app.extensions["receiver.jobs"]
    return jobs
