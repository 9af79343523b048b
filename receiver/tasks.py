"""The worker's queue (Huey) and its jobs: download a recording, and sweep for forgotten ones.

The queue is a SQLite file under VAR_DIR by default (one machine), Redis when REDIS_URL is set
(several machines). Each app gets its own Huey instance from its settings, so web processes
enqueue into the queue the worker of the same settings reads. Jobs take ids and re-read the
row; the queue only says "look at this recording now". The sweep, run by every worker, puts
back what a lost job or a killed worker left behind.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import redis
from flask import Flask
from huey import Huey, RedisHuey  # type: ignore[import-untyped]
from huey.storage import SqliteStorage  # type: ignore[import-untyped]
from redis.backoff import NoBackoff
from redis.retry import Retry

from .db import Database
from .fetcher import Fetcher
from .fetcher import Policy as DownloadPolicy
from .provider import make_client, make_limiter
from .quiet import Throttle
from .recordings import download as recordings
from .recordings import sweep as recordings_sweep

log = logging.getLogger(__name__)

# Redis that does not answer must not hold a caller for long: a connection gets this long to
# open and a command (the worker's 1 s blocking pop included) this long to answer, and a failed
# command is not tried again (the caller has its own fallback: the sweep, the consumer's next
# poll). The web bounds its enqueue tighter still (receiver.recordings.queue).
REDIS_CONNECT_TIMEOUT = 0.5
REDIS_COMMAND_TIMEOUT = 5.0


class LazySqliteStorage(SqliteStorage):  # type: ignore[misc]
    """Huey's SQLite queue, whose folder, file and tables are made on first use, not when the app
    is built: a command that never queues anything leaves no file behind."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, create_tables=False, **kwargs)

    def _create_connection(self) -> Any:
        Path(self.filename).parent.mkdir(parents=True, exist_ok=True)
        connection = super()._create_connection()
        for statement in self.ddl:  # idempotent (`if not exists`); huey runs them at start otherwise
            connection.execute(statement)
        return connection


def make_huey(config: Mapping[str, Any]) -> Huey:
    """Redis when REDIS_URL is set, else SQLite under VAR_DIR."""
    if config.get("REDIS_URL"):
        pool = redis.ConnectionPool.from_url(
            config["REDIS_URL"],
            socket_connect_timeout=REDIS_CONNECT_TIMEOUT,
            socket_timeout=REDIS_COMMAND_TIMEOUT,
            retry=Retry(NoBackoff(), 0),
        )
        return RedisHuey(name=config["REDIS_PREFIX"], connection_pool=pool, results=False)
    # No fsync: the queue only hints which rows to look at; a job lost in a power cut is found by the sweep.
    filename = str(Path(config["VAR_DIR"]) / "huey.db")
    return Huey(
        name="receiver", storage_class=LazySqliteStorage, filename=filename, results=False, fsync=False
    )


class Jobs:
    """One app's queue and tasks. The downloader (HTTP clients) is built on first use, in the worker."""

    def __init__(self, app: Flask) -> None:
        self.app = app
        self.huey = make_huey(app.config)
        self.policy = recordings.Policy.from_config(app.config)
        self._downloader: recordings.Downloader | None = None
        self._lock = threading.Lock()
        # Webhooks that could not hand their recordings over, said once a cause an interval.
        self.enqueue_failures = Throttle()
        self.download = self.huey.task(name="download_recording")(self._download)

    def downloader(self) -> recordings.Downloader:
        with self._lock:
            if self._downloader is None:
                config = self.app.config
                db: Database = self.app.extensions["receiver.db"]
                assert db.sessionmaker is not None
                limiter = make_limiter(config, db.sessionmaker)
                self._downloader = recordings.Downloader(
                    db.sessionmaker,
                    self.policy,
                    Fetcher(DownloadPolicy.from_config(config)),
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
            ids = recordings_sweep.sweep(session, self.policy)
        self.enqueue(ids)
        config = self.app.config
        recordings_sweep.clean_temp_files(
            self.policy, max(600.0, 2 * config["DOWNLOAD_TIMEOUT"], 2 * self.policy.lease)
        )
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
    """Give the app its queue; metrics read it at `receiver.huey`."""
    jobs = Jobs(app)
    app.extensions["receiver.jobs"] = jobs
    app.extensions["receiver.huey"] = jobs.huey
    from .archive import policy as archive_policy  # the daily ARCHIVE_AFTER_DAYS task

    archive_policy.init_app(app)
    from .reconcile import jobs as reconcile_jobs  # daily at RECONCILE_AT, and hourly `stuck`

    reconcile_jobs.init_app(app)
    from .stats import jobs as stats_jobs  # the roll-up of the statistics summaries, each minute

    stats_jobs.init_app(app)


def get_jobs(app: Flask) -> Jobs:
    jobs: Jobs = app.extensions["receiver.jobs"]
    return jobs
