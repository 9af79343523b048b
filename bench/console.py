"""Benchmark the console: the first page of a busy number's timeline among millions of messages.

Run by hand, never in CI:

    .venv/bin/python bench/console.py --messages 10000000 \\
        --database-url postgresql+psycopg://postgres@127.0.0.1:5432/postgres --keep

It builds (or, with --keep, reuses) a database of N messages as bench/query.py does, in a database
of its own (`receiver_console_bench_<N>`), then gives one number a history of --events timeline
items: messages with one or two status events each, inbound messages, calls with a stored
recording each, and opt-outs, spread over 30 days, and runs ANALYZE (autovacuum may be off).
Then, through the real app in process (Flask test client: session cookie, user lookup, the
timeline's queries, Jinja), it times, in alternating rounds, the timeline's first page, a page
deep in its history (by cursor), and the search that leads to it (a number written differently).
Goal: the first page in under 200 ms.
"""

from __future__ import annotations

import argparse
import re
import statistics
import sys
import time
from pathlib import Path

import sqlalchemy as sa

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

import query as query_bench  # noqa: E402

from receiver.console import timeline  # noqa: E402

HOT = "919845012345"
PASSWORD = "bench password 1"


def add_hot_number(engine: sa.Engine, events: int) -> None:
    """One number with `events` timeline items (70 % messages, 10 % inbound, 15 % calls, 5 % opt-outs)."""
    messages, inbound, calls = int(events * 0.70), int(events * 0.10), int(events * 0.15)
    opt_outs = events - messages - inbound - calls
    step = 30 * 86400.0 / events
    start = "timestamptz '2026-01-01T00:00:00+00:00'"
    with engine.begin() as connection:
        if connection.scalar(
            sa.text("SELECT count(*) FROM messages WHERE mobile_canonical = :n"), {"n": HOT}
        ):
            return
        run = connection.exec_driver_sql
        run(
            f"""INSERT INTO messages (id, source, channel, mobile, mobile_canonical, sender, custom, operator,
                region, submitted_at, sent_at, delivered_at, status, provider_status, status_at, created_at,
                updated_at)
            SELECT 'hot-' || i, 'portal', 'sms', '{HOT}', '{HOT}', 'MOBTXT', 'hot-order-' || i, 'Jio',
                'Bangalore', c, c, c + interval '9 seconds', 'delivered', 'DELIVRD', c, c, c
            FROM generate_series(1, {messages}) i,
                 LATERAL (SELECT {start} + (i * {step}) * interval '1 second' AS c) t"""
        )
        run(
            f"""INSERT INTO message_events (message_id, raw_event_id, source, status, provider_status,
                occurred_at, received_at)
            SELECT 'hot-' || i, 1, 'portal', s.status, s.provider, c, c
            FROM generate_series(1, {messages}) i,
                 LATERAL (SELECT {start} + (i * {step}) * interval '1 second' AS c) t,
                 (VALUES ('accepted', 'AWAITING-DLR'), ('delivered', 'DELIVRD')) AS s(status, provider)"""
        )
        run(
            f"""INSERT INTO inbound_messages (id, source, raw_event_id, channel, from_number, to_number,
                from_canonical, to_canonical, type, text, received_at)
            SELECT 'hot-in-' || i, 'portal', 1, 'whatsapp', '{HOT}', '919019120000', '{HOT}', '919019120000',
                'text', 'message ' || i, {start} + (i * {step} * 7) * interval '1 second'
            FROM generate_series(1, {inbound}) i"""
        )
        run(
            f"""INSERT INTO calls (dedupe_key, source, raw_event_id, bridge, from_number, to_number,
                from_canonical, to_canonical, mid, start_at, end_at, duration, status, received_at)
            SELECT md5('hot-call-' || i), 'portal', 1, '918068280000', '918919520000', '{HOT}',
                '918919520000', '{HOT}', 'hot-mid-' || i, c, c + interval '30 seconds', 30, 'ANSWER', c
            FROM generate_series(1, {calls}) i,
                 LATERAL (SELECT {start} + (i * {step} * 6) * interval '1 second' AS c) t"""
        )
        run(
            f"""INSERT INTO recordings (call_id, url, url_sha256, url_expires_at, state, attempts, sha256,
                size_bytes, content_type, stored_at, created_at, updated_at)
            SELECT id, 'https://example.invalid/' || id, md5(id::text), start_at, 'stored', 1,
                encode(sha256(id::text::bytea), 'hex'), 33370, 'audio/mpeg', start_at, start_at, start_at
            FROM calls WHERE to_canonical = '{HOT}'"""
        )
        run(
            f"""INSERT INTO opt_outs (key, source, raw_event_id, channel, receiver, number_canonical, type,
                value, received_at)
            SELECT 'hot-opt-' || i, 'portal', 1, 'sms', '{HOT}', '{HOT}', 'category', 'WUC',
                {start} + (i * {step} * 20) * interval '1 second'
            FROM generate_series(1, {opt_outs}) i"""
        )
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
        connection.exec_driver_sql("ANALYZE")


