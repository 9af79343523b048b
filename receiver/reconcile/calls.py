"""Pulled call records (`voice/calls`): calls receiver never heard of, and recordings it lacks.

A row is the call receiver knows when the numbers are the same (canonical forms) and the start
times lie within RECORDING_MATCH_WINDOW of each other; each known call answers for one row of a
page. A row that matches none becomes a call with `origin: pull`, keyed by the provider's id (two
runs at once store it once). Its `audio` becomes a recording for the worker to fetch, as does
the `audio` of a known call that has no recording stored or on its way.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import parse_qs, urlsplit
from zoneinfo import ZoneInfo

import sqlalchemy as sa
from sqlalchemy import orm

from .. import forwarding
from ..db import insert_new, utcnow
from ..models import PULL_SOURCE, Call, Origin, Recording, RecordingState
from ..numbers import canonical as canonical_number
from .runs import Counts
from .times import provider_time, seconds

# A call's recording counts as there when it is stored or on its way.
_HAS_RECORDING = [state for state in RecordingState if state != RecordingState.failed]


@dataclass
class PulledCall:
    key: str
    values: dict[str, Any]
    audio: str | None


def call_row(row: dict[str, Any], zone: ZoneInfo, country_code: str) -> PulledCall:
    """One row of `voice/calls`."""
    given = row.get("id")
    identity = f"id:{given}" if given not in (None, "") else repr(sorted(row.items()))
    key = hashlib.sha256(f"voice/calls {identity}".encode()).hexdigest()
    call_from, call_to = _text(row.get("call_from")), _text(row.get("call_to"))
    values = {
        "service": _text(row.get("service")),
        "bridge": _text(row.get("bridge")),
        "from_number": call_from,
        "to_number": call_to,
        "from_canonical": canonical_number(call_from, country_code),
        "to_canonical": canonical_number(call_to, country_code),
        "start_at": provider_time(row.get("start_at"), zone),
        "end_at": provider_time(row.get("end_at"), zone),
        "duration": seconds(row.get("duration")),
        "billing": seconds(row.get("billing")),
        "status": _text(row.get("status")),
        "hangup_by": _text(row.get("hangup_by")),
    }
    return PulledCall(key, values, _text(row.get("audio")))


def _text(value: Any) -> str | None:
    return None if value is None or value == "" else str(value)


def _expiry(url: str, ttl: int, now: datetime) -> datetime:
    """When a presigned URL stops working: its X-Amz-Expires when shorter than RECORDING_URL_TTL."""
    given = parse_qs(urlsplit(url).query).get("X-Amz-Expires", [""])[0]
    lifetime = min(ttl, int(given)) if given.isdigit() else ttl
    return now + timedelta(seconds=lifetime)


def store(session: orm.Session, rows: list[PulledCall], window: float, ttl: int) -> tuple[Counts, list[int]]:
    """Write a page of pulled calls in the session's transaction: counts, and new recording ids."""
    counts = Counts(seen=len(rows))
    now = utcnow()
    known = _candidates(session, rows, timedelta(seconds=window))
    with_recording = _with_recording(session, [call_id for call_id, *_ in known])
    taken: set[int] = set()
    new_recordings: list[int] = []
    new_calls: list[forwarding.StoredChange] = []
    for pulled in sorted(rows, key=lambda r: r.key):
        call_id = _match(pulled, known, taken, window)
        if call_id is None:
            call_id = insert_new(
                session.connection(),
                Call.__table__,
                {
                    **pulled.values,
                    "dedupe_key": pulled.key,
                    "source": PULL_SOURCE,
                    "raw_event_id": None,
                    "origin": Origin.pull,
                    "received_at": now,
                },
                ["dedupe_key"],
            )
            if call_id is None:  # another run stored it meanwhile
                counts.unchanged += 1
                continue
            counts.new_rows += 1
            new_calls.append(forwarding.StoredChange("call", call_id))
        elif call_id in with_recording or not pulled.audio:
            counts.unchanged += 1
            continue
        taken.add(call_id)
        if pulled.audio:
            recording_id = insert_new(
                session.connection(),
                Recording.__table__,
                {
                    "call_id": call_id,
                    "url": pulled.audio,
                    "url_sha256": hashlib.sha256(pulled.audio.encode()).hexdigest(),
                    "url_expires_at": _expiry(pulled.audio, ttl, now),
                    "state": RecordingState.pending,
                    "next_attempt_at": now,
                    "created_at": now,
                    "updated_at": now,
                },
                ["call_id", "url_sha256"],
            )
            if recording_id is not None:
                new_recordings.append(recording_id)
                counts.recordings += 1
    forwarding.record_changes(session.connection(), new_calls)  # as a webhook's new calls
    return counts, new_recordings


def _candidates(session: orm.Session, rows: list[PulledCall], window: timedelta) -> list[tuple[Any, ...]]:
    """Known calls that could match a row of the page: (id, from, to, start_at)."""
    starts = [r.values["start_at"] for r in rows if r.values["start_at"] is not None]
    numbers = {r.values["from_canonical"] for r in rows} - {None}
    if not starts or not numbers:
        return []
    return list(
        session.execute(
            sa.select(Call.id, Call.from_canonical, Call.to_canonical, Call.start_at)
            .where(Call.from_canonical.in_(sorted(numbers)))
            .where(Call.start_at.between(min(starts) - window, max(starts) + window))
            .order_by(Call.id)
        ).all()
    )


def _with_recording(session: orm.Session, call_ids: list[int]) -> set[int]:
    if not call_ids:
        return set()
    query = sa.select(Recording.call_id).where(
        Recording.call_id.in_(call_ids), Recording.state.in_(_HAS_RECORDING)
    )
    return set(session.scalars(query))


def _match(pulled: PulledCall, known: list[tuple[Any, ...]], taken: set[int], window: float) -> int | None:
    """The closest known call with the same numbers, within the window, not matched already."""
    start = pulled.values["start_at"]
    if start is None:
        return None
    best: tuple[float, int] | None = None
    for call_id, from_canonical, to_canonical, start_at in known:
        if call_id in taken or start_at is None:
            continue
        if (from_canonical, to_canonical) != (pulled.values["from_canonical"], pulled.values["to_canonical"]):
            continue
        distance = abs((start_at - start).total_seconds())
        if distance <= window and (best is None or distance < best[0]):
            best = (distance, call_id)
    if best is None:
        return None
    taken.add(best[1])
    return best[1]
