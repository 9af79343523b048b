"""Service: run one reconciliation (a kind and a day, or the stuck messages) and keep its record.

Each page is stored in one transaction together with the run's counts and progress, so what a
failed run stored stays stored and counted, and the next run of the same day starts after it.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import date, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import sqlalchemy as sa
from sqlalchemy import orm
from tqdm import tqdm

from ..db import utcnow
from ..models import FINAL_STATUSES, Message, MessageEvent, Status
from ..provider import ProviderClient, ProviderError
from . import calls, inbound, messages
from .pulling import PullFailed, in_parallel, pages
from .report import Comparison, provider_counts, receiver_counts
from .runs import Counts, RunLog

log = logging.getLogger(__name__)

_RETRYABLE_SQLSTATES = frozenset({"40P01", "40001"})  # deadlock, serialization failure
_ATTEMPTS = 3
STATUS_PATHS = {"sms": "sms/status", "whatsapp": "whatsapp/message/status"}
STATUS_PATHS |= {"rcs": "rcs/message/status", "viber": "viber/message/status"}


class ReconcileFailed(Exception):
    """A run that stopped: the message says where; what it stored stays."""


@dataclass
class Outcome:
    run_id: int
    counts: Counts
    comparison: Comparison | None = None


@dataclass
class Settings:
    zone: ZoneInfo
    country_code: str
    match_window: float
    url_ttl: int
    workers: int

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> Settings:
        return cls(
            zone=ZoneInfo(config["PROVIDER_TIMEZONE"]),
            country_code=config["DEFAULT_COUNTRY_CODE"],
            match_window=config["RECORDING_MATCH_WINDOW"],
            url_ttl=config["RECORDING_URL_TTL"],
            workers=config["RECONCILE_CONCURRENCY"],
        )


class Reconciler:
    """Reconciliation runs against one provider client and one database."""

    def __init__(
        self,
        sessionmaker: orm.sessionmaker[orm.Session],
        client: ProviderClient,
        settings: Settings,
        *,
        progress: bool = False,
        new_recordings: Callable[[list[int]], None] | None = None,
    ) -> None:
        self.sessionmaker = sessionmaker
        self.client = client
        self.settings = settings
        self.progress = progress
        self.new_recordings = new_recordings

    # -- the kinds ---------------------------------------------------------------------------

    def sms(self, day: date) -> Outcome:
        """`sms/status?date=D`, 100 a page: every SMS submitted that day, and its status."""
        s = self.settings

        def store(session: orm.Session, items: list[dict[str, Any]]) -> Counts:
            return messages.store(session, (messages.sms_row(r, s.zone, s.country_code) for r in items))

        return self._paged("sms", day, "sms/status", {"date": f"{day:%Y-%m-%d}"}, store)

    def calls(self, day: date) -> Outcome:
        """`voice/calls` for the day, 15 a page."""
        s = self.settings
        found: list[int] = []

        def store(session: orm.Session, items: list[dict[str, Any]]) -> Counts:
            rows = [calls.call_row(r, s.zone, s.country_code) for r in items]
            counts, recordings = calls.store(session, rows, s.match_window, s.url_ttl)
            found.extend(recordings)
            return counts

        params = {"datetime[end_at]": f"{day:%b %d, %Y} - {day:%b %d, %Y}"}
        try:
            return self._paged("calls", day, "voice/calls", params, store)
        finally:
            if found and self.new_recordings is not None:
                self.new_recordings(found)

    def inbound(self, day: date) -> Outcome:
        """`vmn/logs` for the day (its own limit: 30 requests a minute)."""
        s = self.settings

        def store(session: orm.Session, items: list[dict[str, Any]]) -> Counts:
            return inbound.store(session, [inbound.inbound_row(r, s.zone, s.country_code) for r in items])

        return self._paged("inbound", day, "vmn/logs", {"date[created_at]": f"{day:%Y-%m-%d}"}, store)

    def stuck(self, older_than: timedelta, within: timedelta) -> Outcome:
        """Ask by id for each message still non-final `older_than` after its latest event arrived."""
        run = RunLog(self.sessionmaker, "stuck", None).start(resume=False)
        s = self.settings
        with self.sessionmaker() as session:
            wanted = self._stuck(session, older_than, within)
        counts = Counts()
        bar = tqdm(total=len(wanted), desc="stuck", unit="msg", disable=not self.progress)

        def fetch(item: tuple[str, str]) -> list[dict[str, Any]]:
            message_id, channel = item
            data = self.client.get(STATUS_PATHS[channel], {"id": message_id}).get("data")
            rows = data if isinstance(data, list) else [data] if isinstance(data, dict) else []
            return [r for r in rows if isinstance(r, dict) and str(r.get("id")) == message_id]

        def name(item: tuple[str, str]) -> str:
            return f"{STATUS_PATHS[item[1]]}?id={item[0]}"

        def row(item: tuple[str, str], raw: dict[str, Any]) -> messages.PulledMessage | None:
            if item[1] == "sms":
                return messages.sms_row(raw, s.zone, s.country_code)
            return messages.channel_row(raw, item[1], s.zone, s.country_code)

        with bar, _Failing(run, "stuck"):
            for batch in in_parallel(fetch, wanted, s.workers, name):
                pulled = [row(item, r) for item, rows in batch for r in rows]

                def write(session: orm.Session, pulled: list[Any] = pulled) -> Counts:
                    return messages.store(session, pulled)

                counts += self._write(write, run)
                bar.update(len(batch))
        run.finish()
        return Outcome(run.id, counts)

    def report(self, day: date) -> Outcome:
        """The provider's counts for the day beside receiver's."""
        run = RunLog(self.sessionmaker, "report", day).start(resume=False)
        with _Failing(run, "sms/report"):
            provider = provider_counts(self.client, day)
        with self.sessionmaker() as session:
            mine = receiver_counts(session, day, self.settings.zone)
        comparison = Comparison(day, provider, mine)
        seen = sum(provider.values())
        run.finish(differences=comparison.differences, details=comparison.as_details(), seen=seen)
        return Outcome(run.id, Counts(seen=seen), comparison)

    # -- the machinery -----------------------------------------------------------------------

    def _paged(
        self,
        kind: str,
        day: date,
        path: str,
        params: dict[str, Any],
        store: Callable[[orm.Session, list[dict[str, Any]]], Counts],
    ) -> Outcome:
        run = RunLog(self.sessionmaker, kind, day).start()
        if run.first_page > 1:
            log.info("reconcile %s %s: taking up run after page %d", kind, day, run.first_page - 1)
        done: set[int] = set()
        last: int | None = None
        prefix = run.first_page - 1
        counts = Counts()
        bar = tqdm(desc=f"{kind} {day}", unit="page", disable=not self.progress, initial=prefix)
        with bar, _Failing(run, path):
            for batch in pages(self.client, path, params, run.first_page, self.settings.workers):
                for page in batch:
                    done.add(page.number)
                    last = page.last if page.last is not None else last
                while prefix + 1 in done:
                    prefix += 1
                    done.discard(prefix)
                if last is not None and bar.total != last:
                    bar.total = last
                    bar.refresh()
                items = [item for page in batch for item in page.items]

                def write(session: orm.Session, items: list[dict[str, Any]] = items) -> Counts:
                    return store(session, items)

                counts += self._write(write, run, prefix, last)
                bar.update(len(batch))
        run.finish()
        log.info("reconcile %s %s: %s", kind, day, summary(counts, kind))
        return Outcome(run.id, counts)

    def _write(
        self,
        write: Callable[[orm.Session], Counts],
        run: RunLog,
        pages_done: int | None = None,
        pages_total: int | None = None,
    ) -> Counts:
        """Store one answer and the run's progress in one transaction; again after a deadlock."""
        for attempt in range(1, _ATTEMPTS + 1):
            try:
                with self.sessionmaker() as session, session.begin():
                    counts = write(session)
                    run.record(session, counts, pages_done, pages_total)
                return counts
            except sa.exc.OperationalError as exc:
                if getattr(exc.orig, "sqlstate", None) not in _RETRYABLE_SQLSTATES or attempt == _ATTEMPTS:
                    raise
                log.warning("reconcile: page transaction rolled back (attempt %d); writing it again", attempt)
        raise AssertionError("unreachable")

    def _stuck(self, session: orm.Session, older_than: timedelta, within: timedelta) -> list[tuple[str, str]]:
        """Non-final messages of the last `within` whose latest event arrived over `older_than` ago."""
        now = utcnow()
        latest = (
            sa.select(sa.func.max(MessageEvent.received_at))
            .where(MessageEvent.message_id == Message.id)
            .correlate(Message)
            .scalar_subquery()
        )
        query = (
            sa.select(Message.id, Message.channel, latest.label("latest"))
            .where(Message.status.in_(sorted(set(Status) - FINAL_STATUSES)))
            .where(Message.created_at >= now - within)
            .where(Message.channel.in_(sorted(STATUS_PATHS)))
        )
        cutoff = now - older_than
        rows = [
            (str(i), str(c), at)
            for i, c, at in session.execute(query).all()
            if at is not None and at < cutoff
        ]
        return [(i, c) for i, c, _ in sorted(rows, key=lambda row: row[2])]


