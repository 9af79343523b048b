"""The `receiver` command: thin click wrappers over the services."""

from __future__ import annotations

import sys
from contextlib import AbstractContextManager

import click
import sqlalchemy as sa
from flask import Flask, current_app
from flask.cli import ScriptInfo, with_appcontext
from flask_smorest.spec import openapi_cli as smorest_openapi
from sqlalchemy import orm

from . import create_app, migrate, sources
from .archive.cli import archive_cli, verify_command
from .db import get_db
from .forwarding.cli import destinations_cli
from .ingest.replay import replay_command
from .models import ApiScope
from .reconcile.cli import reconcile_cli
from .recordings.cli import recordings_cli
from .runner import run_command
from .stats.cli import stats_cli
from .users.cli import users_cli
from .wording import plural
from .worker import worker_command


def _session() -> AbstractContextManager[orm.Session]:
    return get_db().new_session()


def _callback_url(name: str) -> str:
    return sources.callback_url(name, current_app.config.get("PUBLIC_URL"), "http://<this-host>:8000")


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
@click.option(
    "--grace-hours",
    type=float,
    help=f"How long the old secret keeps working: 0 (it stops now) to {sources.MAX_GRACE_HOURS} "
    "(default SECRET_GRACE_HOURS, 24).",
)
@with_appcontext
def sources_rotate(name: str, grace_hours: float | None) -> None:
    """Give a source a new secret; the old one works for a grace period."""
    hours = grace_hours if grace_hours is not None else current_app.config["SECRET_GRACE_HOURS"]
    with _session() as session:
        try:
            creds = sources.rotate_source(session, name, grace=sources.grace_period(hours))
        except sources.SourceError as exc:
            raise click.ClickException(str(exc)) from None
    old = f"works for {plural(hours, 'more hour')}" if hours else "stops working now"
    click.echo(f"source {name}: new secret; the old one {old}")
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


@click.group(
    "apikeys",
    help="Keys of the query API: `read` keys read; `operate` keys also replay events and retry recordings.",
)
def apikeys_cli() -> None:
    pass


@apikeys_cli.command("create")
@click.argument("name")
@click.option(
    "--scope",
    type=click.Choice([scope.value for scope in ApiScope]),
    default=ApiScope.read.value,
    show_default=True,
    help="read: the query API's lists and resources; operate: also replay raw events "
    "(POST /api/v1/events/ID/replay) and retry recordings (POST /api/v1/recordings/ID/retry).",
)
@with_appcontext
def apikeys_create(name: str, scope: str) -> None:
    """Create an API key and print it (once), alone on the last line."""
    with _session() as session:
        try:
            key = sources.create_api_key(session, name, ApiScope(scope))
        except sources.SourceError as exc:
            raise click.ClickException(str(exc)) from None
    click.echo(f"API key {name} created, scope {scope} (shown once; send it as Authorization: Bearer):")
    click.echo(key)


@apikeys_cli.command("revoke")
@click.argument("name")
@with_appcontext
def apikeys_revoke(name: str) -> None:
    """Revoke the active API key of that name (its name can then be given to a new key)."""
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
            click.echo(f"{key.name}\t{key.scope}\tcreated {key.created_at:%Y-%m-%d %H:%M}Z\t{state}")


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


def commands() -> list[click.Command]:
    """Every command of `receiver`, for the `receiver` group below and for `app.cli` (tests)."""
    return [
        run_command,
        db_cli,
        sources_cli,
        apikeys_cli,
        users_cli,
        worker_command,
        recordings_cli,
        replay_command,
        archive_cli,
        reconcile_cli,
        destinations_cli,
        stats_cli,
    ]


def init_app(app: Flask) -> None:
    """Give the app every command of `receiver` (`app.cli`, which tests invoke)."""
    for command in commands():
        app.cli.add_command(command)


@click.group("openapi", help="The query API's OpenAPI document (also served at /api/v1/openapi.json).")
def openapi_cli() -> None:
    pass


def _openapi_commands() -> None:
    for name in ("print", "write"):
        openapi_cli.add_command(smorest_openapi.commands[name])


_openapi_commands()


def _schema_free(ctx: click.Context | None) -> bool:
    """Whether the command runs whatever the database's state: it makes the schema, migrates
    first, or never reads the database."""
    free = {db_upgrade, run_command, verify_command, openapi_cli}
    while ctx is not None:
        if ctx.command in free:
            return True
        ctx = ctx.parent
    return False


def _create_app() -> Flask:
    """The app of a `receiver` command, refused in one line while the database is not at head."""
    try:
        # Commands and the worker run long statements (an archive export's sort, a prune's
        # delete): the statement timeout is the web's.
        app = create_app({"DB_STATEMENT_TIMEOUT": 0.0})
    except RuntimeError as exc:  # a setting that cannot be used
        raise click.ClickException(str(exc)) from None
    except sa.exc.ArgumentError as exc:
        raise click.ClickException(f"setting DATABASE_URL: {exc}") from None
    if not _schema_free(click.get_current_context(silent=True)):
        problem = migrate.schema_problem(app.extensions["receiver.db"].engine)
        if problem is not None:
            raise click.ClickException(problem)
    return app


@click.group(
    "receiver",
    help="A self-hosted webhook receiver for the Mobtexting / BICS CPaaS platform. "
    "Settings come from environment variables (and a .env file); see the README.",
    context_settings={"help_option_names": ["-h", "--help"]},
)
def cli() -> None:
    pass


for _command in [*commands(), openapi_cli]:
    cli.add_command(_command)


def script_info() -> ScriptInfo:
    """What a command's `with_appcontext` builds its app with (the app is built only when a command runs)."""
    return ScriptInfo(create_app=_create_app, set_debug_flag=False, load_dotenv_defaults=False)


def main() -> None:
    """Entry point of the `receiver` command."""
    sys.exit(cli.main(obj=script_info()))
