"""A stored recording's file as an HTTP answer, the same for the API and the console: range
requests (a player seeks), its SHA-256 as the ETag, an hour's caching.

A Range header that cannot be honoured as one range of bytes (unparseable, another unit, several
ranges) is ignored and the whole file is sent, as RFC 9110 (section 14.2) has it, where werkzeug
would answer 416. A well-formed range beyond the end of the file is still 416.
"""

from __future__ import annotations

from pathlib import Path

from flask import Response, request, send_file
from werkzeug.http import parse_range_header

from ..models import Recording


def audio_response(recording: Recording, path: Path) -> Response:
    """The file at `path` (the recording's, from receiver.recordings.files.stored_file)."""
    value = request.environ.get("HTTP_RANGE")
    if value is not None and not _one_byte_range(value):
        del request.environ["HTTP_RANGE"]
    return send_file(
        path,
        mimetype=recording.content_type or "application/octet-stream",
        etag=recording.sha256 or True,
        conditional=True,
        max_age=3600,
    )


def _one_byte_range(value: str) -> bool:
    parsed = parse_range_header(value)
    return parsed is not None and parsed.units == "bytes" and len(parsed.ranges) == 1
