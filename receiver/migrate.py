"""Alembic, driven from the app's settings: `receiver db upgrade`, the readiness check, and the
check every command makes before it touches the database."""

from __future__ import annotations

import os
from pathlib import Path

import sqlalchemy as sa
from alembic import command
from alembic.config import Config
from alembic.script import ScriptDirectory


def migrations_dir() -> Path:
    """The alembic scripts: receiver/migrations in an installed wheel, ./migrations in a checkout."""
    packaged = Path(__file__).with_name("migrations")
    if packaged.is_dir():
        return packaged
    return Path(__file__).resolve().parent.parent / "migrations"


def alembic_config(database_url: str) -> Config:
    config = Config()
    config.set_main_option("script_location", str(migrations_dir()))
    config.set_main_option("sqlalchemy.url", database_url.replace("%", "%%"))
    return config


def sqlite_file(database_url: str) -> str | None:
    """The file of a SQLite URL (None for other databases and in-memory SQLite)."""
    url = sa.make_url(database_url)
    if url.get_backend_name() != "sqlite" or url.database in (None, "", ":memory:"):
        return None
    return url.database


def upgrade(database_url: str, revision: str = "head") -> None:
    """Migrate to `revision` (migrations/env.py creates a SQLite file's folder: nothing else does)."""
    command.upgrade(alembic_config(database_url), revision)


_HEAD: str | None = None


def head_revision() -> str | None:
    global _HEAD
    if _HEAD is None:
        _HEAD = ScriptDirectory.from_config(alembic_config("sqlite://")).get_current_head()
    return _HEAD


def current_and_head(engine: sa.Engine) -> tuple[str | None, str | None]:
    """The database's schema revision (None before any migration) and the code's."""
    with engine.connect() as connection:
        if not sa.inspect(connection).has_table("alembic_version"):
            return None, head_revision()
        # Read directly: alembic's MigrationContext logs two INFO lines each time (every /readyz).
        current = connection.scalar(sa.text("SELECT version_num FROM alembic_version"))
    return current, head_revision()


FIX = "run `receiver db upgrade`"


def schema_problem(engine: sa.Engine) -> str | None:
    """Why this database cannot be used as it is, in one line with its fix; None when it is at head.

    A SQLite file that does not exist is not opened (opening would create it).
    """
    shown = engine.url.render_as_string(hide_password=True)
    path = sqlite_file(shown)
    if path is not None and not os.path.exists(path):
        return f"the database {shown} does not exist: {FIX} to create it"
    try:
        current, head = current_and_head(engine)
    except sa.exc.DBAPIError as exc:
        reason = str(exc.orig).strip().splitlines()[0] if exc.orig is not None else type(exc).__name__
        return f"cannot use the database {shown}: {reason}"
    if current == head:
        return None
    if current is None:
        return f"the database {shown} has no schema yet: {FIX}"
    script = ScriptDirectory.from_config(alembic_config("sqlite://"))
    if current not in {revision.revision for revision in script.walk_revisions()}:
        return (
            f"the database {shown} is at revision {current}, which this receiver does not know "
            "(a newer receiver migrated it): run that version"
        )
    return f"the database {shown} is at revision {current}, this receiver needs {head}: {FIX}"
