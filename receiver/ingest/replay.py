"""Replay: parse stored raw events again after a fix, one by one or a whole backlog.

Each event is re-read and stored by `ingest.reprocess` in its own transaction, under a row lock,
and every row it writes has a unique key, so a replay can be stopped, run again, or run twice at
once without storing anything twice. Only events still waiting are replayed: `pending` (kept, not
understood) and `quarantined` (failed validation); a processed event has nothing left to give.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any

import click
import sqlalchemy as sa
from flask import current_app
from flask.cli import with_appcontext
from sqlalchemy import orm

from .. import metrics
from ..db import get_db
from ..models import REPLAYABLE_RAW as REPLAYABLE
from ..models import RawEvent, RawState
from ..recordings import queue as recordings_queue
from ..wording import plural
from . import service as ingest

log = logging.getLogger(__name__)

BATCH_SIZE = 500


class NotReplayable(Exception):
    """The raw event was processed already."""


def replay_one(session: orm.Session, raw_id: int, settings: ingest.Settings) -> ingest.Outcome:
    """Replay one waiting raw event; LookupError if there is none, NotReplayable if it is done."""
    with session.begin():
        state = session.scalar(sa.select(RawEvent.state).where(RawEvent.id == raw_id))
    if state is None:
        raise LookupError(raw_id)
    if state not in REPLAYABLE:
        raise NotReplayable(f"raw event {raw_id} is {state}; only pending or quarantined events replay")
    outcome = ingest.reprocess(session, raw_id, settings)
    metrics.REPLAYS.labels(outcome=outcome.outcome).inc()
    metrics.count_statuses(outcome)
    if outcome.new_recordings:
        recordings_queue.enqueue(outcome.new_recordings)
    return outcome


def waiting_ids(
    session: orm.Session,
    states: Iterable[RawState],
    since: datetime | None,
    after: int,
    upto: int,
    limit: int,
    source: str | None = None,
) -> list[int]:
    """The next ids (ascending, in (after, upto]) of raw events in `states` (of `source`, if given)."""
    statement = (
        sa.select(RawEvent.id)
        .where(RawEvent.state.in_(list(states)), RawEvent.id > after, RawEvent.id <= upto)
        .order_by(RawEvent.id)
        .limit(limit)
    )
    if since is not None:
        statement = statement.where(RawEvent.received_at >= since)
    if source is not None:
        statement = statement.where(RawEvent.source == source)
    with session.begin():
        return list(session.scalars(statement))


def replay_backlog(
    db: Any,
    states: Iterable[RawState],
    since: datetime | None,
    settings: ingest.Settings,
    batch_size: int = BATCH_SIZE,
    progress: Any = None,
) -> Counter[str]:
    """Replay every waiting raw event that is there when the run starts, in batches of ids.

    The run walks ids upwards up to the highest id at its start, so it ends even while new
    events arrive, and an event that stays quarantined is not tried again in the same run.
    """
    states = list(states)
    counts: Counter[str] = Counter()
    with db.new_session() as session:
        with session.begin():
            upto = session.scalar(sa.select(sa.func.max(RawEvent.id))) or 0
        after = 0
        while ids := waiting_ids(session, states, since, after, upto, batch_size):
            for raw_id in ids:
                try:
                    outcome = replay_one(session, raw_id, settings)
                except (LookupError, NotReplayable):
                    counts["skipped"] += 1  # replayed or removed by someone else meanwhile
                    continue
                counts[outcome.outcome] += 1
            session.expunge_all()
            after = ids[-1]
            if progress is not None:
                progress(counts, after, upto)
    return counts


def _utc(value: datetime | None) -> datetime | None:
    if value is None or value.tzinfo is not None:
        return value
    return value.replace(tzinfo=UTC)


@click.command("replay")
@click.option(
    "--state",
    "states",
    type=click.Choice([state.value for state in REPLAYABLE]),
    multiple=True,
    help="Replay events in this state (repeatable; default: pending and quarantined).",
)
@click.option(
    "--since",
    type=click.DateTime(formats=["%Y-%m-%d", "%Y-%m-%dT%H:%M:%S", "%Y-%m-%d %H:%M:%S"]),
    help="Only events received from this time on (UTC).",
)
@click.option("--batch-size", default=BATCH_SIZE, show_default=True, type=click.IntRange(1, 10000))
@with_appcontext
def replay_command(states: tuple[str, ...], since: datetime | None, batch_size: int) -> None:
    """Parse stored raw events again (after a fix) and store what they say; safe to run twice."""
    chosen = [RawState(state) for state in states] or list(REPLAYABLE)

    def progress(counts: Counter[str], at: int, upto: int) -> None:
        click.echo(f"replay: {plural(sum(counts.values()), 'event')}, up to id {at} of {upto}", err=True)

    counts = replay_backlog(
        get_db(), chosen, _utc(since), ingest.Settings.from_config(current_app.config), batch_size, progress
    )
    summary = ", ".join(f"{name} {counts[name]}" for name in sorted(counts)) or "nothing to replay"
    click.echo(f"replayed {plural(sum(counts.values()), 'raw event')}: {summary}")
