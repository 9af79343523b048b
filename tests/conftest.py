"""Fixtures: a real database (SQLite file, or a fresh PostgreSQL database when
TEST_DATABASE_URL names a server), built by the migrations once per session and emptied
after each test, so that tests see real commits, as the worker and concurrent requests do."""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from flask import Flask
from flask.testing import FlaskClient, FlaskCliRunner

from receiver import create_app, migrate
from receiver.db import Database
from receiver.engine import make_engine
from receiver.models import ApiScope, Base
from receiver.sources import add_source, create_api_key


def _postgres_database(server_url: str) -> Iterator[str]:
    """Create a database of our own on the server; drop it at the end."""
    name = f"receiver_test_{secrets.token_hex(4)}"
    admin = sa.create_engine(server_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(sa.text(f'CREATE DATABASE "{name}"'))
    try:
        yield sa.make_url(server_url).set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as connection:
            connection.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


@pytest.fixture(scope="session")
def database_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    server = os.environ.get("TEST_DATABASE_URL")
    if server:
        from receiver.config import normalise_database_url

        yield from _postgres_database(normalise_database_url(server))
    else:
        path = tmp_path_factory.mktemp("db") / "receiver.db"
        yield f"sqlite:///{path}"


@pytest.fixture(scope="session")
def migrated(database_url: str) -> str:
    migrate.upgrade(database_url)
    return database_url


def empty_tables(url: str) -> None:
    engine = make_engine(url)
    with engine.begin() as connection:
        for table in reversed(Base.metadata.sorted_tables):
            connection.execute(table.delete())
    engine.dispose()


@pytest.fixture
def settings(migrated: str, tmp_path: Path) -> dict[str, Any]:
    """Settings for an app under test; tests may change them before asking for `app`."""
    return {
        "DATABASE_URL": migrated,
        "VAR_DIR": str(tmp_path / "var"),
        "RECORDINGS_DIR": str(tmp_path / "recordings"),
        "ARCHIVE_DIR": str(tmp_path / "archive"),
        "REDIS_URL": None,
        "METRICS_TOKEN": None,
        "PUBLIC_URL": "http://testserver",
        "PROVIDER_ACCESS_TOKEN": None,
        "TESTING": True,
    }


@pytest.fixture
def app(settings: dict[str, Any]) -> Iterator[Flask]:
    application = create_app(settings)
    yield application
    db: Database = application.extensions["receiver.db"]
    assert db.engine is not None
    db.engine.dispose()
    empty_tables(settings["DATABASE_URL"])


@pytest.fixture
def client(app: Flask) -> FlaskClient:
    return app.test_client()


@pytest.fixture
def runner(app: Flask) -> FlaskCliRunner:
    return app.test_cli_runner()


@pytest.fixture
def session(app: Flask) -> Iterator[sa.orm.Session]:
    with app.extensions["receiver.db"].new_session() as db_session:
        yield db_session


@pytest.fixture
def source_secret(app: Flask) -> str:
    """A source named `portal` with a known secret."""
    with app.extensions["receiver.db"].new_session() as db_session:
        return add_source(db_session, "portal", secret="s3cret-portal-webhook").secret


@pytest.fixture
def api_key(app: Flask) -> str:
    with app.extensions["receiver.db"].new_session() as db_session:
        return create_api_key(db_session, "tests")


@pytest.fixture
def operate_key(app: Flask) -> str:
    """A key that may also replay events."""
    with app.extensions["receiver.db"].new_session() as db_session:
        return create_api_key(db_session, "operator", ApiScope.operate)


class Hooks:
    """Posts webhooks the way the platform does."""

    def __init__(self, client: FlaskClient, secret: str) -> None:
        self.client = client
        self.secret = secret

    def post(self, payload: Any, path: str = "/hooks/portal", **kwargs: Any) -> Any:
        headers = {"Authorization": f"Bearer {self.secret}", **kwargs.pop("headers", {})}
        if isinstance(payload, bytes | str):
            return self.client.post(path, data=payload, headers=headers, **kwargs)
        return self.client.post(path, json=payload, headers=headers, **kwargs)


@pytest.fixture
def hooks(client: FlaskClient, source_secret: str) -> Hooks:
    return Hooks(client, source_secret)


@pytest.fixture
def api(client: FlaskClient, api_key: str) -> Any:
    """GET the read API with a valid key."""

    def get(path: str, **kwargs: Any) -> Any:
        headers = {"Authorization": f"Bearer {api_key}", **kwargs.pop("headers", {})}
        return client.get(path, headers=headers, **kwargs)

    return get


def row_counts(app: Flask) -> dict[str, int]:
    """How many rows each table holds, read in a fresh session."""
    with app.extensions["receiver.db"].new_session() as db_session:
        return {
            table.name: db_session.scalar(sa.select(sa.func.count()).select_from(table)) or 0
            for table in Base.metadata.sorted_tables
        }


def raw_events(app: Flask) -> list[Any]:
    """Every stored raw event, oldest first."""
    from receiver.models import RawEvent

    with app.extensions["receiver.db"].new_session() as db_session:
        return list(db_session.scalars(sa.select(RawEvent).order_by(RawEvent.id)))
