"""Service: the recordings no job holds. The sweep takes them back; `retry` puts one (the CLI
and the API) or every failed one back.

Every worker sweeps, so several may at once: each takes rows with one conditional UPDATE, and a
row one sweep took no longer matches for the next, so it is queued once per sweep interval.
"""

from __future__ import annotations

import logging
import os
import time
from datetime import timedelta

import sqlalchemy as sa
from sqlalchemy import orm

from ..db import utcnow
from ..models import Recording, RecordingState
from ..wording import plural
from . import queue as recordings_queue
from .download import WAITING, Policy

log = logging.getLogger(__name__)

S = RecordingState


def sweep(session: orm.Session, policy: Policy, limit: int = 1000) -> list[int]:
    """Take back recordings no job holds: a lease that ran out, or a job that never started."""
    now = utcnow()
    r = Recording
    lease_expired = sa.and_(r.locked_until.is_not(None), r.locked_until < now)
    never_started = sa.and_(
        r.locked_until.is_(None),
        sa.func.coalesce(r.next_attempt_at, r.created_at) < now - timedelta(seconds=policy.requeue_after),
    )
    stale = sa.and_(r.state.in_(WAITING), sa.or_(lease_expired, never_started))
    oldest_first = sa.select(r.id).where(stale).order_by(r.url_expires_at).limit(limit)
    with session.begin():
        ids = session.scalars(
            sa.update(r)
            .where(r.id.in_(oldest_first), stale)
            .values(
                state=sa.case((r.state == S.downloading, S.retrying), else_=r.state),
                last_error=sa.case(
                    (lease_expired, "the job holding it stopped (worker crash?); taken back by the sweep"),
                    else_=r.last_error,
                ),
                locked_until=None,
                next_attempt_at=now,
                updated_at=now,
            )
            .returning(r.id)
        ).all()
    if ids:
        log.info("sweep: %s no job held, queued again", plural(len(ids), "recording"))
    return list(ids)


def clean_temp_files(policy: Policy, older_than: float) -> int:
    """Remove partial downloads left by killed jobs."""
    removed = 0
    cutoff = time.time() - older_than
    tmp = policy.recordings_dir / ".tmp"
    if not tmp.is_dir():
        return 0
    for entry in os.scandir(tmp):
        try:
            if entry.is_file() and entry.stat().st_mtime < cutoff:
                os.unlink(entry.path)
                removed += 1
        except FileNotFoundError:
            continue
    return removed


class NotRetryable(Exception):
    """A recording that cannot be queued again now; the message says why."""


def retry(session: orm.Session, recording_id: int) -> None:
    """Queue one recording again with a fresh count of attempts: any state but `stored`, and only
    when no job holds it. Raise LookupError for an unknown id, NotRetryable saying why not."""
    ids = _reset(session, sa.and_(Recording.id == recording_id, Recording.state != S.stored, _free()))
    if not ids:
        with session.begin():
            state = session.scalar(sa.select(Recording.state).where(Recording.id == recording_id))
        if state is None:
            raise LookupError(recording_id)
        raise NotRetryable("already stored" if state == S.stored else "a job is working on it")
    recordings_queue.enqueue(ids)


def retry_failed(session: orm.Session) -> list[int]:
    """Queue every failed recording again with a fresh count of attempts; return their ids."""
    ids = _reset(session, Recording.state == S.failed)
    recordings_queue.enqueue(ids)
    return ids


def _free() -> sa.ColumnElement[bool]:
    r = Recording
    return sa.or_(r.locked_until.is_(None), r.locked_until < utcnow())


def _reset(session: orm.Session, condition: sa.ColumnElement[bool]) -> list[int]:
    """Put the matching recordings back to pending, due now, with fresh attempts. Should the queue
    not take the job, the row is what the sweep finds."""
    now = utcnow()
    r = Recording
    with session.begin():
        return list(
            session.scalars(
                sa.update(r)
                .where(condition)
                .values(state=S.pending, attempts=0, next_attempt_at=now, locked_until=None, updated_at=now)
                .returning(r.id)
            ).all()
        )
