"""/healthz (the process is up) and /readyz (the database answers and is migrated to head)."""

from __future__ import annotations

from flask import Blueprint, Flask, Response, current_app

from .db import answering_within, first_read, get_db, get_session
from .errors import answer
from .migrate import current_and_head

bp = Blueprint("health", __name__)


@bp.get("/healthz")
def healthz() -> tuple[Response, int]:
    """Answer while the process runs."""
    return answer(200, "up")


@bp.get("/readyz")
def readyz() -> tuple[Response, int]:
    """Answer 200 only when the database is reachable and its schema is at head."""
    engine = get_db().engine
    assert engine is not None
    session = get_session()
    try:
        with answering_within(session, current_app.config["DB_WAIT_TIMEOUT"]):
            current, head = first_read(session, lambda: current_and_head(engine))
    except Exception as exc:  # any failure to reach the database means not ready
        return answer(503, f"database unreachable: {type(exc).__name__}")
    if current != head:
        return answer(503, f"database at revision {current}, code expects {head}: run `receiver db upgrade`")
    return answer(200, "ready", revision=head)


def init_app(app: Flask) -> None:
    app.register_blueprint(bp)