class _Failing:
    """Close the run as failed when the block raises, saying where; provider errors become ReconcileFailed."""

    def __init__(self, run: RunLog, what: str) -> None:
        self.run = run
        self.what = what

    def __enter__(self) -> None:
        return None

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None, _tb: Any) -> None:
        if error is None:
            return
        if isinstance(error, PullFailed | ProviderError):
            message = str(error) if isinstance(error, PullFailed) else f"{self.what}: {error}"
        elif isinstance(error, KeyboardInterrupt):
            message = f"interrupted after page {self.run.pages_done}"
        else:
            message = f"{type(error).__name__}: {error}"
        self.run.finish("failed", message)
        log.warning("reconcile %s: %s (what it stored stays)", self.run.kind, message)
        if isinstance(error, PullFailed | ProviderError):
            raise ReconcileFailed(message) from error


def summary(counts: Counts, kind: str = "sms") -> str:
    """The counts in words."""
    names = {"sms": "new messages", "stuck": "new messages", "calls": "new calls", "inbound": "new inbound"}
    parts = [f"{counts.seen} rows seen", f"{counts.new_rows} {names.get(kind, 'new')}"]
    if kind in ("sms", "stuck"):
        parts.append(f"{counts.new_statuses} new statuses")
    if kind == "calls":
        parts.append(f"{counts.recordings} recordings to fetch")
    parts.append(f"{counts.unchanged} unchanged")
    return ", ".join(parts)
