"""Benchmark the statistics API: the delivery questions asked every morning, on a big database.

Run by hand, never in CI:

    .venv/bin/python bench/stats.py --messages 1000000
    .venv/bin/python bench/stats.py --messages 10000000 \\
        --database-url postgresql+psycopg://postgres@127.0.0.1:5432/postgres --keep

It builds a fresh database (a SQLite file under --workdir, or `receiver_stats_bench_<N>` on the
given PostgreSQL server), migrated by alembic, holding N messages first heard of over --days days
(60 by default): 2 sources, 3 channels, 3 services, 8 senders, 6 operators (2 % without one),
22 regions, 17 provider statuses in every canonical status (78 % delivered or read), whole-second
delivery times (70 % in 1-10 s, 25 % in 10-120 s, 5 % up to an hour). It ANALYZEs (this server
runs with autovacuum off), runs the roll-up over all of history (timed), ANALYZEs again, then:

- marks 2,000 messages of the last 3 days changed after the roll-up (late reports): their hours
  are read from the messages, as they would be between two runs of the worker's roll-up;
- times, through the real app in process (Flask test client: API key, query, JSON), rounds of the
  questions below, alternating, over a 30-day window ending at an odd minute (ragged ends);
- times the same questions answered from the messages alone (no roll-up), a few rounds.

Goals: 10 M messages on PostgreSQL, 30 days by operator or by day and status, p99 < 500 ms;
1 M on SQLite < 1 s.
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import sys
import time
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import sqlalchemy as sa

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from receiver import migrate  # noqa: E402
from receiver.models import Message, Status  # noqa: E402
from receiver.stats.jobs import catch_up, rebuild  # noqa: E402

END = datetime(2026, 3, 1, tzinfo=UTC)
OPERATORS = [(35, "Jio"), (30, "Airtel"), (20, "Vi"), (10, "BSNL"), (3, "MTNL"), (2, None)]
REGIONS = [
    "Andhra Pradesh", "Assam", "Bihar", "Chennai", "Delhi", "Gujarat", "Haryana", "Himachal Pradesh",
    "Jammu and Kashmir", "Karnataka", "Kerala", "Kolkata", "Madhya Pradesh", "Maharashtra", "Mumbai",
    "North East", "Odisha", "Punjab", "Rajasthan", "Tamil Nadu", "Uttar Pradesh (East)", "West Bengal",
]  # fmt: skip
SENDERS = ["MOBTXT", "OTPSMS", "BNKALR", "SHOPIN", "TRAVEL", "FOODIE", "INSURE", "HLTHCR"]
# (share in 1000, canonical status, provider status)
STATUSES = [
    (700, "delivered", "DELIVRD"),
    (80, "read", "read"),
    (30, "failed", "UNDELIV"),
    (20, "failed", "ABSENT-SUB"),
    (15, "failed", "MOB-OFF"),
    (10, "failed", "HANDSET-ERR"),
    (25, "rejected", "DNDNUMB"),
    (20, "rejected", "DLT-TEMPLATE-MISMATCH"),
    (5, "rejected", "BLACKLST"),
    (20, "expired", "EXPIRED"),
    (15, "accepted", "AWAITING-DLR"),
    (10, "accepted", "queued"),
    (15, "sent", "sent"),
    (5, "sent", "dispatched"),
    (5, "unknown", "TIMEOUT-DLR"),
    (3, "deleted", "deleted"),
    (22, "delivered", "delivered"),
]


def _pick_case(expr: str, choices: list[tuple[int, str | None]]) -> str:
    parts, floor = [], 0
    for share, value in choices:
        floor += share
        parts.append(f"WHEN {expr} < {floor} THEN {'NULL' if value is None else repr(value)}")
    return "CASE " + " ".join(parts) + " END"


def _pg_load(connection: sa.Connection, n: int, days: int) -> None:
    """Generate the rows in PostgreSQL itself (generate_series)."""
    step = days * 86400.0 / n
    start = END - timedelta(days=days)
    hashed = "(hashtext('{}' || i) & 2147483647)"
    regions = "ARRAY[" + ", ".join(repr(r) for r in REGIONS) + "]"
    senders = "ARRAY[" + ", ".join(repr(s) for s in SENDERS) + "]"
    status = _pick_case("p", [(share, status) for share, status, _ in STATUSES])
    provider = _pick_case("p", [(share, provider) for share, _, provider in STATUSES])
    connection.exec_driver_sql("SET maintenance_work_mem = '512MB'")
    connection.exec_driver_sql(
        f"""
        INSERT INTO messages (id, source, channel, mobile, mobile_canonical, sender, service, custom,
            credits, units, operator, region, country, submitted_at, sent_at, delivered_at, status,
            provider_status, status_at, created_at, updated_at)
        SELECT md5(i::text)::uuid::text || ':1',
            CASE WHEN mod(i, 10) < 7 THEN 'portal' ELSE 'bics' END,
            channel, '9198' || lpad(mod(i::bigint * 7919, 99999999)::text, 8, '0'),
            '9198' || lpad(mod(i::bigint * 7919, 99999999)::text, 8, '0'),
            ({senders})[mod({hashed.format("s")}, 8) + 1],
            (ARRAY['otp', 'txn', 'promo'])[mod(i, 3) + 1],
            'c' || mod(i, 100000),
            CASE WHEN channel = 'sms' THEN 0.1200 * units ELSE 0.3500 END, units,
            {_pick_case("o", OPERATORS)}, ({regions})[mod({hashed.format("r")}, 22) + 1], 'India',
            c, c + interval '1 second',
            CASE WHEN st IN ('delivered', 'read') THEN c + delay * interval '1 second' END,
            st, ps, c + delay * interval '1 second', c, c + delay * interval '1 second'
        FROM generate_series(1, {n}) AS i,
        LATERAL (SELECT
            timestamptz '{start.isoformat()}' + (i * {step}) * interval '1 second' AS c,
            mod({hashed.format("p")}, 1000) AS p,
            mod({hashed.format("o")}, 100) AS o,
            mod({hashed.format("d")}, 1000) AS d,
            1 + (mod(i, 10) = 0)::int AS units,
            CASE mod({hashed.format("c")}, 20) WHEN 0 THEN 'whatsapp' WHEN 1 THEN 'whatsapp'
                WHEN 2 THEN 'rcs' ELSE 'sms' END AS channel) t,
        LATERAL (SELECT {status} AS st, {provider} AS ps,
            CASE WHEN d < 700 THEN 1 + mod(d, 10) WHEN d < 950 THEN 10 + mod(d * 7, 110)
                ELSE 120 + mod({hashed.format("f")}, 3480) END AS delay) u
        """
    )


def _sqlite_rows(n: int, days: int):  # type: ignore[no-untyped-def]
    rng = random.Random(15)
    step = timedelta(seconds=days * 86400 / n)
    start = END - timedelta(days=days)
    statuses = [(share, s, p) for share, s, p in STATUSES]
    for i in range(1, n + 1):
        created = start + step * i
        pick, floor = rng.randrange(1000), 0
        for share, status, provider in statuses:  # noqa: B007 (the loop picks them)
            floor += share
            if pick < floor:
                break
        pick, floor = rng.randrange(100), 0
        for share, operator in OPERATORS:  # noqa: B007
            floor += share
            if pick < floor:
                break
        d = rng.randrange(1000)
        delay = 1 + d % 10 if d < 700 else 10 + (d * 7) % 110 if d < 950 else 120 + rng.randrange(3480)
        channel = rng.choices(["sms", "whatsapp", "rcs"], [17, 2, 1])[0]
        units = 2 if i % 10 == 0 else 1
        done = created + timedelta(seconds=delay)
        yield {
            "id": f"{rng.getrandbits(128):032x}:1",
            "source": "portal" if i % 10 < 7 else "bics",
            "channel": channel,
            "mobile": (mobile := f"9198{(i * 7919) % 99999999:08d}"),
            "mobile_canonical": mobile,
            "sender": SENDERS[rng.randrange(8)],
            "service": ["otp", "txn", "promo"][i % 3],
            "custom": f"c{i % 100000}",
            "credits": Decimal("0.1200") * units if channel == "sms" else Decimal("0.3500"),
            "units": units,
            "operator": operator,
            "region": REGIONS[rng.randrange(22)],
            "country": "India",
            "submitted_at": created,
            "sent_at": created + timedelta(seconds=1),
            "delivered_at": done if status in ("delivered", "read") else None,
            "status": Status(status),
            "provider_status": provider,
            "status_at": done,
            "created_at": created,
            "updated_at": done,
        }


def build(url: str, n: int, days: int) -> None:
    """Migrate, drop the messages' secondary indexes, load, rebuild them, analyze."""
    migrate.upgrade(url)
    engine = sa.create_engine(url)
    indexes = list(Message.__table__.indexes)
    started = time.perf_counter()
    with engine.begin() as connection:
        for index in indexes:
            index.drop(connection)
        if engine.dialect.name == "postgresql":
            _pg_load(connection, n, days)
        else:
            batch = []
            for row in _sqlite_rows(n, days):
                batch.append(row)
                if len(batch) == 20000:
                    connection.execute(sa.insert(Message), batch)
                    batch.clear()
            if batch:
                connection.execute(sa.insert(Message), batch)
        loaded = time.perf_counter()
        for index in indexes:
            index.create(connection)
    analyze(engine)
    print(
        f"built {n:,} messages: load {loaded - started:.0f} s, indexes {time.perf_counter() - loaded:.0f} s"
    )
    engine.dispose()


