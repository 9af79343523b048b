"""Benchmark `receiver reconcile sms`: a day of --pages pages of `sms/status` (100 rows each).

Run by hand, never in CI:

    .venv/bin/python bench/reconcile.py --pages 5000 --rate 1000                 # the real limit: 5 min floor
    .venv/bin/python bench/reconcile.py --pages 2000 --rate 6000 --mode merge
    .venv/bin/python bench/reconcile.py --pages 2000 --rate 6000 --database-url postgresql+psycopg://postgres@127.0.0.1/postgres

A stand-in provider (tests/pull_stub.py) runs in a process of its own on 127.0.0.1 and makes the
day's rows as they are asked for (no day held in memory); the reconcile runs in this process,
against a fresh database (a SQLite file under a temporary folder, or a new database on the given
PostgreSQL server, dropped at the end), with PROVIDER_RATE_LIMIT=--rate. Modes:
- `new`: receiver has none of the day's messages (two INSERTs a page);
- `merge`: a first pass stores every message as AWAITING-DLR (not timed), then the timed pass
  finds each delivered (INSERTs, a locked read and an UPDATE a page);
- `same`: a first pass stores the day, the timed pass finds nothing new (conflicts only).
The floor is pages / rate minutes (the provider's quota); printed: wall time, its ratio to the
floor, rows a second, and this process's resident memory at 10 % of the pages and at the end.
"""

from __future__ import annotations

import argparse
import multiprocessing
import secrets
import shutil
import sys
import tempfile
import threading
import time
from collections.abc import Sequence
from datetime import date
from pathlib import Path
from typing import Any

import sqlalchemy as sa

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from receiver import create_app, migrate  # noqa: E402
from receiver.reconcile.setup import reconciler  # noqa: E402
from tests.pull_stub import PullStub  # noqa: E402

DAY = "2026-11-20"
PER_PAGE = 100


class SyntheticDay(Sequence[dict[str, Any]]):
    """The day's rows, made when asked for: row n is the same every time."""

    def __init__(self, rows: int, status: str) -> None:
        self.rows = rows
        self.status = status

    def __len__(self) -> int:
        return self.rows

    def row(self, n: int) -> dict[str, Any]:
        delivered = self.status == "DELIVRD"
        return {
            "id": f"b34e35ad-fe34-4a8b-{n // 10**12:04d}-{n % 10**12:012d}:1",
            "mobile": f"9198{n % 10**8:08d}",
            "status": self.status,
            "units": 1,
            "service": "T",
            "length": 120,
            "charges": "1.0000",
            "custom": f"campaign-{n % 97}",
            "custom1": None,
            "location": "India",
            "provider": "Jio",
            "submitted_at": f"{DAY} 10:{n // 60 % 60:02d}:{n % 60:02d}",
            "delivered_at": f"{DAY} 11:{n // 60 % 60:02d}:{n % 60:02d}" if delivered else "",
            "sender": "MOBTXT",
        }

    def __getitem__(self, index: Any) -> Any:
        if isinstance(index, slice):
            return [self.row(n) for n in range(*index.indices(self.rows))]
        return self.row(index)


def serve(pipe: Any, rows: int, status: Any, fail_every: int) -> None:
    """The stand-in's process: serve the day (its status set through `status`) until killed."""
    stub = PullStub()
    stub.keep_requests = False
    stub.fail_429 = fail_every
    stub.fail_500 = fail_every + 1 if fail_every else 0

    class Day(SyntheticDay):
        def __getitem__(self, index: Any) -> Any:
            self.status = status.value.decode()
            return super().__getitem__(index)

    stub.sms[DAY] = Day(rows, "")
    pipe.send((stub.url, stub.token))
    stub.serve_forever()


def rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--pages", type=int, default=5000)
    parser.add_argument("--rate", type=int, default=1000, help="PROVIDER_RATE_LIMIT (requests a minute)")
    parser.add_argument("--mode", choices=["new", "merge", "same"], default="new")
    parser.add_argument("--database-url", help="a PostgreSQL server (a new database is made there)")
    parser.add_argument("--concurrency", type=int, default=4, help="RECONCILE_CONCURRENCY")
    parser.add_argument("--fail-every", type=int, default=100, help="every Nth request 429, every N+1th 500")
    args = parser.parse_args()

    status = multiprocessing.Array("c", 16)
    status.value = b"AWAITING-DLR" if args.mode == "merge" else b"DELIVRD"
    parent, child = multiprocessing.Pipe()
    server = multiprocessing.Process(
        target=serve, args=(child, args.pages * PER_PAGE, status, args.fail_every), daemon=True
    )
    server.start()
    url, token = parent.recv()

    folder = Path(tempfile.mkdtemp(prefix="bench-reconcile-"))
    admin = None
    if args.database_url:
        name = f"bench_reconcile_{secrets.token_hex(4)}"
        admin = sa.create_engine(args.database_url, isolation_level="AUTOCOMMIT")
        with admin.connect() as connection:
            connection.execute(sa.text(f'CREATE DATABASE "{name}"'))
        database_url = sa.make_url(args.database_url).set(database=name).render_as_string(hide_password=False)
    else:
        database_url = f"sqlite:///{folder}/receiver.db"
    try:
        migrate.upgrade(database_url)
        app = create_app(
            {
                "DATABASE_URL": database_url,
                "VAR_DIR": str(folder / "var"),
                "PROVIDER_BASE_URL": url,
                "PROVIDER_ACCESS_TOKEN": token,
                "PROVIDER_RATE_LIMIT": args.rate,
                "RECONCILE_CONCURRENCY": args.concurrency,
                "DB_STATEMENT_TIMEOUT": 0.0,
                "LOG_LEVEL": "WARNING",
            }
        )
        day = date.fromisoformat(DAY)
        if args.mode in ("merge", "same"):
            started = time.monotonic()
            with reconciler(app) as service:
                service.sms(day)
            print(f"first pass ({status.value.decode()}): {time.monotonic() - started:.1f} s", flush=True)
            status.value = b"DELIVRD"
            time.sleep(60)  # the first pass's requests leave the one-minute window
        samples: list[tuple[float, float]] = []
        stop = threading.Event()

        def sample() -> None:
            while not stop.wait(1.0):
                samples.append((time.monotonic(), rss_mb()))

        sampler = threading.Thread(target=sample, daemon=True)
        started = time.monotonic()
        sampler.start()
        with reconciler(app) as service:
            outcome = service.sms(day)
        wall = time.monotonic() - started
        stop.set()
        floor = args.pages / args.rate * 60
        early = [rss for at, rss in samples if at - started >= wall * 0.1] or [rss_mb()]
        counts = outcome.counts
        where = "PostgreSQL" if admin else "SQLite"
        print(
            f"mode {args.mode}, {where}, {args.pages} pages at {args.rate}/min: {wall:.1f} s, "
            f"floor {floor:.1f} s, ratio {wall / floor:.2f}; {counts.seen / wall:,.0f} rows/s; "
            f"new {counts.new_rows}, statuses {counts.new_statuses}, unchanged {counts.unchanged}; "
            f"RSS {early[0]:.0f} MB at 10 %, {rss_mb():.0f} MB at the end"
        )
        app.extensions["receiver.db"].engine.dispose()
    finally:
        server.kill()
        shutil.rmtree(folder, ignore_errors=True)
        if admin is not None:
            with admin.connect() as connection:
                connection.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
            admin.dispose()


if __name__ == "__main__":
    main()
