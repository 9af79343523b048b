"""`receiver destinations add|list|pause|resume|remove|replay|rotate`: thin click wrappers."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta

import click
from flask import current_app
from flask.cli import with_appcontext
from sqlalchemy import orm

from ..db import get_db
from ..errors import ReceiverError
from ..wording import plural
from . import destinations as service


@contextmanager
def _session() -> Iterator[orm.Session]:
    """A session whose service errors become one line and a non-zero exit."""
    with get_db().new_session() as session:
        try:
            yield session
        except ReceiverError as exc:
            raise click.ClickException(exc.message) from None


def _since(value: str) -> datetime:
    try:
        when = datetime.fromisoformat(value.replace("Z", "+00:00"))
        return when.astimezone(UTC) if when.tzinfo else when.replace(tzinfo=UTC)
    except (ValueError, OverflowError):  # OverflowError: before the year 1 once in UTC
        raise click.BadParameter(f"not an ISO 8601 time: {value!r}") from None


@click.group("destinations", help="Where changes are forwarded: the customer's own endpoints.")
def destinations_cli() -> None:
    pass


@destinations_cli.command("add")
@click.argument("name")
@click.option("--url", required=True, help="The endpoint (https; a public address unless allowed).")
@click.option(
    "--events", default=None, help="Comma-separated types (default all): " + ", ".join(service.CHANGE_TYPES)
)
@click.option(
    "--rate-limit", type=float, default=None, help="Requests a second (default FORWARD_RATE_LIMIT)."
)
@click.option("--concurrency", type=int, default=None, help="Requests at once (default FORWARD_CONCURRENCY).")
@with_appcontext
def add_command(
    name: str, url: str, events: str | None, rate_limit: float | None, concurrency: int | None
) -> None:
    """Add a destination; print its signing secret, once, on the last line."""
    config = current_app.config
    with _session() as session:
        types = service.parse_types(events)
        secret = service.add(
            session,
            name,
            url,
            types,
            rate_limit=rate_limit if rate_limit is not None else config["FORWARD_RATE_LIMIT"],
            concurrency=concurrency if concurrency is not None else config["FORWARD_CONCURRENCY"],
            policy=service.url_policy(config),
        )
    click.echo(f"destination {name} added ({', '.join(types)}); its signing secret, shown only now:")
    click.echo(secret)


@destinations_cli.command("list")
@with_appcontext
def list_command() -> None:
    """Each destination: name, URL, event types, state, backlog."""
    with _session() as session:
        listed = service.listing(session)
    if not listed:
        click.echo("no destinations")
    for item in listed:
        state = item.state + (f" ({item.paused_reason})" if item.paused_reason else "")
        click.echo(
            f"{item.name}  {item.url}  {','.join(item.event_types)}  {state}  backlog {item.backlog}"
            f"  failed {item.failed}  {item.rate_limit:g}/s  concurrency {item.concurrency}"
        )


@destinations_cli.command("pause")
@click.argument("name")
@with_appcontext
def pause_command(name: str) -> None:
    """Stop sending to a destination; its changes wait."""
    with _session() as session:
        service.pause(session, name)
    click.echo(f"destination {name} paused")


@destinations_cli.command("resume")
@click.argument("name")
@with_appcontext
def resume_command(name: str) -> None:
    """Send to a paused destination again, what waited first."""
    with _session() as session:
        service.resume(session, name)
    click.echo(f"destination {name} active")


@destinations_cli.command("remove")
@click.argument("name")
@with_appcontext
def remove_command(name: str) -> None:
    """Delete a destination and what it had not received."""
    with _session() as session:
        dropped = service.remove(session, name)
    click.echo(f"destination {name} removed ({plural(dropped, 'undelivered change')} dropped)")


@destinations_cli.command("replay")
@click.argument("name")
@click.option("--since", required=True, help="ISO 8601 time; UTC when it names no zone.")
@with_appcontext
def replay_command(name: str, since: str) -> None:
    """Send again every change since a time: delivered, failed or never sent."""
    with _session() as session:
        count = service.replay(session, name, _since(since))
    click.echo(f"{plural(count, 'change')} queued again for {name}")


@destinations_cli.command("rotate")
@click.argument("name")
@click.option(
    "--grace-hours", type=float, default=24.0, show_default=True, help="How long the old secret still signs."
)
@with_appcontext
def rotate_command(name: str, grace_hours: float) -> None:
    """Give a destination a new secret; print it once, on the last line."""
    with _session() as session:
        secret = service.rotate(session, name, timedelta(hours=grace_hours))
    click.echo(f"destination {name}: new signing secret (the old one also signs for {grace_hours:g} h):")
    click.echo(secret)
