"""receiver with forwarding's outbox turned off: what ingest costs without it, beside `receiver`.

The one hand-over to forwarding (receiver.forwarding.record_changes) made a no-op before the app
is built; everything else is receiver as the Procfile serves it. A benchmark's variant only:
without the outbox, changes are neither forwarded nor offered by `GET /api/v1/changes`.
"""

from __future__ import annotations

from typing import Any

from receiver import forwarding


def _nothing(*_args: Any, **_kwargs: Any) -> None:
    return None


forwarding.record_changes = _nothing

from wsgi import app  # noqa: E402  (after the patch, as the app would be loaded)

__all__ = ["app"]
