"""Hand new recordings to the worker right after the webhook commits.

The recording row in SQL stays the source of truth: if this hand-over is lost (queue down,
process killed), the worker's periodic sweep finds the pending row and enqueues it.
"""

from __future__ import annotations

import logging

from flask import current_app

log = logging.getLogger(__name__)


def enqueue(recording_ids: list[int]) -> None:
    """Queue a download job for each recording; never fail the request over it."""
    from .tasks import get_jobs

    jobs = get_jobs(current_app._get_current_object())  # type: ignore[attr-defined]
    for recording_id in recording_ids:
        try:
            jobs.enqueue([recording_id])
        except Exception:  # the sweep will find it
            log.warning("could not enqueue recording %s; the sweep will", recording_id, exc_info=True)
