"""Alembic environment: the models' metadata, the URL from receiver's settings."""

from __future__ import annotations

import os

from alembic import context

from receiver.config import load_settings
from receiver.db import make_engine
from receiver.migrate import sqlite_file
from receiver.models import Base

config = context.config
target_metadata = Base.metadata


def database_url() -> str:
    url = config.get_main_option("sqlalchemy.url")
    return url or load_settings()["DATABASE_URL"]


def run_migrations_offline() -> None:
    context.configure(url=database_url(), target_metadata=target_metadata, literal_binds=True)
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    connection = config.attributes.get("connection")
    if connection is not None:
        _run(connection)
        return
    url = database_url()
    path = sqlite_file(url)
    if path is not None:  # migrating is the only thing that creates a SQLite database and its folder
        os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    engine = make_engine(url)
    with engine.connect() as connection:
        _run(connection)
    engine.dispose()


def _run(connection) -> None:  # type: ignore[no-untyped-def]
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        render_as_batch=connection.dialect.name == "sqlite",
    )
    with context.begin_transaction():
        context.run_migrations()


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