def timed(client, path: str) -> float:  # type: ignore[no-untyped-def]
    started = time.perf_counter()
    response = client.get(path)
    elapsed = (time.perf_counter() - started) * 1000
    assert response.status_code in (200, 302), (path, response.status_code)
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--messages", type=int, default=10_000_000)
    parser.add_argument("--events", type=int, default=10_000, help="timeline items of the busy number")
    parser.add_argument("--database-url", required=True, help="a PostgreSQL server URL")
    parser.add_argument("--workdir", type=Path, default=ROOT / "var" / "bench")
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--repeat", type=int, default=20, help="requests of each kind per round")
    parser.add_argument("--keep", action="store_true", help="keep the database for a later run")
    args = parser.parse_args()
    args.workdir.mkdir(parents=True, exist_ok=True)
    server = args.database_url
    url = (
        sa.make_url(server)
        .set(database=f"receiver_console_bench_{args.messages}")
        .render_as_string(hide_password=False)
    )
    query_bench.ensure_database(server, url, args.messages, fresh=False)
    app = query_bench.make_app(url, args.workdir)
    engine = app.extensions["receiver.db"].engine
    add_hot_number(engine, args.events)
    from receiver.models import Role
    from receiver.users.service import add_user

    with app.extensions["receiver.db"].new_session() as session:
        name = f"bench{int(time.time())}"
        add_user(session, name, PASSWORD, Role.viewer)
    client = app.test_client()
    page = client.get("/console/sign-in").get_data(as_text=True)
    token = re.search(r'name="csrf_token" value="([^"]+)"', page).group(1)  # type: ignore[union-attr]
    assert (
        client.post(
            "/console/sign-in", data={"name": name, "password": PASSWORD, "csrf_token": token}
        ).status_code
        == 302
    )

    with app.extensions["receiver.db"].new_session() as session:
        deep = timeline.timeline(session, HOT, limit=5000)
        cursor = deep.next_cursor
    first = f"/console/numbers/{HOT}"
    paths = {
        "timeline, first page (50 items)": first,
        "timeline, page after 5,000 items": f"{first}?cursor={cursor}",
        "search '+91 98450-12345' (redirect)": "/console/search?q=%2B91+98450-12345",
    }
    for path in paths.values():
        for _ in range(5):
            timed(client, path)  # warm up
    times: dict[str, list[float]] = {name: [] for name in paths}
    for _ in range(args.rounds):  # alternate the kinds, round by round
        for name, path in paths.items():
            times[name] += [timed(client, path) for _ in range(args.repeat)]
    with engine.connect() as connection:
        items = connection.scalar(
            sa.text(
                "SELECT (SELECT count(*) FROM messages WHERE mobile_canonical = :n)"
                " + (SELECT count(*) FROM inbound_messages WHERE from_canonical = :n OR to_canonical = :n)"
                " + (SELECT count(*) FROM calls WHERE from_canonical = :n OR to_canonical = :n)"
                " + (SELECT count(*) FROM opt_outs WHERE number_canonical = :n)"
            ),
            {"n": HOT},
        )
        total = connection.scalar(sa.text("SELECT count(*) FROM messages"))
    print(f"{total:,} messages; the number {HOT} has {items:,} timeline items")
    print("| request | n | p50 ms | p99 ms | max ms |")
    print("|---|---|---|---|---|")
    for name, values in times.items():
        values.sort()
        p99 = values[min(len(values) - 1, int(len(values) * 0.99))]
        print(f"| {name} | {len(values)} | {statistics.median(values):.1f} | {p99:.1f} | {values[-1]:.1f} |")
    engine.dispose()
    if not args.keep:
        query_bench.drop_database(server, url)


if __name__ == "__main__":
    main()
