"""GET /api/v1/recordings (by state, with their call ids), /api/v1/recordings/<id>/audio: a
stored recording's file, with its type and an ETag; and POST /api/v1/recordings/<id>/retry."""

from __future__ import annotations

from typing import Any

from flask import Response, current_app
from marshmallow import RAISE

from ..db import get_db, get_session
from ..errors import Conflict, NotFound
from ..models import Recording
from ..recordings import sweep
from ..recordings.files import MissingFile, NoAudio, stored_file
from ..recordings.serving import audio_response
from . import queries, resources
from .args import RecordingArgsSchema
from .auth import protected_blueprint
from .lists import csv_documented, documented, list_or_export, valid_id
from .schemas import ErrorSchema, RecordingItemSchema, RecordingPageSchema

blp = protected_blueprint("recordings", __name__, "Call recordings and their downloads")


@blp.route("")
@blp.arguments(RecordingArgsSchema, location="query", unknown=RAISE)
@blp.response(200, RecordingPageSchema)
@csv_documented(blp)
@documented(blp)
def list_recordings(args: dict[str, Any]) -> Response:
    """List recordings, newest first, e.g. `?state=failed`, each with its call id; or export them as CSV."""
    return list_or_export(queries.RECORDINGS, args, resources.RECORDING)


@blp.route("/<int:recording_id>/audio")
@blp.doc(
    security=[{"bearer": []}],
    responses={
        "200": {"description": "the audio file", "content": {"audio/*": {}}},
        "304": {"description": "not modified (If-None-Match)"},
    },
)
@blp.alt_response(404, schema=ErrorSchema, description="no such recording, or not stored yet")
@blp.alt_response(401, schema=ErrorSchema, description="missing or invalid API key")
def get_audio(recording_id: int) -> Response:
    """Stream the stored audio; its SHA-256 is the ETag."""
    # The request's session closes (its connection back to the pool) before the file streams.
    try:
        recording, path = stored_file(
            get_session(), valid_id(recording_id, "recording"), current_app.config["RECORDINGS_DIR"]
        )
    except MissingFile as exc:
        current_app.logger.error("%s", exc)
        raise NotFound(str(exc)) from None
    except NoAudio as exc:
        raise NotFound(str(exc)) from None
    return audio_response(recording, path)


@blp.route("/<int:recording_id>/retry", methods=["POST"])
@blp.response(202, RecordingItemSchema, description="queued again: the recording as it is now")
@blp.alt_response(403, schema=ErrorSchema, description="a read API key: a retry needs scope operate")
@blp.alt_response(409, schema=ErrorSchema, description="stored already, or a job is working on it")
@documented(blp, not_found="no such recording")
def retry_recording(recording_id: int) -> tuple[Recording, int]:
    """Queue a recording's download again with a fresh count of attempts (any state but stored,
    and not while a job holds it), as `receiver recordings retry ID` does."""
    with get_db().new_session() as session:
        try:
            sweep.retry(session, valid_id(recording_id, "recording"))
        except LookupError:
            raise NotFound(f"no recording {recording_id}") from None
        except sweep.NotRetryable as exc:
            raise Conflict(f"recording {recording_id} not queued: {exc}") from None
        return session.get_one(Recording, recording_id, populate_existing=True), 202
