"""One message, one call (and its recordings' audio), one raw event."""

from __future__ import annotations

from typing import Any

from flask import abort, current_app, flash, redirect, render_template, url_for

from ..db import get_session
from ..models import MAX_ID, Role
from ..recordings import sweep as recordings_sweep
from ..recordings.files import NoAudio, stored_file
from ..recordings.serving import audio_response
from . import lookup
from .auth import requires
from .blueprint import bp


def _id(value: int) -> int:
    if not 0 < value <= MAX_ID:
        abort(404)
    return value


@bp.get("/messages/<path:message_id>")
def message(message_id: str) -> str:
    found = lookup.message(get_session(), message_id)
    if found is None:
        abort(404, description=f"No message {message_id!r}.")
    return render_template("console/message.html", view=found)


@bp.get("/calls/<int:call_id>")
def call(call_id: int) -> str:
    found = lookup.call(get_session(), _id(call_id))
    if found is None:
        abort(404, description=f"No call {call_id}.")
    return render_template("console/call.html", view=found)


@bp.get("/recordings/<int:recording_id>/audio")
def audio(recording_id: int) -> Any:
    """The stored audio, with range requests (the player seeks) and its SHA-256 as ETag."""
    session = get_session()
    try:
        recording, path = stored_file(session, _id(recording_id), current_app.config["RECORDINGS_DIR"])
    except NoAudio as exc:
        abort(404, description=str(exc))
    finally:
        session.rollback()
    response = audio_response(recording, path)
    response.headers["Cache-Control"] = "private, max-age=3600"
    return response


@bp.post("/recordings/<int:recording_id>/retry")
@requires(Role.operator)
def retry_recording(recording_id: int) -> Any:
    """Queue a recording's download again (operators)."""
    session = get_session()
    try:
        recordings_sweep.retry(session, _id(recording_id))
        flash(f"Recording {recording_id} queued for download again.")
    except LookupError:
        abort(404, description=f"No recording {recording_id}.")
    except recordings_sweep.NotRetryable as exc:
        flash(f"Recording {recording_id} not queued: {exc}.")
    call_id = lookup.recording_call(session, recording_id)
    return redirect(url_for("console.call", call_id=call_id))


@bp.get("/events/<int:event_id>")
def event(event_id: int) -> str:
    found = lookup.event(get_session(), _id(event_id))
    if found is None:
        abort(404, description=f"No raw event {event_id}.")
    return render_template("console/event.html", view=found)
