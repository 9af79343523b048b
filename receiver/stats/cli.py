"""`receiver stats rollup`: bring the statistics summaries up to date now (the worker does it
each minute), or rebuild them from the messages."""

from __future__ import annotations

import sys
from datetime import timedelta

import click
from flask import current_app
from flask.cli import with_appcontext

from ..db import get_db
from .jobs import CatchUp, catch_up, rebuild


@click.group("stats", help="Delivery statistics: the summaries behind /api/v1/stats.")
def stats_cli() -> None:
    pass


@stats_cli.command("rollup")
@click.option("--rebuild", "from_scratch", is_flag=True, help="Drop the summaries and build them again.")
@with_appcontext
def rollup_command(from_scratch: bool) -> None:
    """Roll up every message changed since the last run (all of history the first time)."""
    grace = timedelta(seconds=current_app.config["STATS_ROLLUP_GRACE"])

    def progress(result: CatchUp) -> None:
        if sys.stderr.isatty():
            click.echo(f"\r{result.hours} hours rolled up", nl=False, err=True)

    with get_db().new_session() as session:
        if from_scratch:
            rebuild(session)
        result = catch_up(session, grace, progress=progress)
    if sys.stderr.isatty():
        click.echo("", err=True)
    click.echo(f"stats roll-up: {result.hours} hours rebuilt; summaries current")