def analyze(engine: sa.Engine) -> None:
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
        connection.exec_driver_sql("VACUUM ANALYZE" if engine.dialect.name == "postgresql" else "ANALYZE")


def _complete(url: str) -> bool:
    """Whether a kept database finished building (its messages are in and indexed)."""
    engine = sa.create_engine(url)
    try:
        with engine.connect() as connection:
            indexes = {index["name"] for index in sa.inspect(connection).get_indexes("messages")}
            loaded = connection.scalar(sa.select(Message.id).limit(1)) is not None
            return loaded and "ix_messages_updated_at" in indexes
    except sa.exc.SQLAlchemyError:
        return False
    finally:
        engine.dispose()


def ensure_database(server_url: str | None, url: str, n: int, days: int, fresh: bool) -> None:
    if server_url:
        admin = sa.create_engine(server_url, isolation_level="AUTOCOMMIT")
        name = sa.make_url(url).database
        with admin.connect() as connection:
            exists = connection.scalar(sa.text("SELECT 1 FROM pg_database WHERE datname = :n"), {"n": name})
            if exists and fresh:
                connection.exec_driver_sql(f'DROP DATABASE "{name}" WITH (FORCE)')
                exists = False
            if not exists:
                connection.exec_driver_sql(f'CREATE DATABASE "{name}"')
        admin.dispose()
        if exists and _complete(url):
            return
    else:
        path = Path(sa.make_url(url).database or "")
        if path.exists() and not fresh and _complete(url):
            return
        for suffix in ("", "-wal", "-shm"):
            Path(f"{path}{suffix}").unlink(missing_ok=True)
    build(url, n, days)


