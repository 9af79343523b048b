"""Reference app 3, the issue's naive receiver: a Bearer check and one INSERT of the body.

What a user writes in an afternoon, on the driver directly: sqlite3 with WAL and
`synchronous=NORMAL` on SQLite (the fsync of a commit skipped: what such an app would pick),
psycopg on PostgreSQL; one connection a thread, one INSERT and a commit a request.
"""

from __future__ import annotations

import os
import sqlite3
import threading
from typing import Any

from flask import Flask, request

URL = os.environ["DATABASE_URL"]
SECRET = os.environ.get("PLAIN_SECRET", "")
_local = threading.local()
app = Flask(__name__)


def _connection() -> Any:
    connection = getattr(_local, "connection", None)
    if connection is None:
        if URL.startswith("sqlite"):
            connection = sqlite3.connect(URL.removeprefix("sqlite:///"), timeout=30, isolation_level=None)
            connection.execute("PRAGMA journal_mode=WAL")
            connection.execute("PRAGMA synchronous=NORMAL")
        else:
            import psycopg

            connection = psycopg.connect(
                URL.replace("postgresql+psycopg://", "postgresql://"), autocommit=True
            )
        _local.connection = connection
    return connection


def create() -> None:
    _connection().execute(
        "CREATE TABLE IF NOT EXISTS plain_hooks (id INTEGER PRIMARY KEY, received_at TEXT, body BLOB)"
        if URL.startswith("sqlite")
        else "CREATE TABLE IF NOT EXISTS plain_hooks"
        " (id SERIAL PRIMARY KEY, received_at TIMESTAMPTZ, body BYTEA)"
    )


@app.route("/hooks/<source>", methods=["GET", "POST", "PUT"])
def receive(source: str) -> tuple[dict[str, object], int]:
    if SECRET and request.headers.get("Authorization") != f"Bearer {SECRET}":
        return {"status": "ERROR", "code": 401, "message": "missing or invalid secret"}, 401
    body = request.get_data(cache=False)
    connection = _connection()
    if URL.startswith("sqlite"):
        row = connection.execute(
            "INSERT INTO plain_hooks (received_at, body) VALUES (datetime('now'), ?) RETURNING id", (body,)
        ).fetchone()
    else:
        row = connection.execute(
            "INSERT INTO plain_hooks (received_at, body) VALUES (now(), %s) RETURNING id", (body,)
        ).fetchone()
    return {"status": "OK", "code": 200, "message": "stored", "id": row[0]}, 200


if __name__ == "__main__":  # the harness makes the one table before the app starts
    create()
