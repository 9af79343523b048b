"""`receiver users`: the people who sign in to the console."""

from __future__ import annotations

import sys

import click
from flask.cli import with_appcontext

from ..db import get_db
from ..models import Role
from . import service


def _read_password(from_stdin: bool) -> str:
    if from_stdin:
        return sys.stdin.readline().rstrip("\r\n")
    return str(click.prompt("Password", hide_input=True, confirmation_prompt=True))


@click.group("users", help="People who sign in to the console (/console) and their roles.")
def users_cli() -> None:
    pass


@users_cli.command("add")
@click.argument("name")
@click.option(
    "--role",
    type=click.Choice([role.value for role in Role]),
    default=Role.viewer.value,
    show_default=True,
    help="viewer: reads; operator: also replays events and retries recordings; "
    "admin: also manages sources, API keys and users.",
)
@click.option(
    "--password-stdin", is_flag=True, help="Read the password from the first line of standard input."
)
@with_appcontext
def users_add(name: str, role: str, password_stdin: bool) -> None:
    """Create a console user; asks for the password (typed twice) unless --password-stdin."""
    password = _read_password(password_stdin)
    with get_db().new_session() as session:
        try:
            service.add_user(session, name, password, Role(role))
        except service.UserError as exc:
            raise click.ClickException(str(exc)) from None
    click.echo(f"user {name} created, role {role}")


@users_cli.command("list")
@with_appcontext
def users_list() -> None:
    """List users with their roles (never their passwords)."""
    with get_db().new_session() as session:
        users = service.list_users(session, limit=100000)
    if not users:
        click.echo("no users; add one with `receiver users add NAME --role admin`")
    for user in users:
        click.echo(f"{user.name}\t{user.role}\tcreated {user.created_at:%Y-%m-%d %H:%M}Z")


@users_cli.command("remove")
@click.argument("name")
@with_appcontext
def users_remove(name: str) -> None:
    """Delete a user; their console sessions end at once."""
    with get_db().new_session() as session:
        try:
            service.remove_user(session, name)
        except service.UserError as exc:
            raise click.ClickException(str(exc)) from None
    click.echo(f"user {name} removed")


@users_cli.command("passwd")
@click.argument("name")
@click.option(
    "--password-stdin", is_flag=True, help="Read the password from the first line of standard input."
)
@with_appcontext
def users_passwd(name: str, password_stdin: bool) -> None:
    """Set a user's password; their console sessions end at once."""
    password = _read_password(password_stdin)
    with get_db().new_session() as session:
        try:
            service.set_password(session, name, password)
        except service.UserError as exc:
            raise click.ClickException(str(exc)) from None
    click.echo(f"user {name}: password changed; their sessions ended")