def _create(server: str, name: str) -> None:
    admin = sa.create_engine(server, isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.exec_driver_sql(f'CREATE DATABASE "{name}"')
    admin.dispose()


def _drop(server: str, name: str) -> None:
    admin = sa.create_engine(server, isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    admin.dispose()


def make_app(url: str, workdir: Path):  # type: ignore[no-untyped-def]
    from receiver import create_app

    return create_app(
        {
            "DATABASE_URL": url,
            "VAR_DIR": str(workdir),
            "REDIS_URL": None,
            "LOG_LEVEL": "WARNING",
            "TESTING": True,
        }
    )


def roll_up_history(app, fresh: bool) -> None:  # type: ignore[no-untyped-def]
    db = app.extensions["receiver.db"]
    grace = timedelta(seconds=app.config["STATS_ROLLUP_GRACE"])
    with db.new_session() as session:
        if fresh:
            rebuild(session)
        started = time.perf_counter()
        result = catch_up(session, grace)
    print(f"roll-up: {result.hours:,} hours in {result.runs} runs, {time.perf_counter() - started:.0f} s")
    analyze(db.engine)


def late_reports(app, count: int) -> None:  # type: ignore[no-untyped-def]
    """Mark messages of the last 3 days changed now, as late reports would (after the roll-up)."""
    engine = app.extensions["receiver.db"].engine
    rng = random.Random(3)
    with engine.begin() as connection:
        ids = connection.scalars(
            sa.select(Message.id).where(Message.created_at >= END - timedelta(days=3)).limit(count * 20)
        ).all()
        chosen = rng.sample(list(ids), min(count, len(ids)))
        connection.execute(
            sa.update(Message).where(Message.id.in_(chosen)).values(updated_at=datetime.now(UTC))
        )


def summary(name: str, times: list[float]) -> str:
    times = sorted(times)
    p99 = times[min(len(times) - 1, int(len(times) * 0.99))]
    return f"| {name} | {len(times)} | {statistics.median(times):.0f} | {p99:.0f} | {times[-1]:.0f} |"


QUESTIONS = {
    "30 days by operator": "group_by=operator",
    "30 days by day and status": "group_by=day,status",
    "30 days by day and status, tz=Asia/Kolkata": "group_by=day,status&tz=Asia/Kolkata",
    "30 days by day and provider status (error codes that rose)": "group_by=day,provider_status",
    "30 days by operator and region, source=portal": "group_by=operator,region&source=portal",
}


def timings(app, rounds: int) -> dict[str, list[float]]:  # type: ignore[no-untyped-def]
    from receiver.sources import create_api_key

    with app.extensions["receiver.db"].new_session() as session:
        key = create_api_key(session, f"bench-{os.getpid()}-{time.monotonic_ns()}")
    client = app.test_client()
    headers = {"Authorization": f"Bearer {key}"}
    until = END - timedelta(minutes=23)
    window = f"since={(until - timedelta(days=30)).isoformat()}&until={until.isoformat()}".replace("+", "%2B")
    times: dict[str, list[float]] = {name: [] for name in QUESTIONS}
    for _ in range(rounds):
        for name, query in QUESTIONS.items():
            started = time.perf_counter()
            response = client.get(f"/api/v1/stats/messages?{window}&{query}", headers=headers)
            times[name].append((time.perf_counter() - started) * 1000)
            assert response.status_code == 200, response.get_data(as_text=True)[:300]
    return times


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--messages", type=int, default=1_000_000)
    parser.add_argument("--days", type=int, default=60)
    parser.add_argument("--database-url", help="a PostgreSQL server URL (default: SQLite under --workdir)")
    parser.add_argument("--workdir", type=Path, default=ROOT / "var" / "bench-stats")
    parser.add_argument("--rounds", type=int, default=40)
    parser.add_argument("--scan-rounds", type=int, default=3)
    parser.add_argument("--keep", action="store_true", help="keep the database; reuse one kept before")
    parser.add_argument(
        "--ingest", type=int, metavar="N", help="instead: time N webhooks a round with and without the index"
    )
    args = parser.parse_args()
    args.workdir.mkdir(parents=True, exist_ok=True)
    server = args.database_url
    if args.ingest:
        name = f"receiver_stats_ingest_{os.getpid()}"
        url = (
            sa.make_url(server).set(database=name).render_as_string(False)
            if server
            else (f"sqlite:///{args.workdir / f'{name}.db'}")
        )
        if server:
            _create(server, name)
        ingest_cost(url, args.workdir, args.rounds, args.ingest)
        if server:
            _drop(server, name)
        return
    if server:
        url = sa.make_url(server).set(database=f"receiver_stats_bench_{args.messages}")
        url = url.render_as_string(hide_password=False)
    else:
        url = f"sqlite:///{args.workdir / f'stats-bench-{args.messages}.db'}"
    ensure_database(server, url, args.messages, args.days, fresh=not args.keep)
    app = make_app(url, args.workdir)
    roll_up_history(app, fresh=True)
    late_reports(app, 2000)
    print("| question | rounds | p50 ms | p99 ms | max ms |\n|---|---|---|---|---|")
    timings(app, 2)  # warm-up
    for name, values in timings(app, args.rounds).items():
        print(summary(name, values), flush=True)
    with app.extensions["receiver.db"].new_session() as session:
        rebuild(session)  # no summaries: every question read from the messages
    for name, values in timings(app, args.scan_rounds).items():
        print(summary(f"{name} (from the messages alone)", values), flush=True)
    if not args.keep and server:
        _drop(server, str(sa.make_url(url).database))


def ingest_cost(url: str, workdir: Path, rounds: int, per_round: int) -> None:
    """Webhooks through the real app in process (Flask test client), in alternating rounds with
    and without the index the statistics add to messages (ix_messages_updated_at): a new message's
    report, then a second report of it (an update of its row)."""
    from receiver.sources import add_source

    migrate.upgrade(url)
    app = make_app(url, workdir)
    engine = app.extensions["receiver.db"].engine
    with app.extensions["receiver.db"].new_session() as session:
        secret = add_source(session, f"bench{os.getpid()}", secret="bench-secret-" + "x" * 20).secret
    client = app.test_client()
    headers = {"Authorization": f"Bearer {secret}"}
    index = next(i for i in Message.__table__.indexes if i.name == "ix_messages_updated_at")
    results: dict[bool, list[float]] = {True: [], False: []}
    serial = 0
    for round_number in range(rounds * 2):
        with_index = round_number % 2 == 0
        with engine.begin() as connection:
            exists = index.name in {i["name"] for i in sa.inspect(connection).get_indexes("messages")}
            if with_index and not exists:
                index.create(connection)
            if not with_index and exists:
                index.drop(connection)
        started = time.perf_counter()
        for _ in range(per_round):
            serial += 1
            message_id = f"ingest-{os.getpid()}-{serial}"
            for status in ("AWAITING-DLR", "DELIVRD"):
                body = {
                    "id": message_id,
                    "mobile": "919845012345",
                    "status": status,
                    "submit_at": "1701059582",
                }
                response = client.post(f"/hooks/bench{os.getpid()}", json=body, headers=headers)
                assert response.status_code == 200, response.get_data(as_text=True)
        results[with_index].append((time.perf_counter() - started) * 1000 / (2 * per_round))
    for with_index, values in results.items():
        label = "with ix_messages_updated_at" if with_index else "without it"
        print(f"| {label} | {', '.join(f'{v:.2f}' for v in values)} | {statistics.median(values):.2f} |")
    print(f"ratio of medians: {statistics.median(results[True]) / statistics.median(results[False]):.3f}")


if __name__ == "__main__":
    main()
