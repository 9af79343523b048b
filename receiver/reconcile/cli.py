"""`receiver reconcile sms|stuck|calls|inbound|report`: thin click wrappers over the service."""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import date, timedelta
from zoneinfo import ZoneInfo

import click
from flask import current_app
from flask.cli import with_appcontext

from .service import Outcome, ReconcileFailed, Reconciler, summary
from .setup import NoToken, reconciler
from .times import parse_day, parse_duration, today

DIFFER = 3  # the exit code of `report` when the counts differ


def _day(_ctx: click.Context, _param: click.Parameter, value: str | None) -> date | None:
    if value is None:
        return None
    try:
        return parse_day(value)
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from None


def _duration(_ctx: click.Context, _param: click.Parameter, value: str) -> timedelta:
    try:
        return parse_duration(value)
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from None


day_option = click.option(
    "--date",
    "day",
    callback=_day,
    help="The provider's day, YYYY-MM-DD in PROVIDER_TIMEZONE (default: yesterday).",
)


def _or_yesterday(day: date | None) -> date:
    if day is not None:
        return day
    return today(ZoneInfo(current_app.config["PROVIDER_TIMEZONE"])) - timedelta(days=1)


@contextmanager
def _reconciling() -> Iterator[Reconciler]:
    app = current_app._get_current_object()  # type: ignore[attr-defined]
    try:
        with reconciler(app, progress=sys.stderr.isatty()) as service:
            yield service
    except NoToken as exc:
        raise click.ClickException(str(exc)) from None
    except ReconcileFailed as exc:
        raise click.ClickException(f"{exc}; what was stored stays: run it again to finish") from None
    except KeyboardInterrupt:
        raise click.ClickException("interrupted; what was stored stays: run it again to finish") from None


def _run(kind: str, call: Callable[[Reconciler], Outcome], label: str) -> None:
    with _reconciling() as service:
        outcome = call(service)
    click.echo(f"{kind} {label}: {summary(outcome.counts, kind)}")


@click.group("reconcile", help="Fetch back from the provider's pull APIs what the webhooks missed.")
def reconcile_cli() -> None:
    pass


@reconcile_cli.command("sms")
@day_option
@with_appcontext
def sms_command(day: date | None) -> None:
    """Page through `sms/status` for a day: new messages and statuses are added (origin pull)."""
    day = _or_yesterday(day)
    _run("sms", lambda service: service.sms(day), str(day))


@reconcile_cli.command("calls")
@day_option
@with_appcontext
def calls_command(day: date | None) -> None:
    """Page through `voice/calls` for a day: calls receiver lacks, and recordings to fetch."""
    day = _or_yesterday(day)
    _run("calls", lambda service: service.calls(day), str(day))


@reconcile_cli.command("inbound")
@day_option
@with_appcontext
def inbound_command(day: date | None) -> None:
    """Page through `vmn/logs` for a day: inbound SMS no webhook brought."""
    day = _or_yesterday(day)
    _run("inbound", lambda service: service.inbound(day), str(day))


@reconcile_cli.command("stuck")
@click.option(
    "--older-than",
    default="6h",
    show_default=True,
    callback=_duration,
    help="Age since the message's latest event arrived: 30s, 90m, 6h, 2d.",
)
@click.option(
    "--within",
    default="7d",
    show_default=True,
    callback=_duration,
    help="Only messages receiver first heard of this recently.",
)
@with_appcontext
def stuck_command(older_than: timedelta, within: timedelta) -> None:
    """Ask by id for the status of each message still not final after that long."""
    _run("stuck", lambda service: service.stuck(older_than, within), f"older than {older_than}")


@reconcile_cli.command("report")
@day_option
@click.pass_context
@with_appcontext
def report_command(ctx: click.Context, day: date | None) -> None:
    """The provider's SMS counts for a day by status code beside receiver's; exit 3 when they differ."""
    day = _or_yesterday(day)
    with _reconciling() as service:
        outcome = service.report(day)
    comparison = outcome.comparison
    assert comparison is not None
    click.echo(f"{'status':<24}{'provider':>12}{'receiver':>12}{'difference':>12}")
    for code, theirs, ours, difference in comparison.rows:
        click.echo(f"{code:<24}{theirs:>12}{ours:>12}{difference:>+12}")
    if comparison.differences:
        click.echo(f"{day}: the counts differ ({comparison.differences} messages counted differently)")
        ctx.exit(DIFFER)
    click.echo(f"{day}: the counts agree")
