"""GET /api/v1/events (raw webhook requests by state), /api/v1/events/<id>, and their replay."""

from __future__ import annotations

from typing import Any

from flask import Response, current_app
from marshmallow import RAISE

from ..db import get_session
from ..errors import Conflict, NotFound
from ..ingest import replay
from ..ingest import service as ingest
from ..models import RawEvent
from . import queries, rows
from .args import EventArgsSchema
from .auth import protected_blueprint
from .lists import csv_documented, documented, list_or_export, valid_id
from .schemas import ErrorSchema, EventDetailSchema, EventPageSchema, EventSchema, ReplaySchema

blp = protected_blueprint("events", __name__, "Raw webhook requests as received, and their replay")
event_rows = rows.Resource(EventSchema(), RawEvent)


@blp.route("")
@blp.arguments(EventArgsSchema, location="query", unknown=RAISE)
@blp.response(200, EventPageSchema)
@csv_documented(blp)
@documented(blp)
def list_events(args: dict[str, Any]) -> Response:
    """List raw events, newest first, e.g. `?state=quarantined`; or export them as CSV."""
    return list_or_export(queries.EVENTS, args, event_rows)


@blp.route("/<int:event_id>")
@blp.response(200, EventDetailSchema)
@documented(blp, not_found="no such raw event")
def get_event(event_id: int) -> RawEvent:
    """Return one raw event with its headers and body."""
    event = get_session().get(RawEvent, valid_id(event_id, "raw event"))
    if event is None:
        raise NotFound(f"no raw event {event_id}")
    return event


@blp.route("/<int:event_id>/replay", methods=["POST"])
@blp.response(200, ReplaySchema, description="stored (or a duplicate of what is stored)")
@blp.alt_response(202, schema=ReplaySchema, description="kept, still not understood (accepted)")
@blp.alt_response(422, schema=ReplaySchema, description="fails validation again (quarantined), with errors")
@blp.alt_response(403, schema=ErrorSchema, description="a read API key: replay needs scope operate")
@blp.alt_response(409, schema=ErrorSchema, description="the event was processed already")
@documented(blp, not_found="no such raw event")
def replay_event(event_id: int) -> tuple[dict[str, Any], int]:
    """Parse a pending or quarantined raw event again and store what it says.

    Answers as the webhook would have answered the event now (the same HTTP code and body), with
    the raw event as it is afterwards under `event`.
    """
    session = get_session()
    try:
        outcome = replay.replay_one(
            session, valid_id(event_id, "raw event"), ingest.Settings.from_config(current_app.config)
        )
    except LookupError:
        raise NotFound(f"no raw event {event_id}") from None
    except replay.NotReplayable as exc:
        raise Conflict(str(exc)) from None
    event = session.get(RawEvent, event_id, populate_existing=True)
    return {**outcome.answer(), "event": event}, outcome.code
