"""Reference app 2, what a user writes in an afternoon: INSERT the raw body into one table.

No authentication, no validation, no normalization, no idempotency: one INSERT and a commit
per request, answered with the new row's id. It gets the same database settings as receiver
(SQLite: WAL, busy_timeout and `SQLITE_SYNCHRONOUS`; PostgreSQL: a pool per worker), so the
ratio receiver/naive measures receiver's own work, not a different durability.
"""

from __future__ import annotations

import os
from typing import Any

import sqlalchemy as sa
from flask import Flask, request

hooks = sa.Table(
    "naive_hooks",
    sa.MetaData(),
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("received_at", sa.DateTime(timezone=True), server_default=sa.func.now()),
    sa.Column("body", sa.LargeBinary),
)


def _engine(url: str) -> sa.Engine:
    if not url.startswith("sqlite"):
        return sa.create_engine(url, pool_size=5, max_overflow=10)
    engine = sa.create_engine(url, connect_args={"timeout": 30})
    synchronous = os.environ.get("SQLITE_SYNCHRONOUS", "FULL").upper()

    @sa.event.listens_for(engine, "connect")
    def pragmas(dbapi_connection: Any, _record: Any) -> None:
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA busy_timeout=30000")
        cursor.execute(f"PRAGMA synchronous={synchronous}")
        cursor.close()

    return engine


engine = _engine(os.environ["DATABASE_URL"])
app = Flask(__name__)


@app.route("/hooks/<source>", methods=["GET", "POST", "PUT"])
def receive(source: str) -> tuple[dict[str, object], int]:
    with engine.begin() as connection:
        row_id = connection.execute(
            hooks.insert().values(body=request.get_data(cache=False)).returning(hooks.c.id)
        ).scalar_one()
    return {"status": "OK", "code": 200, "message": "stored", "id": row_id}, 200


if __name__ == "__main__":  # the harness makes the one table before the app starts
    hooks.create(engine, checkfirst=True)
