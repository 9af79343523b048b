"""Service: download one recording, idempotently, before its URL expires.

The row is the source of truth. A job claims it with one conditional UPDATE that takes a lease
(`locked_until`, renewed while bytes flow) and bumps `attempts`, which then identifies the
claim: every later write is guarded by `attempts`, so a job that lost its lease (a pause longer
than the lease, a sweep that gave the row to another job) changes nothing. The file is streamed
to a temporary name, checked, and renamed into RECORDINGS_DIR under its SHA-256, so running the
same download twice stores one file (receiver.recordings.files: the file and the row that refers
to it are written together, under the file's lock).
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, cast
from zoneinfo import ZoneInfo

import sqlalchemy as sa
from sqlalchemy import orm

from .. import fetcher as fetch
from ..db import utcnow
from ..models import Call, Recording, RecordingState
from ..numbers import DEFAULT_COUNTRY_CODE, canonical
from ..provider import ProviderAuthError, ProviderClient, ProviderError
from ..wording import plural
from .files import lock_files, place, storage_path

log = logging.getLogger(__name__)

S = RecordingState
WAITING = (S.pending, S.retrying, S.fallback, S.downloading)
# Magic numbers of the audio formats a call platform produces, and the type each is stored with.
_AUDIO_MAGIC: tuple[tuple[int, bytes, str], ...] = (
    (0, b"ID3", "audio/mpeg"),
    (0, b"OggS", "audio/ogg"),
    (0, b"fLaC", "audio/flac"),
    (0, b"#!AMR", "audio/amr"),
    (0, b"\x1a\x45\xdf\xa3", "audio/webm"),
    (4, b"ftyp", "audio/mp4"),
    (0, b".snd", "audio/basic"),
)


@dataclass(frozen=True)
class Policy:
    recordings_dir: Path
    max_bytes: int
    lease: float
    retry_base: float
    retry_max: float
    expiry_margin: float
    max_attempts: int
    match_window: float
    requeue_after: float
    timezone: ZoneInfo
    country_code: str = DEFAULT_COUNTRY_CODE

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> Policy:
        return cls(
            recordings_dir=Path(config["RECORDINGS_DIR"]),
            max_bytes=config["RECORDING_MAX_BYTES"],
            lease=config["RECORDING_LEASE"],
            retry_base=config["RECORDING_RETRY_BASE"],
            retry_max=config["RECORDING_RETRY_MAX"],
            expiry_margin=config["RECORDING_EXPIRY_MARGIN"],
            max_attempts=config["RECORDING_MAX_ATTEMPTS"],
            match_window=config["RECORDING_MATCH_WINDOW"],
            requeue_after=config["RECORDING_REQUEUE_AFTER"],
            timezone=ZoneInfo(config["PROVIDER_TIMEZONE"]),
            country_code=config["DEFAULT_COUNTRY_CODE"],
        )


@dataclass
class Result:
    """What a job did: the state it left, and in how many seconds to try again (if planned)."""

    recording_id: int
    state: RecordingState | None
    retry_in: float | None = None


class LeaseLost(Exception):
    """Another job holds the recording now."""


@dataclass(frozen=True)
class _Claim:
    id: int
    attempt: int
    state: RecordingState
    url: str
    url_expires_at: datetime
    call: Call


def sniff_audio(head: bytes) -> str | None:
    """The audio type the first bytes announce, or None when they are not audio."""
    for offset, magic, content_type in _AUDIO_MAGIC:
        if head[offset : offset + len(magic)] == magic:
            return content_type
    if head[:4] == b"RIFF" and head[8:12] == b"WAVE":
        return "audio/wav"
    if len(head) >= 2 and head[0] == 0xFF and head[1] & 0xE0 == 0xE0:
        return "audio/mpeg"  # an MPEG audio frame without an ID3 tag
    return None


class Downloader:
    """Runs download jobs; one per worker process, shared by its threads."""

    def __init__(
        self,
        sessionmaker: orm.sessionmaker[orm.Session],
        policy: Policy,
        fetcher: fetch.Fetcher,
        provider: ProviderClient | None,
    ) -> None:
        self.sessionmaker = sessionmaker
        self.policy = policy
        self.fetcher = fetcher
        self.provider = provider

    # -- the job ------------------------------------------------------------------------------

    def run(self, recording_id: int) -> Result:
        """Claim the recording and take it as far as it goes now; safe to call twice."""
        claim = self._claim(recording_id)
        if claim is None:
            return Result(recording_id, None)
        try:
            if claim.state == S.fallback:
                return self._fallback(claim, None)
            return self._direct(claim)
        except LeaseLost:
            log.warning("recording %s: lease lost to another job; leaving it", recording_id)
            return Result(recording_id, None)
        except Exception as exc:
            log.exception("recording %s: unexpected error", recording_id)
            try:
                return self._plan_retry(claim, S.retrying, f"internal error: {type(exc).__name__}")
            except LeaseLost:
                return Result(recording_id, None)

    def _claim(self, recording_id: int) -> _Claim | None:
        now = utcnow()
        r = Recording
        expired = r.url_expires_at <= now
        with self.sessionmaker() as session, session.begin():
            row = session.execute(
                sa.update(r)
                .where(
                    r.id == recording_id,
                    r.state.in_(WAITING),
                    sa.or_(r.locked_until.is_(None), r.locked_until < now),
                    sa.or_(r.next_attempt_at.is_(None), r.next_attempt_at <= now + timedelta(seconds=1)),
                )
                .values(
                    state=sa.case((sa.or_(r.state == S.fallback, expired), S.fallback), else_=S.downloading),
                    attempts=r.attempts + 1,
                    locked_until=now + timedelta(seconds=self.policy.lease),
                    updated_at=now,
                )
                .returning(r.state, r.attempts, r.url, r.url_expires_at, r.call_id)
            ).one_or_none()
            if row is None:
                current = session.scalar(sa.select(r.state).where(r.id == recording_id))
                log.info(
                    "recording %s: nothing to do (state %s, or another job holds it)", recording_id, current
                )
                return None
            call = session.get_one(Call, row.call_id)
            session.expunge(call)
        return _Claim(recording_id, row.attempts, row.state, row.url, row.url_expires_at, call)

    def _direct(self, claim: _Claim) -> Result:
        try:
            fetched = self.fetcher.fetch(claim.url, self._tmp(), self.policy.max_bytes, self._renewer(claim))
        except fetch.TooLarge as exc:
            return self._fail(claim, str(exc))
        except fetch.FetchError as exc:
            if exc.transient:
                deadline = claim.url_expires_at - timedelta(seconds=self.policy.expiry_margin)
                if utcnow() < deadline:
                    return self._plan_retry(claim, S.retrying, str(exc), deadline)
            log.info("recording %s: %s; asking the recordings API", claim.id, exc)
            return self._fallback(claim, f"webhook URL: {exc}")
        return self._store(claim, fetched, on_not_audio=self._fallback)

    def _fallback(self, claim: _Claim, reason: str | None) -> Result:
        if reason is not None:
            self._update(claim, state=S.fallback, last_error=reason)
        if self.provider is None:
            return self._fail(claim, f"{reason or 'URL expired'}; PROVIDER_ACCESS_TOKEN is not set")
        try:
            url = find_fresh_url(self.provider, claim.call, self.policy, self._renewer(claim))
        except ProviderAuthError as exc:
            return self._plan_retry(claim, S.fallback, str(exc))
        except ProviderError as exc:
            return self._plan_retry(claim, S.fallback, f"recordings API: {exc}")
        if url is None:
            return self._plan_retry(claim, S.fallback, "not (yet) in the recordings API")
        try:
            fetched = self.fetcher.fetch(url, self._tmp(), self.policy.max_bytes, self._renewer(claim))
        except fetch.FetchError as exc:
            if exc.transient or isinstance(exc, fetch.HTTPStatus):
                return self._plan_retry(claim, S.fallback, f"recordings API URL: {exc}")
            return self._fail(claim, f"recordings API URL: {exc}")
        return self._store(claim, fetched, on_not_audio=None)

    # -- outcomes -----------------------------------------------------------------------------

    def _store(
        self,
        claim: _Claim,
        fetched: fetch.Fetched,
        on_not_audio: Callable[[_Claim, str], Result] | None,
    ) -> Result:
        content_type = sniff_audio(fetched.head)
        if content_type is None:
            fetched.path.unlink(missing_ok=True)
            said = fetched.content_type or "no type"
            reason = f"not audio ({said}, {fetched.size} bytes)"
            return on_not_audio(claim, reason) if on_not_audio else self._fail(claim, reason)
        final = storage_path(self.policy.recordings_dir, fetched.sha256)
        now = utcnow()
        try:
            # The row refers to the file and the file is put in place under the file's lock,
            # in one transaction: a prune removing unreferenced files cannot come in between.
            with self.sessionmaker() as session, session.begin():
                self._update_in(
                    session,
                    claim,
                    state=S.stored,
                    sha256=fetched.sha256,
                    size_bytes=fetched.size,
                    content_type=content_type,
                    stored_at=now,
                    next_attempt_at=None,
                    locked_until=None,
                )
                lock_files(session.connection(), [fetched.sha256])
                place(fetched.path, final)
        finally:
            fetched.path.unlink(missing_ok=True)  # not placed: the job failed or lost its lease
        log.info("recording %s: stored %s (%d bytes)", claim.id, fetched.sha256, fetched.size)
        return Result(claim.id, S.stored)

    def _fail(self, claim: _Claim, reason: str) -> Result:
        log.warning("recording %s: failed: %s", claim.id, reason)
        self._update(claim, state=S.failed, last_error=reason, next_attempt_at=None, locked_until=None)
        return Result(claim.id, S.failed)

    def _plan_retry(
        self, claim: _Claim, state: RecordingState, reason: str, deadline: datetime | None = None
    ) -> Result:
        # The webhook URL's retries are bounded by its deadline, then the API is asked; only the
        # API's retries (and unexpected errors) count against RECORDING_MAX_ATTEMPTS.
        if deadline is None and claim.attempt >= self.policy.max_attempts:
            return self._fail(claim, f"{reason} (gave up after {plural(claim.attempt, 'attempt')})")
        delay = backoff(claim.attempt, self.policy.retry_base, self.policy.retry_max)
        now = utcnow()
        when = now + timedelta(seconds=delay)
        if deadline is not None and when > deadline:
            when = deadline  # never planned past the URL's expiry (less the margin)
        log.info("recording %s: %s; next attempt at %s", claim.id, reason, when.isoformat())
        self._update(claim, state=state, last_error=reason, next_attempt_at=when, locked_until=None)
        return Result(claim.id, state, max(0.0, (when - now).total_seconds()))

    # -- helpers ------------------------------------------------------------------------------

    def _update(self, claim: _Claim, **values: Any) -> None:
        """Write to the row only while this job's claim is the current one."""
        with self.sessionmaker() as session, session.begin():
            self._update_in(session, claim, **values)

    def _update_in(self, session: orm.Session, claim: _Claim, **values: Any) -> None:
        r = Recording
        changed = cast(
            "sa.CursorResult[Any]",
            session.execute(
                sa.update(r)
                .where(r.id == claim.id, r.attempts == claim.attempt, r.state.in_(WAITING))
                .values(updated_at=utcnow(), **values)
            ),
        ).rowcount
        if not changed:
            raise LeaseLost(claim.id)

    def _renewer(self, claim: _Claim) -> Callable[[int], None]:
        """A progress callback that extends the lease while bytes keep coming."""
        every = self.policy.lease / 3
        last = time.monotonic()

        def renew(_size: int) -> None:
            nonlocal last
            if time.monotonic() - last >= every:
                last = time.monotonic()
                self._update(claim, locked_until=utcnow() + timedelta(seconds=self.policy.lease))

        return renew

    def _tmp(self) -> Path:
        return self.policy.recordings_dir / ".tmp"


