"""`receiver users` and the console's secret key."""

from __future__ import annotations

import multiprocessing
from pathlib import Path

import sqlalchemy as sa

from receiver.console.secret_key import generated_key
from receiver.models import Role, User


def users(app) -> dict[str, User]:
    with app.extensions["receiver.db"].new_session() as session:
        return {u.name: u for u in session.scalars(sa.select(User))}


def test_users_add_list_passwd_remove(app, runner):
    result = runner.invoke(
        args=["users", "add", "ana", "--role", "operator", "--password-stdin"], input="a long password\n"
    )
    assert result.exit_code == 0, result.output
    stored = users(app)["ana"]
    assert stored.role == Role.operator
    assert stored.password_digest.startswith("$argon2id$") and "a long password" not in stored.password_digest
    result = runner.invoke(args=["users", "add", "bo"], input="another password\nanother password\n")
    assert result.exit_code == 0, result.output
    assert users(app)["bo"].role == Role.viewer  # the default
    listing = runner.invoke(args=["users", "list"]).output
    assert "ana\toperator" in listing and "bo\tviewer" in listing and "$argon2" not in listing

    before = users(app)["ana"].password_digest
    result = runner.invoke(args=["users", "passwd", "ana", "--password-stdin"], input="a new long password\n")
    assert result.exit_code == 0 and users(app)["ana"].password_digest != before
    assert runner.invoke(args=["users", "remove", "bo"]).exit_code == 0
    assert "bo" not in users(app)


def test_users_refuses_a_short_password_a_taken_name_and_an_unknown_user(app, runner):
    result = runner.invoke(args=["users", "add", "ana", "--password-stdin"], input="short\n")
    assert result.exit_code != 0 and "at least 10 characters" in result.output
    runner.invoke(args=["users", "add", "ana", "--password-stdin"], input="a long password\n")
    result = runner.invoke(args=["users", "add", "ana", "--password-stdin"], input="a long password\n")
    assert result.exit_code != 0 and "exists already" in result.output
    assert runner.invoke(args=["users", "remove", "zed"]).exit_code != 0
    assert (
        runner.invoke(
            args=["users", "passwd", "zed", "--password-stdin"], input="a long password\n"
        ).exit_code
        != 0
    )
    assert (
        runner.invoke(
            args=["users", "add", "bad name", "--password-stdin"], input="a long password\n"
        ).exit_code
        != 0
    )


def test_a_password_change_ends_the_users_sessions(app, client, runner):
    from tests.console_story import sign_in, user

    user(app, "vera", Role.viewer)
    sign_in(client, "vera")
    assert client.get("/console/").status_code == 200
    runner.invoke(args=["users", "passwd", "vera", "--password-stdin"], input="a brand new password\n")
    assert client.get("/console/").status_code == 302


def _key(var_dir: str, queue) -> None:  # type: ignore[no-untyped-def]
    queue.put(generated_key(var_dir))


def test_processes_starting_at_once_agree_on_one_generated_secret_key(tmp_path: Path):
    context = multiprocessing.get_context("spawn")
    queue = context.Queue()
    processes = [context.Process(target=_key, args=(str(tmp_path / "var"), queue)) for _ in range(8)]
    for process in processes:
        process.start()
    keys = {queue.get(timeout=60) for _ in processes}
    for process in processes:
        process.join(timeout=60)
    assert len(keys) == 1
    (key,) = keys
    assert len(key) >= 40 and (tmp_path / "var" / "secret_key").read_text().strip() == key
    assert (tmp_path / "var" / "secret_key").stat().st_mode & 0o077 == 0
    assert [path.name for path in (tmp_path / "var").iterdir()] == ["secret_key"]  # no candidates left


def test_the_secret_key_setting_wins_and_no_file_is_made_until_the_console_is_used(settings, tmp_path):
    from receiver import create_app

    app = create_app(settings)
    app.test_client().get("/healthz")
    assert not (Path(settings["VAR_DIR"]) / "secret_key").exists()
    app.test_client().get("/console/sign-in")
    assert (Path(settings["VAR_DIR"]) / "secret_key").exists()
    app.extensions["receiver.db"].engine.dispose()
    fixed = create_app({**settings, "SECRET_KEY": "a fixed key for every machine"})
    fixed.test_client().get("/console/sign-in")
    assert fixed.secret_key == "a fixed key for every machine"
    fixed.extensions["receiver.db"].engine.dispose()
