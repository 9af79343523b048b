"""Hand new recordings to the worker right after the webhook commits.

The recording row in SQL stays the source of truth: if this hand-over is lost (queue down or
hung, process killed), the worker's periodic sweep finds the pending row and enqueues it. So the
hand-over never fails the request, and never holds its answer more than half a second.
"""

from __future__ import annotations

import logging

from flask import current_app

from ..deadline import Deadline
from ..quiet import repeated

log = logging.getLogger(__name__)

# The longest a webhook's answer waits for the job queue, with room for the rest of the request
# within half a second (under the web's gevent worker; with threads, the queue connection's own
# timeouts bound it: receiver.tasks).
ENQUEUE_SECONDS = 0.4


def enqueue(recording_ids: list[int]) -> None:
    """Queue a download job for each recording; on failure say so once in a while, and go on."""
    from ..tasks import get_jobs

    jobs = get_jobs(current_app._get_current_object())  # type: ignore[attr-defined]
    failure: Exception | None = None
    with Deadline(ENQUEUE_SECONDS) as deadline:
        try:
            jobs.enqueue(recording_ids)
        except Exception as exc:
            failure = exc
    if deadline.expired:
        failure = TimeoutError(f"the job queue did not answer within {ENQUEUE_SECONDS:g} s")
    if failure is None:
        return
    held = jobs.enqueue_failures(type(failure).__name__)
    if held is not None:
        log.warning(
            "could not hand %d recording(s) to the worker, its sweep will (%s: %s)%s",
            len(recording_ids),
            type(failure).__name__,
            failure,
            repeated(held, jobs.enqueue_failures.interval),
        )
