"""The `receiver` command as a new user meets it: its help, and what every command does against a
database that is missing or not at head (one line, a non-zero exit, no file left behind)."""

from __future__ import annotations

import os
import socket
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import click
import pytest
import sqlalchemy as sa
from click.testing import CliRunner

from receiver import migrate
from receiver.cli import cli, script_info
from receiver.config import SETTINGS, normalise_database_url
from receiver.runner import check_bind, start_notices
from receiver.sources import add_source
from receiver.wording import duration, plural
from tests.conftest import _postgres_database

BIN = Path(sys.executable).parent

# The commands that run whatever the database's state: they make the schema, migrate first, or
# never read the database. Every other command is refused until the database is at head.
SCHEMA_FREE = {("db", "upgrade"), ("run",), ("archive", "verify"), ("openapi", "print"), ("openapi", "write")}


def leaves(group: click.Group, path: tuple[str, ...] = ()) -> Iterator[tuple[tuple[str, ...], click.Command]]:
    for name, command in sorted(group.commands.items()):
        if isinstance(command, click.Group):
            yield from leaves(command, (*path, name))
        else:
            yield (*path, name), command


def required_args(command: click.Command) -> list[str]:
    """Values for the command's required parameters (they are parsed before the app is built)."""
    args: list[str] = []
    for param in command.params:
        if not param.required:
            continue
        value = param.type.choices[0] if isinstance(param.type, click.Choice) else "1"
        args += [value] if isinstance(param, click.Argument) else [param.opts[0], str(value)]
    return args


@pytest.fixture
def fresh_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty working folder and an environment with none of receiver's settings."""
    folder = tmp_path / "fresh"
    folder.mkdir()
    monkeypatch.chdir(folder)
    for name in SETTINGS:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("RECEIVER_ENV_FILE", str(tmp_path / "no.env"))
    return folder


def invoke(*args: str, **env: str):  # type: ignore[no-untyped-def]
    return CliRunner().invoke(cli, list(args), obj=script_info(), env=env or None)


def files_in(folder: Path) -> list[str]:
    return sorted(str(path.relative_to(folder)) for path in folder.rglob("*"))


def test_help_shows_receivers_own_options_and_commands_only(fresh_folder):
    top = invoke("--help")
    assert top.exit_code == 0
    for flask_only in ("--app", "--debug", "--env-file", " routes ", " shell ", "list-config-prefixes"):
        assert flask_only not in top.output
    for path, _ in leaves(cli):
        result = invoke(*path, "--help")
        assert result.exit_code == 0, (path, result.output)
        assert "SPEC" not in result.output and "§" not in result.output, (path, result.output)
        for flask_only in ("--app", "--debug", "--env-file"):
            assert flask_only not in result.output
    assert files_in(fresh_folder) == []


def test_apikeys_help_promises_what_an_operate_key_can_do_through_the_api(app):
    writing = [
        (path, method)
        for path, item in app.test_client().get("/api/v1/openapi.json").get_json()["paths"].items()
        for method in item
        if method in ("post", "put", "patch", "delete")
    ]
    assert writing == [  # a new one: say so in the help
        ("/api/v1/events/{event_id}/replay", "post"),
        ("/api/v1/recordings/{recording_id}/retry", "post"),
    ]
    for path in (("apikeys",), ("apikeys", "create")):
        shown = " ".join(invoke(*path, "--help").output.split())
        assert "replay" in shown and "retry recordings" in shown, shown


def test_the_receiver_command_has_every_command_the_app_registers(app):
    assert set(app.cli.commands) <= set(cli.commands)


@pytest.mark.parametrize("path", [path for path, _ in leaves(cli) if path not in SCHEMA_FREE], ids=" ".join)
def test_every_command_refuses_a_missing_database_in_one_line_and_makes_no_file(fresh_folder, path):
    command = dict(leaves(cli))[path]
    result = invoke(*path, *required_args(command))
    assert result.exit_code == 1, result.output
    assert result.stdout == ""
    assert result.stderr.strip().splitlines() == [
        "Error: the database sqlite:///var/receiver.db does not exist: run `receiver db upgrade` to create it"
    ]
    assert files_in(fresh_folder) == []


