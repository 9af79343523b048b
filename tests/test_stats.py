"""Statistics equal a full scan's, exactly: on random messages, before and after the roll-up,
and after statuses change through the webhook once they were counted."""

from __future__ import annotations

import random
from collections import defaultdict
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from fractions import Fraction
from typing import Any
from zoneinfo import ZoneInfo

import pytest
import sqlalchemy as sa
from flask import Flask

from receiver.models import FINAL_STATUSES, Message, Status
from receiver.stats import MESSAGE_GROUPS, MessageStatsQuery, message_stats
from receiver.stats.messages import _Plan
from receiver.stats.rollup import read_watermark, roll_up
from receiver.stats.tables import StatsCell

from .factories import raw_event
from .payloads import sms

T0 = datetime(2026, 3, 6, 21, 17, 5, tzinfo=UTC)  # spans the night New York moves its clocks
NO_GRACE = timedelta(0)
ZONES = ["UTC", "Asia/Kolkata", "America/New_York", "Asia/Kathmandu"]
PROVIDER_STATUSES = {
    Status.accepted: ["AWAITING-DLR"],
    Status.sent: ["sent"],
    Status.delivered: ["DELIVRD", "delivered"],
    Status.read: ["read"],
    Status.failed: ["UNDELIV", "ABSENT-SUB", "MOB-OFF"],
    Status.rejected: ["DNDNUMB", "DLT-TEMPLATE", "=cmd|' /C calc'!A0"],
    Status.expired: ["EXPIRED"],
    Status.deleted: ["deleted"],
    Status.unknown: ["TIMEOUT-DLR"],
}


def _maybe(rng: random.Random, values: list[Any]) -> Any:
    return rng.choice([*values, None])


def seed(app: Flask, count: int, seed_value: int) -> list[str]:
    """Random messages over four days, every column the statistics read given at random."""
    rng = random.Random(seed_value)
    raw_id = raw_event(app)
    ids = []
    with app.extensions["receiver.db"].new_session() as session, session.begin():
        for i in range(count):
            created = T0 + timedelta(
                seconds=rng.randrange(4 * 86400), microseconds=rng.randrange(3) * 250_000
            )
            status = rng.choice(list(Status))
            submitted = _maybe(rng, [created - timedelta(seconds=rng.randrange(120))])
            delay = timedelta(seconds=rng.choice([0, 1, 2, 3, 5, 8, 13, 60, 600, rng.randrange(7200)]))
            if rng.random() < 0.2:
                delay += timedelta(microseconds=rng.randrange(1_000_000))
            delivered = submitted + delay if submitted and rng.random() < 0.9 else None
            message_id = f"r{seed_value}-{i:05d}"
            ids.append(message_id)
            session.add(
                Message(
                    id=message_id,
                    source=rng.choice(["portal", "bics"]),
                    channel=rng.choice(["sms", "sms", "whatsapp"]),
                    mobile="9845012345",
                    sender=_maybe(rng, ["MOBTXT", "OTPSMS"]),
                    service=_maybe(rng, ["otp", "promo"]),
                    custom=_maybe(rng, ["c1", "c2", "-c3"]),
                    credits=_maybe(rng, [Decimal("0.1000"), Decimal("1.0250"), Decimal("2.0000")]),
                    units=_maybe(rng, [1, 2, 3]),
                    operator=_maybe(rng, ["Airtel", "Jio", "Vi"]),
                    region=_maybe(rng, ["Karnataka", "Delhi"]),
                    submitted_at=submitted,
                    delivered_at=delivered,
                    status=status,
                    provider_status=rng.choice(PROVIDER_STATUSES[status]),
                    created_at=created,
                    updated_at=created,
                )
            )
    assert raw_id
    return ids


def percentile(values: list[int], p: Fraction) -> float | None:
    if not values:
        return None
    values = sorted(values)
    rank = p * (len(values) - 1)
    low = int(rank)
    high = min(low + 1, len(values) - 1)
    return round(values[low] + (values[high] - values[low]) * (rank - low)) / 1_000_000


