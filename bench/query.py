"""Benchmark the query API: latency of the common questions, and the CSV export's rows/s and memory.

Run by hand, never in CI:

    .venv/bin/python bench/query.py --messages 1000000
    .venv/bin/python bench/query.py --messages 10000000 \\
        --database-url postgresql+psycopg://postgres@127.0.0.1:5432/postgres --keep

It builds a fresh database (a SQLite file under --workdir, or a new database `receiver_bench_<N>`
on the given PostgreSQL server), migrated by alembic, holding N messages spread over 30 days with
a history of one or two status events each (~1.95 on average), loaded in bulk with the secondary
indexes built afterwards. With --keep the database stays and a later run with the same --messages
reuses it. Then, through the real app in process (Flask test client: API key check, query,
serialization), it times:

- a message by id (with its history);
- the messages of one mobile number (~5 each);
- a page of 100 filtered by status and day, and the page after it (by cursor);
- a CSV export of --export-rows rows (a period holding that many), in a child process whose
  peak RSS is read from the kernel (wait4).

It prints p50/p99 per query, the export's rows/s and peak RSS, and the query plans.
Goals (issue 4): by id and by number p99 < 10 ms, a page < 50 ms, export > 50,000 rows/s in < 200 MB.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import sqlalchemy as sa

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from receiver import migrate  # noqa: E402
from receiver.api import queries  # noqa: E402
from receiver.models import Message, MessageEvent, Status  # noqa: E402

T0 = datetime(2026, 1, 1, tzinfo=UTC)
DAYS = 30
# (share in 100, canonical status, provider status of the final report or None)
MIX = [
    (80, "delivered", "DELIVRD"),
    (10, "failed", "UNDELIV"),
    (5, "accepted", None),
    (3, "rejected", "DNDNUMB"),
    (2, "expired", "EXPIRED"),
]


def _status_case(expr: str, column: int) -> str:
    """SQL CASE picking a MIX column from a 0..99 value."""
    parts, floor = [], 0
    for share, status, provider in MIX:
        value = (status, provider or "AWAITING-DLR")[column]
        parts.append(f"WHEN {expr} < {floor + share} THEN '{value}'")
        floor += share
    return "CASE " + " ".join(parts) + " END"


def _pg_load(connection: sa.Connection, n: int) -> None:
    """Generate the rows in PostgreSQL itself (generate_series), then build the indexes."""
    step = DAYS * 86400.0 / n
    numbers = max(n // 5, 1)
    connection.exec_driver_sql("SET maintenance_work_mem = '512MB'")
    connection.exec_driver_sql(
        "INSERT INTO raw_events (id, source, received_at, method, path, query_string, headers, body, sha256,"
        " fingerprint, state) VALUES (1, 'portal', now(), 'POST', '/hooks/portal', '', '{}', '', '', 'bench',"
        " 'processed')"
    )
    pick = "mod(hashtext(i::text) & 2147483647, 100)"
    connection.exec_driver_sql(
        f"""
        INSERT INTO messages (id, source, channel, mobile, mobile_canonical, sender, service, custom,
            custom1, cid, credits, units, operator, operator_code, region, region_code, country,
            country_code, submitted_at, sent_at, delivered_at, status, provider_status, status_at,
            created_at, updated_at)
        SELECT md5(i::text)::uuid::text || ':1', 'portal',
            CASE mod(i, 20) WHEN 0 THEN 'whatsapp' WHEN 1 THEN 'rcs' ELSE 'sms' END,
            '91' || lpad(mod(hashtext('m' || i) & 2147483647, {numbers})::text, 10, '0'),
            '91' || lpad(mod(hashtext('m' || i) & 2147483647, {numbers})::text, 10, '0'),
            'MOBTXT', 'T', 'order-' || mod(i, {max(n // 2, 1)}), 'campaign-3344', '1234444' || mod(i, 1000),
            2.0000, 2, 'Jio', 'RJ', 'Bangalore', 'KA', 'India', 'in',
            c, c + interval '2 seconds', CASE WHEN {pick} < 80 THEN c + interval '9 seconds' END,
            {_status_case(pick, 0)}, {_status_case(pick, 1)},
            c + interval '9 seconds', c, c + interval '9 seconds'
        FROM generate_series(1, {n}) AS i,
             LATERAL (SELECT timestamptz '{T0.isoformat()}' + (i * {step}) * interval '1 second' AS c) t
        """
    )
    connection.exec_driver_sql(
        f"""
        INSERT INTO message_events (message_id, raw_event_id, source, status, provider_status, occurred_at,
            received_at)
        SELECT md5(i::text)::uuid::text || ':1', 1, 'portal',
            CASE WHEN j = 1 THEN 'accepted' ELSE {_status_case(pick, 0)} END,
            CASE WHEN j = 1 THEN 'AWAITING-DLR' ELSE {_status_case(pick, 1)} END,
            c + (j * 4) * interval '1 second', c + (j * 4) * interval '1 second'
        FROM generate_series(1, {n}) AS i,
             LATERAL (SELECT timestamptz '{T0.isoformat()}' + (i * {step}) * interval '1 second' AS c) t,
             generate_series(1, 2) AS j
        WHERE j = 1 OR {pick} < 90 OR {pick} >= 95  -- the accepted (90-94) have no final report
        """
    )


def _sqlite_load(connection: sa.Connection, n: int) -> None:
    """Generate the rows in Python and insert them in batches (SQLite has no generate_series)."""
    rng = random.Random(4)
    numbers = max(n // 5, 1)
    step = timedelta(seconds=DAYS * 86400 / n)
    connection.execute(
        sa.text(
            "INSERT INTO raw_events (id, source, received_at, method, path, query_string, headers, body,"
            " sha256, fingerprint, state) VALUES (1, 'portal', '2026-01-01 00:00:00.000000', 'POST',"
            " '/hooks/portal', '', '{}', x'', '', 'bench', 'processed')"
        )
    )
    messages, events = [], []

    def flush() -> None:
        if messages:
            connection.execute(sa.insert(Message), messages)
            connection.execute(sa.insert(MessageEvent), events)
            messages.clear()
            events.clear()

    for i in range(1, n + 1):
        created = T0 + step * i
        pick = rng.randrange(100)
        floor = 0
        for share, status, provider in MIX:  # noqa: B007 (the loop picks them)
            if pick < floor + share:
                break
            floor += share
        message_id = f"{rng.getrandbits(128):032x}:1"
        final = Status(status) != Status.accepted
        done = created + timedelta(seconds=9)
        messages.append(
            {
                "id": message_id,
                "source": "portal",
                "channel": "whatsapp" if i % 20 == 0 else "rcs" if i % 20 == 1 else "sms",
                "mobile": (mobile := f"91{rng.randrange(numbers):010d}"),
                "mobile_canonical": mobile,  # 12 digits: already with the country code
                "sender": "MOBTXT",
                "service": "T",
                "custom": f"order-{i % max(n // 2, 1)}",
                "custom1": "campaign-3344",
                "cid": f"1234444{i % 1000}",
                "credits": 2,
                "units": 2,
                "operator": "Jio",
                "operator_code": "RJ",
                "region": "Bangalore",
                "region_code": "KA",
                "country": "India",
                "country_code": "in",
                "submitted_at": created,
                "sent_at": created + timedelta(seconds=2),
                "delivered_at": done if status == "delivered" else None,
                "status": Status(status),
                "provider_status": provider or "AWAITING-DLR",
                "status_at": done,
                "created_at": created,
                "updated_at": done,
            }
        )
        history = [("accepted", "AWAITING-DLR")] + ([(status, provider)] if final else [])
        for j, (event_status, event_provider) in enumerate(history, start=1):
            at = created + timedelta(seconds=4 * j)
            events.append(
                {
                    "message_id": message_id,
                    "raw_event_id": 1,
                    "source": "portal",
                    "status": Status(event_status),
                    "provider_status": event_provider,
                    "occurred_at": at,
                    "received_at": at,
                }
            )
        if len(messages) >= 20000:
            flush()
    flush()


def build(url: str, n: int) -> None:
    """Migrate, drop the secondary indexes, load, rebuild them, analyze."""
    migrate.upgrade(url)
    engine = sa.create_engine(url)
    tables = [Message.__table__, MessageEvent.__table__]
    indexes = [index for table in tables for index in table.indexes]
    started = time.perf_counter()
    with engine.begin() as connection:
        for index in indexes:
            index.drop(connection)
        if engine.dialect.name == "postgresql":
            _pg_load(connection, n)
        else:
            _sqlite_load(connection, n)
        loaded = time.perf_counter()
        for index in indexes:
            index.create(connection)
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
        connection.exec_driver_sql("VACUUM ANALYZE" if engine.dialect.name == "postgresql" else "ANALYZE")
    print(
        f"built {n:,} messages: load {loaded - started:.0f} s, indexes and analyze "
        f"{time.perf_counter() - loaded:.0f} s",
        flush=True,
    )
    engine.dispose()


def bench_url(server_url: str | None, n: int, workdir: Path) -> str:
    if not server_url:
        return f"sqlite:///{workdir / f'query-bench-{n}.db'}"
    return sa.make_url(server_url).set(database=f"receiver_bench_{n}").render_as_string(hide_password=False)


def _complete(url: str) -> bool:
    """Whether a kept database finished building (its messages are in and indexed)."""
    engine = sa.create_engine(url)
    try:
        with engine.connect() as connection:
            indexed = "ix_messages_status_created_at_id" in {
                index["name"] for index in sa.inspect(connection).get_indexes("messages")
            }
            return indexed and connection.scalar(sa.select(Message.id).limit(1)) is not None
    except sa.exc.SQLAlchemyError:
        return False
    finally:
        engine.dispose()


def ensure_database(server_url: str | None, url: str, n: int, fresh: bool) -> None:
    """Create the bench database unless a previous --keep run left a complete one."""
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
    build(url, n)


def drop_database(server_url: str, url: str) -> None:
    admin = sa.create_engine(server_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.exec_driver_sql(f'DROP DATABASE IF EXISTS "{sa.make_url(url).database}" WITH (FORCE)')
    admin.dispose()


def make_app(url: str, workdir: Path):  # type: ignore[no-untyped-def]
    from receiver import create_app, gunicorn_conf

    app = create_app(
        {
            "DATABASE_URL": url,
            "VAR_DIR": str(workdir),
            "REDIS_URL": None,
            "LOG_LEVEL": "WARNING",
            "TESTING": True,
        }
    )
    gunicorn_conf.post_worker_init(None)  # as each gunicorn worker does once the app is loaded
    return app


def api_key(app, name: str) -> str:  # type: ignore[no-untyped-def]
    from receiver.sources import create_api_key

    with app.extensions["receiver.db"].new_session() as session:
        return create_api_key(session, name)


def timed(client, key: str, paths: list[str]) -> list[float]:  # type: ignore[no-untyped-def]
    headers = {"Authorization": f"Bearer {key}"}
    times = []
    for path in paths:
        started = time.perf_counter()
        response = client.get(path, headers=headers)
        elapsed = time.perf_counter() - started
        assert response.status_code == 200, (path, response.get_data(as_text=True)[:300])
        times.append(elapsed * 1000)
    return times


def summary(name: str, times: list[float]) -> str:
    times = sorted(times)
    p99 = times[min(len(times) - 1, int(len(times) * 0.99))]
    return f"| {name} | {len(times)} | {statistics.median(times):.2f} | {p99:.2f} | {times[-1]:.2f} |"


def latencies(url: str, workdir: Path, n: int, repeat: int) -> list[str]:
    app = make_app(url, workdir)
    key = api_key(app, f"bench-{os.getpid()}")
    client = app.test_client()
    engine = app.extensions["receiver.db"].engine
    rng = random.Random(7)
    with engine.connect() as connection:
        sample_ids = list(
            connection.scalars(
                sa.select(Message.id)
                .where(Message.created_at >= T0 + timedelta(days=rng.randrange(DAYS)))
                .limit(repeat)
            )
        )
        mobiles = list(
            connection.scalars(
                sa.select(Message.mobile)
                .where(Message.created_at >= T0 + timedelta(days=rng.randrange(DAYS)))
                .limit(repeat)
            )
        )
    rng.shuffle(sample_ids)
    by_id = [f"/api/v1/messages/{i}" for i in sample_ids]
    by_mobile = [f"/api/v1/messages?mobile={m}" for m in mobiles]
    statuses = ["delivered", "failed", "rejected"]
    pages = []
    for _ in range(repeat):
        day = T0 + timedelta(days=rng.randrange(DAYS))
        status = rng.choice(statuses)
        pages.append(
            f"/api/v1/messages?status={status}&since={day:%Y-%m-%d}&until={day + timedelta(days=1):%Y-%m-%d}"
        )
    headers = {"Authorization": f"Bearer {key}"}
    next_pages = []
    for path in pages[: max(repeat // 2, 1)]:
        cursor = client.get(path, headers=headers).get_json()["next_cursor"]
        if cursor:
            next_pages.append(f"{path}&cursor={cursor}")
    timed(client, key, by_id[:20] + by_mobile[:20] + pages[:20])  # warm up
    rows = [
        summary("message by id (with history)", timed(client, key, by_id)),
        summary("messages of one mobile number (~5, with histories)", timed(client, key, by_mobile)),
        summary("page of 100: status + day", timed(client, key, pages)),
        summary("next page of 100 (cursor)", timed(client, key, next_pages)),
    ]
    plans = explain(engine, sample_ids[0], mobiles[0])
    engine.dispose()
    return rows + [""] + plans


def explain(engine: sa.Engine, message_id: str, mobile: str) -> list[str]:
    day = T0 + timedelta(days=3)
    first_page = queries.filtered(
        queries.MESSAGES,
        {"status": Status.failed, "since": day, "until": day + timedelta(days=1)},
        Message.id,
    ).limit(100)
    with engine.connect() as connection:
        page_ids = list(connection.scalars(first_page))
    cases = {
        "by id": sa.select(Message).where(Message.id == message_id),
        "by mobile": queries.filtered(queries.MESSAGES, {"mobile": mobile}).limit(101),
        "status + day, first page (failed: 10 % of rows)": queries.filtered(
            queries.MESSAGES, {"status": Status.failed, "since": day, "until": day + timedelta(days=1)}
        ).limit(101),
        "status + day, page 2 (delivered: 80 % of rows)": queries.filtered(
            queries.MESSAGES, {"status": Status.delivered, "since": day, "until": day + timedelta(days=1)}
        )
        .where(queries._after(queries.MESSAGES, (day + timedelta(hours=12), "8")))
        .limit(101),
        # As the API reads a page's events: one query for all of them, in each history's order.
        "history of a page (100 messages)": sa.select(MessageEvent)
        .where(MessageEvent.message_id.in_(page_ids))
        .order_by(sa.func.coalesce(MessageEvent.occurred_at, MessageEvent.received_at), MessageEvent.id),
    }
    out = []
    postgres = engine.dialect.name == "postgresql"
    with engine.connect() as connection:
        for name, statement in cases.items():
            sql = str(statement.compile(engine, compile_kwargs={"literal_binds": True}))
            prefix = (
                "EXPLAIN (ANALYZE, COSTS OFF, TIMING OFF, SUMMARY OFF) "
                if postgres
                else "EXPLAIN QUERY PLAN "
            )
            plan = connection.exec_driver_sql(prefix + sql).all()
            lines = [row[0] if postgres else row[-1] for row in plan]
            out.append(f"-- {name}\n" + "\n".join(lines))
    return out


def export_child(url: str, workdir: str, since: str, until: str) -> None:
    """Stream one CSV export through the app; print rows, seconds, and RSS before it started."""
    import resource

    app = make_app(url, Path(workdir))
    key = api_key(app, f"export-{os.getpid()}")
    client = app.test_client()
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    started = time.perf_counter()
    response = client.get(
        "/api/v1/messages",
        query_string={"format": "csv", "since": since, "until": until},
        headers={"Authorization": f"Bearer {key}"},
        buffered=False,
    )
    assert response.status_code == 200
    lines = 0
    size = 0
    for chunk in response.response:
        lines += chunk.count(b"\n")
        size += len(chunk)
    response.close()
    elapsed = time.perf_counter() - started
    print(json.dumps({"rows": lines - 1, "seconds": elapsed, "bytes": size, "rss_before_kb": before}))


def export(url: str, workdir: Path, n: int, rows: int) -> str:
    span = timedelta(seconds=DAYS * 86400 * min(rows, n) / n)
    since, until = T0, T0 + span + timedelta(seconds=1)
    argv = [
        sys.executable,
        __file__,
        "--export-child",
        url,
        str(workdir),
        since.isoformat(),
        until.isoformat(),
    ]
    process = subprocess.Popen(argv, stdout=subprocess.PIPE)
    assert process.stdout is not None
    output = process.stdout.read()
    _, status, usage = os.wait4(process.pid, 0)
    assert status == 0, output
    result = json.loads(output.decode().strip().splitlines()[-1])
    return (
        f"CSV export: {result['rows']:,} rows, {result['bytes'] / 1e6:.0f} MB in {result['seconds']:.1f} s = "
        f"{result['rows'] / result['seconds']:,.0f} rows/s; peak RSS {usage.ru_maxrss / 1024:.0f} MB "
        f"(app loaded, before the export: {result['rss_before_kb'] / 1024:.0f} MB)"
    )


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--export-child":
        export_child(*sys.argv[2:6])
        return
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--messages", type=int, default=1_000_000)
    parser.add_argument("--database-url", help="a PostgreSQL server URL; default: a SQLite file in --workdir")
    parser.add_argument("--workdir", type=Path, default=ROOT / "var" / "bench")
    parser.add_argument("--repeat", type=int, default=300, help="requests per latency measurement")
    parser.add_argument("--export-rows", type=int, default=1_000_000)
    parser.add_argument("--keep", action="store_true", help="keep the database for a later run")
    parser.add_argument("--fresh", action="store_true", help="rebuild the database even if one was kept")
    args = parser.parse_args()
    args.workdir.mkdir(parents=True, exist_ok=True)
    from receiver.config import normalise_database_url

    server = normalise_database_url(args.database_url) if args.database_url else None
    url = bench_url(server, args.messages, args.workdir)
    ensure_database(server, url, args.messages, args.fresh)
    try:
        print("| query | requests | p50 ms | p99 ms | max ms |\n|---|---|---|---|---|")
        for line in latencies(url, args.workdir, args.messages, args.repeat):
            print(line, flush=True)
        print(export(url, args.workdir, args.messages, args.export_rows), flush=True)
    finally:
        if not args.keep:
            if server:
                drop_database(server, url)
            else:
                Path(sa.make_url(url).database or "").unlink(missing_ok=True)


if __name__ == "__main__":
    main()
