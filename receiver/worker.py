"""`receiver worker`: the queue's consumer (every package's tasks, the periodic ones included) and
the loops packages registered (receiver.jobqueue.add_loop), each in a thread of its own."""

from __future__ import annotations

import logging
import threading

import click
from flask import current_app
from flask.cli import with_appcontext

from .jobqueue import get_loops, get_queue
from .quiet import QuietRepeats

log = logging.getLogger(__name__)


@click.command("worker")
@click.option("--concurrency", type=int, help="Download threads (default WORKER_CONCURRENCY).")
@with_appcontext
def worker_command(concurrency: int | None) -> None:
    """Run the background worker: recording downloads and the sweep, until SIGINT or SIGTERM."""
    # Presigned recording URLs carry signatures in their query: keep httpx from logging URLs.
    logging.getLogger("httpx").setLevel(logging.WARNING)
    # While the queue or the database is down, every polling thread fails the same way, many
    # times a second: one traceback a cause, then a line with a count every 30 s.
    quiet = QuietRepeats()
    for handler in logging.getLogger().handlers:
        handler.addFilter(quiet)
    app = current_app._get_current_object()  # type: ignore[attr-defined]
    config = app.config
    workers = concurrency or config["WORKER_CONCURRENCY"]
    queue = "Redis" if config.get("REDIS_URL") else f"SQLite under {config['VAR_DIR']}"
    log.info("worker: %d download threads, queue on %s", workers, queue)
    for name in ("DOWNLOAD_ALLOW_PRIVATE", "DOWNLOAD_ALLOW_HTTP"):
        if config[name]:
            log.warning("worker: %s is on; recordings may be fetched from where they should not", name)
    stop = threading.Event()
    threads = [
        threading.Thread(target=loop, args=(stop,), name=name, daemon=True)
        for name, loop in get_loops(app).items()
    ]
    consumer = get_queue(app).create_consumer(
        workers=workers,
        worker_type="thread",
        periodic=True,  # periodic tasks (the archive policy) run in the worker
        initial_delay=0.05,
        max_delay=1.0,  # an idle SQLite queue is polled at least once a second
        check_worker_health=True,
    )
    for thread in threads:
        thread.start()
    try:
        consumer.run()
    finally:
        stop.set()
