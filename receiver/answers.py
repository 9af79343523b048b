"""The JSON shape of every answer, the provider's own: `{status, code, message}` and any extras.

`status` is "OK" for a success and "ERROR" for anything else; `code` repeats the HTTP status.
Imports nothing, so that gunicorn's master (receiver.server) can build its error answers with it.
"""

from __future__ import annotations

from typing import Any


def body(code: int, message: str, **extra: Any) -> dict[str, Any]:
    """An answer's JSON document for HTTP status `code`."""
    document: dict[str, Any] = {"status": "OK" if code < 400 else "ERROR", "code": code, "message": message}
    document.update(extra)
    return document