def full_scan(app: Flask, query: MessageStatsQuery) -> dict[tuple[Any, ...], dict[str, Any]]:
    """The answer computed the plain way: every message read, grouped here."""
    with app.extensions["receiver.db"].new_session() as session:
        messages = session.scalars(sa.select(Message)).all()
    zone = ZoneInfo(query.tz)
    groups: dict[tuple[Any, ...], list[Message]] = defaultdict(list)
    for m in messages:
        if not query.window.since <= m.created_at < query.window.until:
            continue
        if any(getattr(m, name) != value for name, value in query.filters().items()):
            continue
        key = []
        for name in query.group_by:
            local = m.created_at.astimezone(zone)
            if name == "day":
                key.append(local.date().isoformat())
            elif name == "hour":
                key.append(local.replace(minute=0, second=0, microsecond=0).isoformat())
            else:
                value = getattr(m, name)
                key.append(value.value if isinstance(value, Status) else value)
        groups[tuple(key)].append(m)
    answer = {}
    for key, members in groups.items():
        row: dict[str, Any] = dict(zip(query.group_by, key, strict=True))
        row["total"] = len(members)
        for status in Status:
            row[status.value] = sum(m.status == status for m in members)
        final = sum(m.status in FINAL_STATUSES for m in members)
        answered = sum(m.status in (Status.delivered, Status.read) for m in members)
        row["delivery_rate"] = answered / final if final else None
        row["credits"] = str(sum((m.credits for m in members if m.credits is not None), Decimal("0.0000")))
        row["units"] = sum(m.units or 0 for m in members)
        delays = [
            (m.delivered_at - m.submitted_at) // timedelta(microseconds=1)
            for m in members
            if m.status in (Status.delivered, Status.read) and m.submitted_at and m.delivered_at
        ]
        row["delivery_seconds_p50"] = percentile(delays, Fraction(1, 2))
        row["delivery_seconds_p90"] = percentile(delays, Fraction(9, 10))
        answer[key] = row
    return answer


def answered(app: Flask, query: MessageStatsQuery) -> dict[tuple[Any, ...], dict[str, Any]]:
    with app.extensions["receiver.db"].new_session() as session:
        rows = message_stats(session, query, grace=NO_GRACE)
    return {tuple(row[name] for name in query.group_by): row for row in rows}


def random_queries(rng: random.Random, count: int) -> list[MessageStatsQuery]:
    queries = []
    groups = [name for name in MESSAGE_GROUPS]
    for _ in range(count):
        start = T0 + timedelta(minutes=rng.randrange(-600, 3 * 1440))
        if rng.random() < 0.4:  # a window of whole UTC days
            start = start.replace(hour=0, minute=0, second=0, microsecond=0)
        length = timedelta(hours=rng.choice([1, 5, 24, 48, 96, 120]), minutes=rng.choice([0, 0, 17]))
        filters = {}
        for name, values in (("channel", ["sms", "whatsapp"]), ("source", ["portal"]), ("service", ["otp"])):
            if rng.random() < 0.15:
                filters[name] = rng.choice(values)
        if rng.random() < 0.1:
            filters["sender"] = "MOBTXT"
        queries.append(
            MessageStatsQuery(
                since=start,
                until=start + length,
                group_by=tuple(rng.sample(groups, rng.choice([0, 1, 1, 2, 2, 3]))),
                tz=rng.choice(ZONES),
                **filters,
            )
        )
    return queries


def check(app: Flask, queries: list[MessageStatsQuery]) -> None:
    for query in queries:
        assert answered(app, query) == full_scan(app, query), query


def test_answers_equal_a_full_scan_before_and_after_roll_up_and_after_late_statuses(
    app: Flask, hooks: Any
) -> None:
    ids = seed(app, 700, seed_value=15)
    rng = random.Random(1515)
    queries = random_queries(rng, 60)
    queries.append(MessageStatsQuery(since=T0, until=T0 + timedelta(days=5), group_by=("day", "status")))
    queries.append(MessageStatsQuery(since=T0, until=T0 + timedelta(days=5), group_by=("operator",)))
    check(app, queries)  # no roll-up yet: read from the messages

    with app.extensions["receiver.db"].new_session() as session:
        while not roll_up(session, grace=NO_GRACE, backfill_days=1).done:
            pass
        assert read_watermark(session) is not None
        assert session.scalar(sa.select(sa.func.count()).select_from(StatsCell)) > 0
    check(app, queries)

    # Reports arrive for messages already counted: statuses, operators and times change.
    for message_id in rng.sample(ids, 80):
        status = rng.choice(["DELIVRD", "UNDELIV", "DNDNUMB", "EXPIRED"])
        answer = hooks.post(sms(id=message_id, status=status, provider="Jio", region=None, custom=None))
        assert answer.status_code == 200, answer.get_json()
    # A new message too, first heard of now.
    assert hooks.post(sms(id="late-new-1", status="DELIVRD")).status_code == 200
    now = datetime.now(UTC)
    queries.append(MessageStatsQuery(since=now - timedelta(hours=2), until=now + timedelta(hours=1)))
    check(app, queries)  # the roll-up has not run since: the changed hours are read directly

    with app.extensions["receiver.db"].new_session() as session:
        roll_up(session, grace=NO_GRACE)
    check(app, queries)


