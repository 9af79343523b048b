"""The job queue (Huey) every package puts its tasks on, and the loops the worker runs beside it.

The queue is a SQLite file under VAR_DIR by default (one machine), Redis when REDIS_URL is set
(several machines). Each app gets its own Huey instance from its settings, so web processes
enqueue into the queue the worker of the same settings reads. `register_jobs` builds the queue
first, then each package registers its tasks on it (`get_queue(app).task(...)`) and, when it
needs one, a loop the worker runs in a thread of its own (`add_loop`).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import redis
from flask import Flask
from huey import Huey, RedisHuey
from huey.storage import SqliteStorage
from redis.backoff import NoBackoff
from redis.retry import Retry

# Redis that does not answer must not hold a caller for long: a connection gets this long to
# open and a command (the worker's 1 s blocking pop included) this long to answer, and a failed
# command is not tried again (the caller has its own fallback: the sweep, the consumer's next
# poll). The web bounds its enqueue tighter still (receiver.recordings.queue).
REDIS_CONNECT_TIMEOUT = 0.5
REDIS_COMMAND_TIMEOUT = 5.0

Loop = Callable[[threading.Event], None]


class LazySqliteStorage(SqliteStorage):
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


def init_app(app: Flask) -> None:
    """Give the app its queue (`receiver.huey`, which metrics also read) and an empty set of loops."""
    app.extensions["receiver.huey"] = make_huey(app.config)
    app.extensions["receiver.loops"] = {}


def get_queue(app: Flask) -> Huey:
    huey: Huey = app.extensions["receiver.huey"]
    return huey


def add_loop(app: Flask, name: str, loop: Loop) -> None:
    """Have the worker run `loop(stop)` in a thread named `name`."""
    loops: dict[str, Loop] = app.extensions["receiver.loops"]
    loops[name] = loop


def get_loops(app: Flask) -> dict[str, Loop]:
    """The worker's loops by thread name."""
    loops: dict[str, Loop] = app.extensions["receiver.loops"]
    return dict(loops)
