"""`receiver recordings status` and `receiver recordings retry`: thin click wrappers."""

from __future__ import annotations

import click
from flask.cli import with_appcontext

from ..db import get_db, utcnow
from ..models import MAX_ID, RecordingState
from ..wording import plural
from . import status, sweep


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
    now = utcnow()
    with get_db().new_session() as session:
        counts = status.counts(session)
        oldest = status.oldest_waiting(session)
        expired = status.waiting_past_expiry(session, now)
        failed = status.latest_failures(session, limit)
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
            count = len(sweep.retry_failed(session))
        else:
            try:
                sweep.retry(session, recording_id)
            except LookupError:
                raise click.ClickException(f"no recording {recording_id}") from None
            except sweep.NotRetryable as exc:
                raise click.ClickException(f"recording {recording_id} not queued: {exc}") from None
            count = 1
    click.echo(f"{plural(count, 'recording')} queued again")