def test_the_commands_that_need_no_schema_are_those_listed():
    assert SCHEMA_FREE <= {path for path, _ in leaves(cli)}


def test_openapi_print_needs_no_database(fresh_folder):
    result = invoke("openapi", "print")
    assert result.exit_code == 0, result.output
    assert '"/api/v1/messages"' in result.stdout
    assert files_in(fresh_folder) == []


def test_db_upgrade_makes_the_database_and_commands_then_work(fresh_folder):
    result = invoke("db", "upgrade")
    assert result.exit_code == 0, result.output
    assert (fresh_folder / "var" / "receiver.db").is_file()
    added = invoke("sources", "add", "portal")
    assert added.exit_code == 0, added.output
    assert invoke("sources", "list").stdout.startswith("portal\t")
    # The job queue's file is made by what queues a job, not by every command.
    assert not (fresh_folder / "var" / "huey.db").exists()


@pytest.fixture
def empty_database(tmp_path: Path) -> Iterator[str]:
    """A database that exists, with no schema: a fresh PostgreSQL database, or an empty SQLite file."""
    server = os.environ.get("TEST_DATABASE_URL")
    if server:
        yield from _postgres_database(normalise_database_url(server))
    else:
        path = tmp_path / "empty.db"
        sqlite3.connect(path).close()
        yield f"sqlite:///{path}"


def test_a_database_without_schema_or_at_an_unknown_revision_is_refused(fresh_folder, empty_database):
    shown = sa.make_url(empty_database).render_as_string(hide_password=True)
    result = invoke("apikeys", "list", DATABASE_URL=empty_database)
    assert result.exit_code == 1
    assert result.stderr.splitlines() == [
        f"Error: the database {shown} has no schema yet: run `receiver db upgrade`"
    ]
    migrate.upgrade(empty_database)
    assert invoke("apikeys", "list", DATABASE_URL=empty_database).exit_code == 0
    engine = sa.create_engine(empty_database)
    with engine.begin() as connection:
        connection.execute(sa.text("UPDATE alembic_version SET version_num = 'f00d'"))
    engine.dispose()
    result = invoke("sources", "list", DATABASE_URL=empty_database)
    assert result.exit_code == 1
    assert result.stderr.splitlines() == [
        f"Error: the database {shown} is at revision f00d, which this receiver does not know "
        "(a newer receiver migrated it): run that version"
    ]
    assert files_in(fresh_folder) == []


def test_an_unreachable_database_or_a_bad_setting_is_one_line(fresh_folder):
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # closed again: nothing listens there
    url = f"postgresql://postgres:hunter2@127.0.0.1:{port}/receiver"
    result = invoke("sources", "list", DATABASE_URL=url)
    assert result.exit_code == 1
    (line,) = result.stderr.splitlines()
    assert line.startswith(
        f"Error: cannot use the database postgresql+psycopg://postgres:***@127.0.0.1:{port}/"
    )
    assert "hunter2" not in result.output
    bad_zone = invoke("sources", "list", PROVIDER_TIMEZONE="Mars/Olympus")
    assert bad_zone.stderr.splitlines() == ["Error: setting PROVIDER_TIMEZONE: unknown zone 'Mars/Olympus'"]
    bad_url = invoke("sources", "list", DATABASE_URL="not a url")
    assert bad_url.exit_code == 1 and bad_url.stderr.startswith("Error: setting DATABASE_URL: ")
    assert len(bad_url.stderr.splitlines()) == 1
    assert files_in(fresh_folder) == []


@pytest.mark.slow
def test_the_installed_command_refuses_a_missing_database_and_leaves_the_folder_empty(tmp_path):
    env = {name: value for name, value in os.environ.items() if name not in SETTINGS}
    env["RECEIVER_ENV_FILE"] = str(tmp_path / "no.env")
    folder = tmp_path / "fresh"
    folder.mkdir()
    for argv in ([str(BIN / "receiver"), "sources", "list"], [sys.executable, "-m", "receiver", "worker"]):
        result = subprocess.run(argv, cwd=folder, env=env, capture_output=True, text=True, timeout=60)
        assert result.returncode == 1
        assert result.stdout == ""
        assert result.stderr.splitlines() == [
            "Error: the database sqlite:///var/receiver.db does not exist: "
            "run `receiver db upgrade` to create it"
        ]
    helped = subprocess.run(
        [str(BIN / "receiver"), "--help"], cwd=folder, env=env, capture_output=True, text=True, timeout=60
    )
    assert helped.returncode == 0 and "--app" not in helped.stdout
    assert files_in(folder) == []


