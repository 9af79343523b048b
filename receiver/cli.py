"""The `receiver` command: thin click wrappers over the services."""

from __future__ import annotations

import sys
from datetime import timedelta

import click
from flask import Flask, current_app
from flask.cli import FlaskGroup, with_appcontext

from . import migrate, sources
from .db import get_db


def _session():  # type: ignore[no-untyped-def]
    return get_db().new_session()


def _callback_url(name: str) -> str:
    base = current_app.config.get("PUBLIC_URL") or "http://<this-host>:8000"
    return f"{base.rstrip('/')}/hooks/{name}"


@click.group("sources", help="Webhook sources: one per webhook registered in the portal.")
def sources_cli() -> None:
    pass


@sources_cli.command("add")
@click.argument("name")
@click.option("--secret", help="The portal webhook's secret; generated when not given.")
@click.option("--validation-key", help="The portal webhook's token, for the verification handshake.")
@click.option("--signing-key", help="Key of the Signature header (HMAC-SHA256 of the body).")
@with_appcontext
def sources_add(name: str, secret: str | None, validation_key: str | None, signing_key: str | None) -> None:
    """Create a source; print its callback URL and its secret (once)."""
    with _session() as session:
        try:
            creds = sources.add_source(
                session, name, secret=secret, validation_key=validation_key, signing_key=signing_key
            )
        except sources.SourceError as exc:
            raise click.ClickException(str(exc)) from None
    click.echo(f"source {creds.name} created")
    click.echo(f"callback URL: {_callback_url(creds.name)}")
    click.echo("secret (shown once; the portal webhook's secret, sent as Authorization: Bearer):")
    click.echo(creds.secret)


@sources_cli.command("list")
@with_appcontext
def sources_list() -> None:
    """List sources with their failed-check counts."""
    with _session() as session:
        rows = sources.list_sources(session)
    if not rows:
        click.echo("no sources; add one with `receiver sources add NAME`")
    for source in rows:
        extras = []
        if source.validation_key_digest:
            extras.append("validation key")
        if source.signing_key:
            extras.append("signing key")
        if source.previous_secret_expires_at:
            extras.append(f"previous secret valid until {source.previous_secret_expires_at:%Y-%m-%d %H:%M}Z")
        click.echo(
            f"{source.name}\tcreated {source.created_at:%Y-%m-%d %H:%M}Z\t"
            f"failed checks {source.auth_failures}\t{', '.join(extras)}".rstrip()
        )


@sources_cli.command("rotate")
@click.argument("name")
@click.option("--grace-hours", type=float, help="How long the old secret keeps working (default 24).")
@with_appcontext
def sources_rotate(name: str, grace_hours: float | None) -> None:
    """Give a source a new secret; the old one works for a grace period."""
    hours = grace_hours if grace_hours is not None else current_app.config["SECRET_GRACE_HOURS"]
    with _session() as session:
        try:
            creds = sources.rotate_source(session, name, grace=timedelta(hours=hours))
        except sources.SourceError as exc:
            raise click.ClickException(str(exc)) from None
    click.echo(f"source {name}: new secret; the old one works for {hours:g} more hours")
    click.echo(creds.secret)


@sources_cli.command("remove")
@click.argument("name")
@with_appcontext
def sources_remove(name: str) -> None:
    """Remove a source: its webhooks are refused from now on; its data stays."""
    with _session() as session:
        try:
            sources.remove_source(session, name)
        except sources.SourceError as exc:
            raise click.ClickException(str(exc)) from None
    click.echo(f"source {name} removed; what it delivered is kept")


@click.group("apikeys", help="Read API keys.")
def apikeys_cli() -> None:
    pass


@apikeys_cli.command("create")
@click.argument("name")
@with_appcontext
def apikeys_create(name: str) -> None:
    """Create a read API key and print it (once)."""
    with _session() as session:
        try:
            key = sources.create_api_key(session, name)
        except sources.SourceError as exc:
            raise click.ClickException(str(exc)) from None
    click.echo(f"API key {name} created (shown once; send it as Authorization: Bearer):")
    click.echo(key)


@apikeys_cli.command("revoke")
@click.argument("name")
@with_appcontext
def apikeys_revoke(name: str) -> None:
    """Revoke a read API key."""
    with _session() as session:
        try:
            sources.revoke_api_key(session, name)
        except sources.SourceError as exc:
            raise click.ClickException(str(exc)) from None
    click.echo(f"API key {name} revoked")


@apikeys_cli.command("list")
@with_appcontext
def apikeys_list() -> None:
    """List API keys (never the keys themselves)."""
    with _session() as session:
        for key in sources.list_api_keys(session):
            state = f"revoked {key.revoked_at:%Y-%m-%d %H:%M}Z" if key.revoked_at else "active"
            click.echo(f"{key.name}\tcreated {key.created_at:%Y-%m-%d %H:%M}Z\t{state}")


@click.group("db", help="The database schema.")
def db_cli() -> None:
    pass


@db_cli.command("upgrade")
@click.option("--revision", default="head", show_default=True)
@with_appcontext
def db_upgrade(revision: str) -> None:
    """Migrate the database to the latest schema (the only way the schema is made)."""
    migrate.upgrade(current_app.config["DATABASE_URL"], revision)
    click.echo(f"database at {revision}")


def init_app(app: Flask) -> None:
    from .runner import run_command

    for group in (sources_cli, apikeys_cli, db_cli, run_command):
        app.cli.add_command(group)
    from . import recordings_cli  # the queue, `receiver worker`, `receiver recordings`

    recordings_cli.init_app(app)
    from .replay import replay_command  # `receiver replay`

    app.cli.add_command(replay_command)
    from .archive.cli import archive_cli  # `receiver archive export|verify|prune|import`

    app.cli.add_command(archive_cli)


def _create_app() -> Flask:
    from . import create_app

    # Commands and the worker run long statements (an archive export's sort, a prune's delete):
    # the statement timeout is the web's.
    return create_app({"DB_STATEMENT_TIMEOUT": 0.0})


cli = FlaskGroup(
    create_app=_create_app, add_default_commands=False, add_version_option=False, load_dotenv=False
)


def main() -> None:
    """Entry point of the `receiver` command."""
    sys.exit(cli.main())