def test_whole_unchanged_periods_come_from_the_summaries(app: Flask) -> None:
    seed(app, 200, seed_value=7)
    with app.extensions["receiver.db"].new_session() as session:
        while not roll_up(session, grace=NO_GRACE).done:
            pass
    day = T0.replace(hour=0, minute=0, second=0, microsecond=0) + timedelta(days=1)
    query = MessageStatsQuery(
        since=day, until=day + timedelta(days=2, hours=1, minutes=30), group_by=("day",)
    )
    plan = _Plan(query, changed=set())
    assert plan.periods == {
        "d": [(day, day + timedelta(days=2))],
        "h": [(day + timedelta(days=2), day + timedelta(days=2, hours=1))],
    }
    assert plan.scans == [(day + timedelta(days=2, hours=1), query.window.until)]
    # In India a UTC hour a day straddles midnight: that hour is read from the messages.
    kolkata = _Plan(
        MessageStatsQuery(since=day, until=day + timedelta(days=2), group_by=("day",), tz="Asia/Kolkata"),
        changed=set(),
    )
    assert kolkata.periods["d"] == []
    assert len(kolkata.scans) == 2
    # A changed hour is read from the messages, the rest of its day hour by hour.
    changed = _Plan(
        MessageStatsQuery(since=day, until=day + timedelta(days=1)), changed={day + timedelta(hours=5)}
    )
    assert changed.periods["d"] == []
    assert changed.scans == [(day + timedelta(hours=5), day + timedelta(hours=6))]


@pytest.mark.parametrize("group_by", [("custom",), ("sender", "operator")])
def test_groups_no_summary_holds_are_read_from_the_messages(app: Flask, group_by: tuple[str, ...]) -> None:
    seed(app, 150, seed_value=3)
    with app.extensions["receiver.db"].new_session() as session:
        while not roll_up(session, grace=NO_GRACE).done:
            pass
    query = MessageStatsQuery(since=T0, until=T0 + timedelta(days=4), group_by=group_by)
    assert answered(app, query) == full_scan(app, query)


def test_roll_up_twice_changes_nothing(app: Flask) -> None:
    seed(app, 100, seed_value=9)

    def cells() -> list[tuple[Any, ...]]:
        with app.extensions["receiver.db"].new_session() as session:
            columns = [c for c in StatsCell.__table__.c if c.name != "id"]
            return sorted(tuple(map(str, row)) for row in session.execute(sa.select(*columns)))

    with app.extensions["receiver.db"].new_session() as session:
        while not roll_up(session, grace=NO_GRACE).done:
            pass
        first = cells()
        roll_up(session, grace=timedelta(days=3650))  # every hour again
    assert cells() == first


def test_answers_follow_an_archive_prune_and_import(app: Flask, runner: Any, tmp_path: Any) -> None:
    seed(app, 200, seed_value=11)
    with app.extensions["receiver.db"].new_session() as session:
        while not roll_up(session, grace=NO_GRACE).done:
            pass
    queries = [
        MessageStatsQuery(since=T0 - timedelta(days=1), until=T0 + timedelta(days=5), group_by=group_by)
        for group_by in [(), ("day", "status"), ("hour",), ("operator",)]
    ]
    before = (T0 + timedelta(days=2)).date().isoformat()
    out = tmp_path / "archives"
    exported = runner.invoke(args=["archive", "export", "--before", before, "--out", str(out)])
    assert exported.exit_code == 0, exported.output
    pruned = runner.invoke(args=["archive", "prune", "--before", before, "--from", str(out), "--batch", "50"])
    assert pruned.exit_code == 0, pruned.output
    check(app, queries)
    (archive,) = out.iterdir()
    restored = runner.invoke(args=["archive", "import", str(archive)])
    assert restored.exit_code == 0, restored.output
    check(app, queries)
    assert answered(app, queries[0])[()]["total"] == 200


def test_rollup_command(app: Flask, runner: Any) -> None:
    seed(app, 50, seed_value=5)
    first = runner.invoke(args=["stats", "rollup"])
    assert first.exit_code == 0, first.output
    assert "summaries current" in first.output
    with app.extensions["receiver.db"].new_session() as session:
        assert read_watermark(session) is not None
    again = runner.invoke(args=["stats", "rollup", "--rebuild"])
    assert again.exit_code == 0, again.output
    check(app, [MessageStatsQuery(since=T0, until=T0 + timedelta(days=4), group_by=("day", "operator"))])


def test_percentiles_among_the_longest_deliveries_are_exact_too(app: Flask) -> None:
    """Summaries keep delivery times exactly up to ten minutes; past that the messages are read."""
    ids = seed(app, 120, seed_value=21)
    with app.extensions["receiver.db"].new_session() as session, session.begin():
        for n, message_id in enumerate(ids):
            session.execute(
                sa.update(Message)
                .where(Message.id == message_id)
                .values(
                    status=Status.delivered,
                    submitted_at=T0,
                    delivered_at=T0 + timedelta(seconds=590 + 7 * n, microseconds=n),
                )
            )
    with app.extensions["receiver.db"].new_session() as session:
        while not roll_up(session, grace=NO_GRACE).done:
            pass
    day = T0.replace(hour=0, minute=0, second=0, microsecond=0)
    check(
        app,
        [
            MessageStatsQuery(since=day, until=day + timedelta(days=5), group_by=group_by)
            for group_by in [(), ("operator",), ("day", "status")]
        ],
    )
    p50 = answered(app, MessageStatsQuery(since=day, until=day + timedelta(days=5)))[()][
        "delivery_seconds_p50"
    ]
    assert p50 > 600