def backoff(attempt: int, base: float, cap: float) -> float:
    """Exponential backoff with jitter: between half and all of base·2^(attempt-1), capped."""
    ceiling = min(cap, base * 2 ** max(0, attempt - 1))
    return random.uniform(ceiling / 2, ceiling)


# -- the recordings API fallback ----------------------------------------------------------------


def numbers_match(a: Any, b: Any, country_code: str = DEFAULT_COUNTRY_CODE) -> bool:
    """The same phone number by the rule every number filter uses (receiver.numbers): with or
    without country code, `+`, `00`, a trunk `0` or spacing; a national number has `country_code`."""
    x, y = canonical(a, country_code), canonical(b, country_code)
    return x is not None and x == y


def _provider_time(value: Any, tz: ZoneInfo) -> datetime | None:
    try:
        parsed = datetime.fromisoformat(str(value).strip())
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=tz)


def find_fresh_url(
    client: ProviderClient, call: Call, policy: Policy, progress: Callable[[int], None] | None = None
) -> str | None:
    """Ask `voice/recordings` for the call's recording: same numbers, the closest time in the window."""
    moments = [t for t in (call.start_at, call.end_at) if t is not None] or [call.received_at]
    window = timedelta(seconds=policy.match_window)
    first = (min(moments) - window).astimezone(policy.timezone)
    last = (max(moments) + window).astimezone(policy.timezone)
    params = {"datetime[r.created_at]": f"{first:%b %d, %Y} - {last:%b %d, %Y}"}
    best: tuple[float, str] | None = None
    for seen, item in enumerate(client.paginate("voice/recordings", params)):
        if progress is not None:
            progress(seen)  # keeps the lease while pages come in
        audio = item.get("audio")
        if not audio or not numbers_match(item.get("call_from"), call.from_number, policy.country_code):
            continue
        if not numbers_match(item.get("call_to"), call.to_number, policy.country_code):
            continue
        created = _provider_time(item.get("created_at"), policy.timezone)
        if created is None:
            continue
        distance = min(abs((created - moment).total_seconds()) for moment in moments)
        if distance <= policy.match_window and (best is None or distance < best[0]):
            best = (distance, str(audio))
    return best[1] if best else None
