"""The record of each reconciliation run: counts, progress, outcome; and taking a stopped one up again.

A paged run commits its progress (`pages_done`: the pages stored without a gap from the first)
in the transaction that stores a page's rows. A run that failed, was interrupted, or whose
process died (no heartbeat for STALE) is taken up again by the next run of the same kind and
day, within RESUME_WITHIN: that run starts after the stored pages. Later, the whole day is read
again: statuses that arrived since then are on pages already read. Two runs taking up the same
one at once: one conditional UPDATE lets only one of them resume it; the other starts afresh,
which stores nothing twice either (every write is an INSERT on a unique key).
"""

from __future__ import annotations

import os
import socket
from dataclasses import asdict, dataclass, fields
from datetime import date, timedelta
from typing import Any, cast

import sqlalchemy as sa
from sqlalchemy import orm

from ..db import utcnow
from ..models import ReconcileRun

STALE = timedelta(minutes=15)
RESUME_WITHIN = timedelta(hours=6)


@dataclass
class Counts:
    """What a run (or one page of it) found."""

    seen: int = 0  # rows the provider listed
    new_rows: int = 0  # messages, calls or inbound messages receiver never had
    new_statuses: int = 0  # status events a message's history lacked (a new message's first too)
    unchanged: int = 0  # rows that added nothing
    recordings: int = 0  # recordings to download, from pulled calls

    def __iadd__(self, other: Counts) -> Counts:
        for field in fields(self):
            setattr(self, field.name, getattr(self, field.name) + getattr(other, field.name))
        return self

    def as_dict(self) -> dict[str, int]:
        return asdict(self)


class RunLog:
    """One run's row in `reconcile_runs`."""

    def __init__(self, sessionmaker: orm.sessionmaker[orm.Session], kind: str, day: date | None) -> None:
        self.sessionmaker = sessionmaker
        self.kind = kind
        self.day = day
        self.id = 0
        self.first_page = 1
        self.pages_done = 0

    def start(self, resume: bool = True) -> RunLog:
        """Insert the run's row; take up a stopped run of the same kind and day when there is one."""
        now = utcnow()
        with self.sessionmaker() as session, session.begin():
            previous = self._stopped(session) if resume else None
            resumed_from = None
            if previous is not None:
                taken = cast(
                    "sa.CursorResult[Any]",
                    session.execute(
                        sa.update(ReconcileRun)
                        .where(ReconcileRun.id == previous.id, ReconcileRun.state == previous.state)
                        .where(ReconcileRun.heartbeat_at == previous.heartbeat_at)
                        .values(state="resumed")
                    ),
                ).rowcount
                if taken:
                    resumed_from, self.pages_done = previous.id, previous.pages_done
            self.first_page = self.pages_done + 1
            run = ReconcileRun(
                kind=self.kind,
                day=self.day,
                state="running",
                host=f"{socket.gethostname()}:{os.getpid()}"[:255],
                started_at=now,
                heartbeat_at=now,
                resumed_from=resumed_from,
                pages_done=self.pages_done,
            )
            session.add(run)
            session.flush()
            self.id = run.id
        return self

    def _stopped(self, session: orm.Session) -> ReconcileRun | None:
        """The latest run of this kind and day, if it stopped part-way not long ago."""
        now = utcnow()
        run = ReconcileRun
        latest = session.scalars(
            sa.select(run).where(run.kind == self.kind, run.day == self.day).order_by(run.id.desc()).limit(1)
        ).first()
        if latest is None or latest.pages_done == 0 or latest.heartbeat_at < now - RESUME_WITHIN:
            return None
        if latest.state == "failed" or (latest.state == "running" and latest.heartbeat_at < now - STALE):
            return latest
        return None

    def record(
        self,
        session: orm.Session,
        counts: Counts,
        pages_done: int | None = None,
        pages_total: int | None = None,
    ) -> None:
        """Add a page's counts (and progress) to the run, in the caller's transaction."""
        run = ReconcileRun
        values: dict[str, Any] = {
            name: getattr(run, name) + value for name, value in counts.as_dict().items() if value
        }
        values["heartbeat_at"] = utcnow()
        if pages_done is not None:
            self.pages_done = pages_done
            values["pages_done"] = pages_done
        if pages_total is not None:
            values["pages_total"] = pages_total
        session.execute(sa.update(run).where(run.id == self.id).values(**values))

    def finish(self, state: str = "done", error: str | None = None, **values: Any) -> None:
        """Close the run: `done`, or `failed` with what went wrong."""
        now = utcnow()
        with self.sessionmaker() as session, session.begin():
            session.execute(
                sa.update(ReconcileRun)
                .where(ReconcileRun.id == self.id)
                .values(state=state, error=error, finished_at=now, heartbeat_at=now, **values)
            )

    def counts(self) -> Counts:
        """The run's counts as stored."""
        with self.sessionmaker() as session:
            run = session.get(ReconcileRun, self.id)
            assert run is not None
            return Counts(run.seen, run.new_rows, run.new_statuses, run.unchanged, run.recordings)


def latest_runs(session: orm.Session, limit: int = 20, kind: str | None = None) -> list[ReconcileRun]:
    """The most recent runs, newest first (optionally of one kind), for a health page.

    Each has `kind`, `day` (none for `stuck`), `state` (`running`, `done`, `failed`, `resumed`: a
    later run took it up), `started_at`, `finished_at`, `seen`, `new_rows`, `new_statuses`,
    `unchanged`, `recordings`, `differences` (`report`: messages counted differently), `details`
    (`report`: the counts by status code) and `error`.
    """
    query = sa.select(ReconcileRun).order_by(ReconcileRun.started_at.desc(), ReconcileRun.id.desc())
    if kind is not None:
        query = query.where(ReconcileRun.kind == kind)
    return list(session.scalars(query.limit(limit)))
