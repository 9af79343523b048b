"""Forwarding benchmark: one `receiver worker` process drains a backlog of changes into a fast
local sink; throughput, and the worker's memory along the way.

The backlog is written straight into the outbox (as ingest would, a message's status with its
history as the API shows it), unnumbered, so the worker numbers, fans out and delivers all of
it. The sink is an asyncio HTTP server in a process of its own on 127.0.0.1 that answers 200 at
once and checks every 100th signature with the Standard Webhooks reference library.

    .venv/bin/python bench/forwarding.py --database postgresql --changes 100000
    .venv/bin/python bench/forwarding.py --database sqlite --changes 20000
    .venv/bin/python bench/forwarding.py --database postgresql --ingest-cost   # the outbox's cost a webhook

Bounded: the run stops at --timeout (default 900 s) whatever happens; only 127.0.0.1 is used.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import os
import secrets
import signal
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import sqlalchemy as sa

REPO = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
PG_ADMIN = os.environ.get("BENCH_PG_ADMIN", "postgresql://postgres@127.0.0.1:5432/postgres")


def log(message: str) -> None:
    print(f"[{datetime.now(UTC):%H:%M:%S}] {message}", flush=True)


# -- the sink ------------------------------------------------------------------------------------


def sink_main(port: int, secret: str, counter: Any, bad: Any) -> None:
    """Answer every POST 200 (keep-alive); count; verify one request in 100."""
    from standardwebhooks.webhooks import Webhook

    verifier = Webhook(secret)

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                headers = {}
                for line in head.decode("latin-1").split("\r\n")[1:]:
                    if ":" in line:
                        name, value = line.split(":", 1)
                        headers[name.strip().lower()] = value.strip()
                body = await reader.readexactly(int(headers.get("content-length", "0")))
                with counter.get_lock():
                    counter.value += 1
                    n = counter.value
                if n % 100 == 1:
                    try:
                        verifier.verify(body, headers)
                    except Exception:
                        with bad.get_lock():
                            bad.value += 1
                writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    async def serve() -> None:
        server = await asyncio.start_server(handle, "127.0.0.1", port, backlog=256)
        async with server:
            await server.serve_forever()

    asyncio.run(serve())


# -- the database ----------------------------------------------------------------------------------


def make_database(kind: str, workdir: Path) -> tuple[str, Any]:
    if kind == "sqlite":
        return f"sqlite:///{workdir / 'bench.db'}", None
    name = f"receiver_bench_fwd_{secrets.token_hex(4)}"
    admin = sa.create_engine(
        PG_ADMIN.replace("postgresql://", "postgresql+psycopg://"), isolation_level="AUTOCOMMIT"
    )
    with admin.connect() as connection:
        connection.execute(sa.text(f'CREATE DATABASE "{name}"'))

    def drop() -> None:
        with admin.connect() as connection:
            connection.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))

    return sa.make_url(PG_ADMIN).set(database=name).render_as_string(hide_password=False), drop


def fill_backlog(url: str, count: int, resources: int) -> None:
    """`count` message.status changes over `resources` messages, as ingest writes them."""
    from receiver.config import normalise_database_url
    from receiver.db import make_engine
    from receiver.forwarding.models import changes_table

    engine = make_engine(normalise_database_url(url))
    now = datetime.now(UTC)
    stamp = now.isoformat()
    # The raw snapshot the database writes (receiver.forwarding.snapshots): columns by attribute,
    # the history with each event's sort key.
    template = {
        "source": "bench",
        "channel": "sms",
        "mobile": "918921269000",
        "status": "delivered",
        "provider_status": "DELIVRD",
        "credits": "2.0000",
        "created_at": stamp,
        "updated_at": stamp,
        "events": [
            {
                "status": "delivered",
                "provider_status": "DELIVRD",
                "occurred_at": None,
                "received_at": stamp,
                "source": "bench",
                "raw_event_id": 1,
                "_order": [stamp, 1],
            }
        ],
    }
    batch = 5000
    with engine.begin() as connection:
        for start in range(0, count, batch):
            rows = [
                {
                    "type": "message.status",
                    "resource": f"message:m{n % resources}",
                    "created_at": now,
                    "data": {**template, "id": f"m{n % resources}", "custom": f"c{n}"},
                }
                for n in range(start, min(count, start + batch))
            ]
            connection.execute(sa.insert(changes_table), rows)
    engine.dispose()


def rss_kb(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def ingest_cost(kind: str, rounds: int, per_round: int) -> None:
    """CPU a webhook costs with the outbox and without it (its one call made a no-op), in this
    process and, on PostgreSQL, in the server process serving it; alternating rounds."""
    import statistics

    from receiver import create_app, forwarding, migrate
    from receiver.sources import add_source

    sys.path.insert(0, str(REPO))
    from tests.payloads import sms

    workdir = Path(tempfile.mkdtemp(prefix="bench-outbox-"))
    url, drop = make_database(kind, workdir)
    try:
        migrate.upgrade(url)
        app = create_app(
            {"DATABASE_URL": url, "VAR_DIR": str(workdir), "REDIS_URL": None, "LOG_LEVEL": "WARNING"}
        )
        db = app.extensions["receiver.db"]
        with db.new_session() as session:
            secret = add_source(session, "bench", secret="bench-secret-0123456789").secret
        client = app.test_client()
        headers = {"Authorization": f"Bearer {secret}"}
        backend = None
        if kind == "postgresql":
            # Requests one at a time use one pooled connection: the same server process throughout.
            with db.engine.connect() as connection:
                backend = connection.execute(sa.text("select pg_backend_pid()")).scalar()
        real = forwarding.record_changes
        results: dict[str, list[float]] = {"without": [], "with": []}
        server: dict[str, list[float]] = {"without": [], "with": []}

        def one_round(label: str, n: int) -> None:
            forwarding.record_changes = real if label == "with" else (lambda *_a, **_k: None)
            before = time.process_time(), cpu_seconds(backend) if backend else 0.0
            for i in range(n):
                # A message's life: submitted, then delivered (a merge with its history).
                client.post("/hooks/bench", json=sms(id=f"{label}{n}-{i}", status="SENT"), headers=headers)
                client.post("/hooks/bench", json=sms(id=f"{label}{n}-{i}"), headers=headers)
            after = time.process_time(), cpu_seconds(backend) if backend else 0.0
            results[label].append(1000 * ((after[0] - before[0]) + (after[1] - before[1])) / (2 * n))
            server[label].append(1000 * (after[1] - before[1]) / (2 * n))

        for r in range(rounds):
            order = ("without", "with") if r % 2 == 0 else ("with", "without")
            for label in order:
                one_round(label, per_round + r)  # distinct ids every round
        forwarding.record_changes = real
        assert db.engine.pool.checkedin() == 1, "more than one connection: the server CPU is not all counted"
        without, with_ = statistics.median(results["without"]), statistics.median(results["with"])
        print(json.dumps({
            "database": kind,
            "rounds": rounds,
            "webhooks_per_round": 2 * per_round,
            "cpu_ms_per_webhook_without_outbox": round(without, 3),
            "cpu_ms_per_webhook_with_outbox": round(with_, 3),
            "ratio": round(with_ / without, 3),
            "server_cpu_ms_per_webhook_without_and_with": [
                round(statistics.median(server["without"]), 3),
                round(statistics.median(server["with"]), 3),
            ],
            "all_rounds": results,
            "load_average": os.getloadavg(),
        }, indent=2))  # fmt: skip
    finally:
        if drop is not None:
            drop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--database", choices=["sqlite", "postgresql"], default="postgresql")
    parser.add_argument("--changes", type=int, default=100_000)
    parser.add_argument(
        "--resources", type=int, default=20_000, help="distinct messages the changes are about"
    )
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--rate-limit", type=float, default=100_000)
    parser.add_argument("--timeout", type=float, default=900)
    parser.add_argument(
        "--ingest-cost", action="store_true", help="measure the outbox's cost a webhook instead"
    )
    parser.add_argument("--rounds", type=int, default=10)
    args = parser.parse_args()
    if args.ingest_cost:
        ingest_cost(args.database, args.rounds, 300)
        return

    workdir = Path(tempfile.mkdtemp(prefix="bench-forwarding-"))
    url, drop = make_database(args.database, workdir)
    env = {
        **os.environ,
        "DATABASE_URL": url,
        "VAR_DIR": str(workdir / "var"),
        "RECEIVER_ENV_FILE": os.devnull,
        "DOWNLOAD_ALLOW_HTTP": "true",
        "DOWNLOAD_ALLOW_PRIVATE": "true",
        "LOG_LEVEL": "WARNING",
    }
    env.pop("REDIS_URL", None)
    sink = worker = None
    try:
        subprocess.run([str(BIN / "receiver"), "db", "upgrade"], env=env, check=True, capture_output=True)
        port = 20000 + secrets.randbelow(20000)
        added = subprocess.run(
            [str(BIN / "receiver"), "destinations", "add", "bench", "--url", f"http://127.0.0.1:{port}/hook",
             "--concurrency", str(args.concurrency), "--rate-limit", str(args.rate_limit)],
            env=env, check=True, capture_output=True, text=True,
        )  # fmt: skip
        secret = added.stdout.splitlines()[-1]
        counter, bad = multiprocessing.Value("q", 0), multiprocessing.Value("q", 0)
        sink = multiprocessing.Process(target=sink_main, args=(port, secret, counter, bad), daemon=True)
        sink.start()
        log(f"writing {args.changes:,} changes into the outbox ({args.database})")
        fill_backlog(url, args.changes, args.resources)
        log("starting one worker")
        started = time.monotonic()
        worker_log = open(workdir / "worker.log", "w")  # noqa: SIM115 (open while the worker runs)
        worker = subprocess.Popen(
            [str(BIN / "receiver"), "worker"], env=env, stdout=worker_log, stderr=worker_log
        )
        samples: list[tuple[float, int, int]] = []
        deadline = started + args.timeout
        while counter.value < args.changes and time.monotonic() < deadline and worker.poll() is None:
            time.sleep(1)
            samples.append((time.monotonic() - started, counter.value, rss_kb(worker.pid)))
            if len(samples) % 10 == 0:
                log(f"{samples[-1][1]:,} received, worker RSS {samples[-1][2] / 1024:.0f} MiB")
        elapsed = time.monotonic() - started
        cpu = cpu_seconds(worker.pid)
        received = counter.value
        # Rate while delivering: from the first request received to the last.
        first = next((t for t, n, _ in samples if n > 0), elapsed)
        steady = received / max(0.001, elapsed - first + 1)
        rss = [kb for _, _, kb in samples]
        quarter = [rss[len(rss) * k // 4] for k in range(4)] + [rss[-1]] if rss else []
        result = {
            "database": args.database,
            "changes": args.changes,
            "received": received,
            "signatures_bad": bad.value,
            "seconds_to_drain": round(elapsed, 1),
            "changes_per_second_overall": round(received / elapsed),
            "changes_per_second_delivering": round(steady),
            "worker_cpu_seconds": round(cpu, 1),
            "worker_cpu_ms_per_change": round(1000 * cpu / max(1, received), 2),
            "worker_rss_mib_at_0_25_50_75_100_percent": [round(kb / 1024) for kb in quarter],
            "load_average": os.getloadavg(),
        }
        print(json.dumps(result, indent=2))
    finally:
        if worker is not None and worker.poll() is None:
            worker.send_signal(signal.SIGTERM)
            try:
                worker.wait(30)
            except subprocess.TimeoutExpired:
                worker.kill()
        if sink is not None:
            sink.kill()
        if drop is not None:
            drop()


if __name__ == "__main__":
    main()
