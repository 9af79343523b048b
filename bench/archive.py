"""Benchmark `receiver archive export` and `receiver archive verify`: rows/s and peak memory.

Run by hand, never in CI:

    .venv/bin/python bench/archive.py --messages 1000000
    .venv/bin/python bench/archive.py --messages 200000 --database-url postgresql+psycopg://postgres@127.0.0.1/postgres

It builds a fresh database (a SQLite file under --workdir, or a new database on the given
PostgreSQL server, dropped at the end) holding N messages over 30 days, each with a history of
--events status reports, and one raw webhook request per report, as ingest stores them. Then it
runs the real commands as child processes and reads their peak RSS from the kernel (wait4). The
goals (issue 5): over 50,000 rows/s, under 300 MB.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import secrets
import shutil
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import sqlalchemy as sa

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from receiver import migrate  # noqa: E402
from receiver.models import Message, MessageEvent, RawEvent  # noqa: E402

CUTOFF = datetime(2026, 1, 31, tzinfo=UTC)
STATUSES = [("AWAITING-DLR", "accepted"), ("SENT", "sent"), ("DELIVRD", "delivered"), ("READ", "read")]


def _body(message_id: str, status: str, at: datetime) -> bytes:
    return json.dumps(
        {
            "id": message_id,
            "mobile": "9189212690" + message_id[-2:],
            "status": status,
            "credits": "2.0000",
            "units": 2,
            "deliv_at": str(int(at.timestamp())),
            "sent_at": str(int(at.timestamp()) - 20),
            "submit_at": str(int(at.timestamp()) - 25),
            "cid": "1234444" + message_id[:4],
            "custom": "order-" + message_id[:8],
            "custom1": "campaign-3344",
            "location": "India",
            "region": "Bangalore",
            "provider": "Jio",
            "location_code": "in",
            "region_code": "KA",
            "provider_code": "RJ",
        }
    ).encode()


def load(engine: sa.Engine, messages: int, events: int, batch: int = 5000) -> int:
    """Insert the synthetic data; return the number of rows an export of everything will hold."""
    span = timedelta(days=30).total_seconds()
    raw_id = event_id = 0
    started = time.monotonic()
    headers = {"Content-Type": "application/json", "User-Agent": "Mobtexting-Webhook/1.0"}
    for first in range(0, messages, batch):
        raws, msgs, evs = [], [], []
        for i in range(first, min(first + batch, messages)):
            created = CUTOFF - timedelta(days=30) + timedelta(seconds=span * i / messages)
            message_id = f"{i:08x}-fe34-4a8b-977c-{secrets.token_hex(6)}:1"
            for k in range(events):
                provider, status = STATUSES[k % len(STATUSES)]
                at = created + timedelta(seconds=30 * k)
                raw_id += 1
                event_id += 1
                body = _body(message_id, provider, at)
                raws.append(
                    {
                        "id": raw_id,
                        "source": "portal",
                        "received_at": at,
                        "method": "POST",
                        "path": "/hooks/portal",
                        "kind_hint": None,
                        "query_string": "",
                        "headers": headers,
                        "body": body,
                        "remote_addr": "203.0.113.9",
                        "sha256": hashlib.sha256(body).hexdigest(),
                        "fingerprint": hashlib.sha256(b"fp" + body).hexdigest(),
                        "state": "processed",
                        "kinds": ["sms-status"],
                        "errors": None,
                        "processed_at": at,
                    }
                )
                evs.append(
                    {
                        "id": event_id,
                        "message_id": message_id,
                        "raw_event_id": raw_id,
                        "source": "portal",
                        "status": status,
                        "provider_status": provider,
                        "occurred_at": at,
                        "received_at": at,
                    }
                )
            msgs.append(
                {
                    "id": message_id,
                    "source": "portal",
                    "channel": "sms",
                    "mobile": "9189212690" + message_id[-2:],
                    "mobile_canonical": "9189212690" + message_id[-2:],  # already with country code
                    "sender": "MOBTXT",
                    "custom": "order-" + message_id[:8],
                    "custom1": "campaign-3344",
                    "credits": Decimal("2.0000"),
                    "units": 2,
                    "operator": "Jio",
                    "region": "Bangalore",
                    "country": "India",
                    "submitted_at": created,
                    "sent_at": created,
                    "delivered_at": created + timedelta(seconds=60),
                    "status": "delivered",
                    "provider_status": "DELIVRD",
                    "status_at": created + timedelta(seconds=60),
                    "created_at": created,
                    "updated_at": created + timedelta(seconds=60),
                }
            )
        with engine.begin() as conn:
            conn.execute(sa.insert(RawEvent.__table__), raws)
            conn.execute(sa.insert(Message.__table__), msgs)
            conn.execute(sa.insert(MessageEvent.__table__), evs)
        done = min(first + batch, messages)
        rate = done / (time.monotonic() - started)
        print(f"\rloading: {done}/{messages} messages ({rate:,.0f}/s)", end="", file=sys.stderr, flush=True)
    print(file=sys.stderr)
    return messages + 2 * messages * events


def _ts(offset: str) -> str:
    """SQL for a time in SQLAlchemy's SQLite text format, `offset` seconds after the message's."""
    return (
        "strftime('%Y-%m-%d %H:%M:%S', :start, '+' || (i * :step + " + offset + ") || ' seconds')"
        " || '.000000'"
    )


MESSAGE_ID = "printf('%08x-fe34-4a8b-977c-%012x:1', i, i * 7919)"
NUMBERS = "WITH RECURSIVE n(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM n WHERE i < :n - 1)"
REPORTS = (
    "k(j, provider, status) AS (VALUES (0, 'AWAITING-DLR', 'accepted'), (1, 'SENT', 'sent'), "
    "(2, 'DELIVRD', 'delivered'), (3, 'READ', 'read'))"
)


def load_sqlite(path: Path, messages: int, events: int) -> int:
    """The same data as `load`, generated by SQLite itself: minutes faster for millions of rows."""
    import sqlite3

    params = {
        "n": messages,
        "e": events,
        "start": (CUTOFF - timedelta(days=30)).strftime("%Y-%m-%d %H:%M:%S"),
        "step": timedelta(days=30).total_seconds() / messages,
    }
    at = _ts("30 * j")
    body = (
        f"CAST(json_object('id', {MESSAGE_ID}, 'mobile', printf('91892126%04d', i % 10000), "
        "'status', provider, 'credits', '2.0000', 'units', 2, 'cid', printf('1234444%04d', i % 10000), "
        "'custom', printf('order-%08x', i), 'custom1', 'campaign-3344', 'location', 'India', "
        "'region', 'Bangalore', 'provider', 'Jio', 'location_code', 'in', 'region_code', 'KA', "
        "'provider_code', 'RJ') AS BLOB)"
    )
    statements = [
        f"""{NUMBERS}, {REPORTS}
        INSERT INTO raw_events (id, source, received_at, method, path, kind_hint, query_string, headers,
            body, remote_addr, sha256, fingerprint, state, kinds, errors, processed_at)
        SELECT i * :e + j + 1, 'portal', {at}, 'POST', '/hooks/portal', NULL, '',
            '{{"Content-Type": "application/json", "User-Agent": "Mobtexting-Webhook/1.0"}}', {body},
            '203.0.113.9', lower(hex(randomblob(32))), printf('%064x', i * :e + j), 'processed',
            '["sms-status"]', 'null', {at}
        FROM n, k WHERE j < :e""",
        f"""{NUMBERS}
        INSERT INTO messages (id, source, channel, mobile, mobile_canonical, sender, custom, custom1,
            credits, units, operator, region, country, submitted_at, sent_at, delivered_at, status,
            provider_status, status_at, created_at, updated_at)
        SELECT {MESSAGE_ID}, 'portal', 'sms', printf('91892126%04d', i % 10000),
            printf('91892126%04d', i % 10000), 'MOBTXT',
            printf('order-%08x', i), 'campaign-3344', 2.0, 2, 'Jio', 'Bangalore', 'India',
            {_ts("0")}, {_ts("0")}, {_ts("60")}, 'delivered', 'DELIVRD', {_ts("60")}, {_ts("0")},
            {_ts("60")}
        FROM n""",
        f"""{NUMBERS}, {REPORTS}
        INSERT INTO message_events (id, message_id, raw_event_id, source, status, provider_status,
            occurred_at, received_at)
        SELECT i * :e + j + 1, {MESSAGE_ID}, i * :e + j + 1, 'portal', status, provider, {at}, {at}
        FROM n, k WHERE j < :e""",
    ]
    connection = sqlite3.connect(path)
    connection.execute("PRAGMA synchronous=OFF")
    connection.execute("PRAGMA cache_size=-262144")  # 256 MB while loading only
    for statement in statements:
        started = time.monotonic()
        connection.execute(statement, params)
        connection.commit()
        table = statement.split("INSERT INTO ")[1].split()[0]
        print(f"loaded {table}: {time.monotonic() - started:.0f} s", file=sys.stderr)
    connection.close()
    return messages + 2 * messages * events


def _high_water_kb(pid: int) -> int:
    """The process's peak RSS so far (VmHWM): of its own program, unlike ru_maxrss, which keeps
    the RSS of the parent it was forked from across exec."""
    try:
        with open(f"/proc/{pid}/status") as status:
            for entry in status:
                if entry.startswith("VmHWM:"):
                    return int(entry.split()[1])
    except (FileNotFoundError, ProcessLookupError):
        pass
    return 0


def run(command: list[str], env: dict[str, str]) -> tuple[float, float]:
    """Run a receiver command; return its wall time (s) and peak resident memory (MB)."""
    started = time.monotonic()
    log = open(Path(env["VAR_DIR"]).parent / "command.log", "w+")  # noqa: SIM115
    process = subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT)
    peak = 0
    while process.poll() is None:  # VmHWM only grows: the last reading is the peak to within 0.1 s
        peak = max(peak, _high_water_kb(process.pid))
        time.sleep(0.1)
    elapsed = time.monotonic() - started
    log.seek(0)
    output = log.read()
    log.close()
    if process.returncode != 0:
        raise SystemExit(f"{' '.join(command)} failed:\n{output}")
    print(output.strip(), file=sys.stderr)
    return elapsed, peak / 1024


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--messages", type=int, default=1_000_000)
    parser.add_argument("--events", type=int, default=3, help="status reports per message")
    parser.add_argument("--database-url", help="a PostgreSQL server URL; default: a SQLite file")
    parser.add_argument("--workdir", default=str(ROOT / "var" / "bench-archive"))
    parser.add_argument("--keep", action="store_true", help="keep the database and archive afterwards")
    parser.add_argument("--python-loader", action="store_true", help="load SQLite row by row, as PostgreSQL")
    args = parser.parse_args()

    work = Path(args.workdir)
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    admin = None
    if args.database_url:
        name = f"receiver_bench_{secrets.token_hex(4)}"
        admin = sa.create_engine(args.database_url, isolation_level="AUTOCOMMIT")
        with admin.connect() as conn:
            conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
        url = sa.make_url(args.database_url).set(database=name).render_as_string(hide_password=False)
    else:
        url = f"sqlite:///{work / 'bench.db'}"
    try:
        migrate.upgrade(url)
        t0 = time.monotonic()
        if args.database_url or args.python_loader:
            engine = sa.create_engine(url)
            rows = load(engine, args.messages, args.events)
            engine.dispose()
        else:
            rows = load_sqlite(work / "bench.db", args.messages, args.events)
        print(f"loaded {rows:,} rows in {time.monotonic() - t0:.0f} s", file=sys.stderr)
        env = {
            **os.environ,
            "DATABASE_URL": url,
            "VAR_DIR": str(work / "var"),
            "RECORDINGS_DIR": str(work / "recordings"),
            "ARCHIVE_DIR": str(work / "archives"),
            "RECEIVER_ENV_FILE": str(work / "none.env"),
        }
        receiver = str(Path(sys.executable).parent / "receiver")
        before = CUTOFF.strftime("%Y-%m-%d")
        export_s, export_mb = run([receiver, "archive", "export", "--before", before], env)
        archive = work / "archives" / f"archive-{CUTOFF:%Y%m%dT%H%M%SZ}"
        size = sum(p.stat().st_size for p in archive.rglob("*") if p.is_file())
        verify_s, verify_mb = run([receiver, "archive", "verify", str(archive)], env)
        backend = "PostgreSQL" if args.database_url else "SQLite"
        shape = f"{args.messages:,} messages x {args.events} events = {rows:,} rows"
        print(f"{backend}: {shape}; archive {size / 1e6:,.0f} MB")
        print("| step | rows | seconds | rows/s | peak RSS MB |")
        print("|---|---|---|---|---|")
        print(f"| export | {rows:,} | {export_s:.1f} | {rows / export_s:,.0f} | {export_mb:.0f} |")
        print(f"| verify | {rows:,} | {verify_s:.1f} | {rows / verify_s:,.0f} | {verify_mb:.0f} |")
    finally:
        if admin is not None:
            with admin.connect() as conn:
                conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
            admin.dispose()
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