def test_rotate_says_hour_in_the_singular(runner):
    assert runner.invoke(args=["sources", "add", "shop"]).exit_code == 0
    one = runner.invoke(args=["sources", "rotate", "shop", "--grace-hours", "1"])
    assert "the old one works for 1 more hour\n" in one.output
    two = runner.invoke(args=["sources", "rotate", "shop", "--grace-hours", "2"])
    assert "the old one works for 2 more hours\n" in two.output


def test_counts_and_durations_read_as_english():
    assert [plural(n, "hour") for n in (0, 1, 1.0, 1.5, 2)] == [
        "0 hours",
        "1 hour",
        "1 hour",
        "1.5 hours",
        "2 hours",
    ]
    assert plural(1, "raw event") == "1 raw event" and plural(3, "entry", "entries") == "3 entries"
    assert [duration(s) for s in (7200, 5400, 90, 1, 45.5)] == [
        "2 hours",
        "90 minutes",
        "90 seconds",
        "1 second",
        "45.5 seconds",
    ]


def test_run_tells_a_new_user_what_they_must_know(app, settings):
    with app.app_context():
        notices = start_notices(app.config, "127.0.0.1:8000")
    assert notices[0] == "web on http://127.0.0.1:8000, worker started (Ctrl-C stops both)"
    assert any(n.startswith("listening on 127.0.0.1 only") for n in notices)
    assert any(n.startswith("no sources yet: `receiver sources add NAME`") for n in notices)
    assert (
        "PROVIDER_ACCESS_TOKEN is not set: a recording not downloaded before its URL expires "
        "(2 hours after the call) cannot be fetched again"
    ) in notices
    app.config["PROVIDER_ACCESS_TOKEN"] = "token"
    with app.extensions["receiver.db"].new_session() as session:
        add_source(session, "portal")
    with app.app_context():
        assert start_notices(app.config, "0.0.0.0:8000") == [
            "web on http://0.0.0.0:8000, worker started (Ctrl-C stops both)"
        ]


@pytest.mark.parametrize("how", ["--bind", "BIND"])
def test_run_on_an_address_in_use_says_so_in_one_line_and_starts_nothing(migrated, tmp_path, how):
    """gunicorn would retry for seconds, then stop the service, after `run` had said it was up."""
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        bind = f"127.0.0.1:{taken.getsockname()[1]}"
        env = {
            **os.environ,
            "DATABASE_URL": migrated,
            "VAR_DIR": str(tmp_path / "var"),
            "RECEIVER_ENV_FILE": str(tmp_path / "no.env"),
        }
        args = [sys.executable, "-m", "receiver", "run"]
        if how == "--bind":
            args += ["--bind", bind]
        else:
            env["BIND"] = bind
        result = subprocess.run(args, env=env, cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert result.returncode == 1, result.stdout + result.stderr
    assert result.stdout == ""
    assert result.stderr.strip().splitlines() == [
        f"Error: {bind} is in use (another receiver, or another program?): "
        "pick another address with --bind HOST:PORT or the BIND setting"
    ]
    assert not (tmp_path / "var" / "prometheus").exists()  # nothing started


def test_check_bind_refuses_an_address_not_on_this_machine_and_passes_a_free_one():
    with pytest.raises(click.ClickException, match=r"^cannot listen on 192\.0\.2\.1:8000: "):
        check_bind("192.0.2.1:8000")  # TEST-NET-1: no interface has it
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    check_bind(f"127.0.0.1:{port}")
    check_bind("unix:/tmp/receiver.sock")  # gunicorn's own forms are left to gunicorn
    with socket.socket() as again:
        again.bind(("127.0.0.1", port))  # the check left the port free
