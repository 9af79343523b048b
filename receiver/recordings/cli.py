"""`receiver worker`, `receiver recordings status`, `receiver recordings retry`: thin click wrappers
(registered in receiver.cli, which also gives the app its queue)."""

from __future__ import annotations

import logging
import threading

import click
import sqlalchemy as sa
from flask import current_app
from flask.cli import with_appcontext

from .. import tasks
from ..db import get_db, utcnow
from ..models import MAX_ID, Recording, RecordingState
from ..quiet import QuietRepeats
from ..wording import plural
from . import sweep as recordings_sweep

log = logging.getLogger(__name__)


def _jobs() -> tasks.Jobs:
    return tasks.get_jobs(current_app._get_current_object())  # type: ignore[attr-defined]


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
    jobs = _jobs()
    config = current_app.config
    workers = concurrency or config["WORKER_CONCURRENCY"]
    queue = "Redis" if config.get("REDIS_URL") else f"SQLite under {config['VAR_DIR']}"
    log.info("worker: %d download threads, queue on %s", workers, queue)
    for name in ("DOWNLOAD_ALLOW_PRIVATE", "DOWNLOAD_ALLOW_HTTP"):
        if config[name]:
            log.warning("worker: %s is on; recordings may be fetched from where they should not", name)
    stop = threading.Event()
    sweeper = threading.Thread(target=jobs.sweep_forever, args=(stop,), name="sweep", daemon=True)
    consumer = jobs.huey.create_consumer(
        workers=workers,
        worker_type="thread",
        periodic=True,  # other modules' periodic tasks (the archive policy) run in the worker
        initial_delay=0.05,
        max_delay=1.0,  # an idle SQLite queue is polled at least once a second
        check_worker_health=True,
    )
    sweeper.start()
    try:
        consumer.run()
    finally:
        stop.set()


@click.group("recordings", help="Call recordings and their downloads.")
def recordings_cli() -> None:
    pass


@recordings_cli.command("status")
@click.option(
    "--limit",
    type=click.IntRange(1, 1000),
    default=20,
    show_default=True,
    help="How many failed recordings to list (1 to 1000).",
)
@with_appcontext
def status_command(limit: int) -> None:
    """Count recordings by state; list the latest failures with their errors."""
    r = Recording
    now = utcnow()
    with get_db().new_session() as session:
        counts = dict(session.execute(sa.select(r.state, sa.func.count()).group_by(r.state)).all())
        waiting = [s for s in RecordingState if s not in (RecordingState.stored, RecordingState.failed)]
        oldest = session.scalar(sa.select(sa.func.min(r.created_at)).where(r.state.in_(waiting)))
        expired = session.scalar(
            sa.select(sa.func.count()).where(r.state.in_(waiting), r.url_expires_at <= now)
        )
        failed = session.execute(
            sa.select(r.id, r.call_id, r.attempts, r.last_error)
            .where(r.state == RecordingState.failed)
            .order_by(r.updated_at.desc())
            .limit(limit)
        ).all()
    for state in RecordingState:
        click.echo(f"{state.value:<12}{counts.get(state, 0)}")
    if oldest is not None:
        click.echo(
            f"oldest waiting since {oldest:%Y-%m-%d %H:%M:%S}Z ({(now - oldest).total_seconds():.0f} s)"
        )
    if expired:
        waiting_past = plural(expired, "recording")
        click.echo(f"{waiting_past} waiting past the URL's expiry (going through the recordings API)")
    for row in failed:
        attempts = plural(row.attempts, "attempt")
        click.echo(f"failed #{row.id} (call {row.call_id}, {attempts}): {row.last_error}")


@recordings_cli.command("retry")
@click.argument("recording_id", type=click.IntRange(1, MAX_ID), required=False)
@click.option("--failed", "all_failed", is_flag=True, help="Retry every failed recording.")
@with_appcontext
def retry_command(recording_id: int | None, all_failed: bool) -> None:
    """Queue a recording (or every failed one) again, with a fresh count of attempts."""
    if recording_id is None and not all_failed:
        raise click.UsageError("give a recording ID, or --failed to retry every failed recording")
    if recording_id is not None and all_failed:
        raise click.UsageError("give a recording ID or --failed, not both")
    with get_db().new_session() as session:
        if recording_id is None:
            count = len(recordings_sweep.retry_failed(session))
        else:
            try:
                recordings_sweep.retry(session, recording_id)
            except LookupError:
                raise click.ClickException(f"no recording {recording_id}") from None
            except recordings_sweep.NotRetryable as exc:
                raise click.ClickException(f"recording {recording_id} not queued: {exc}") from None
            count = 1
    click.echo(f"{plural(count, 'recording')} queued again")
