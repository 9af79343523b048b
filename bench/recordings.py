"""Benchmark recording downloads: time from voice webhook to stored file, and how many expired.

Run by hand, never in CI:

    .venv/bin/python bench/recordings.py --count 10000
    .venv/bin/python bench/recordings.py --count 2000 --database-url postgresql+psycopg://postgres@127.0.0.1/postgres

It starts a stand-in provider on 127.0.0.1 serving --size byte recordings (1 MB by default, each
different), then the whole service as `receiver run` does (gunicorn web and `receiver worker`,
default settings: WORKER_CONCURRENCY and the gunicorn defaults) on a fresh database (a SQLite
file under a temporary directory, or a new database on the given PostgreSQL server, dropped at
the end), sends --count voice webhooks in a burst from --senders threads (with --drain, to the
web processes alone, then starts the worker: its download rate on its own), and waits (at most
--timeout seconds) until every recording is stored or failed. It prints the median, p90, p99
and max of stored_at - received_at, and how many recordings were stored after their URL expired
(or never). Everything it wrote is removed at the end. The goals (issue 3): none expired, median
under 5 s.
"""

from __future__ import annotations

import argparse
import os
import secrets
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path

import httpx
import sqlalchemy as sa

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from receiver import migrate  # noqa: E402
from receiver.db import make_engine  # noqa: E402
from receiver.models import Recording, RecordingState  # noqa: E402
from tests.provider_stub import ProviderStub, voice_record  # noqa: E402

BIN = Path(sys.executable).parent
SECRET = "bench-" + secrets.token_hex(16)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]


def create_database(server_url: str | None, workdir: Path) -> tuple[str, str | None]:
    if not server_url:
        return f"sqlite:///{workdir / 'receiver.db'}", None
    name = f"receiver_bench_{secrets.token_hex(4)}"
    admin = sa.create_engine(server_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(sa.text(f'CREATE DATABASE "{name}"'))
    admin.dispose()
    return sa.make_url(server_url).set(database=name).render_as_string(hide_password=False), name


def drop_database(server_url: str, name: str) -> None:
    admin = sa.create_engine(server_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


def send_burst(base: str, stub: ProviderStub, count: int, senders: int) -> tuple[float, int]:
    """POST `count` distinct voice webhooks; return the seconds it took and how many were not 200."""
    local = threading.local()
    failures = 0
    lock = threading.Lock()

    def send(n: int) -> None:
        nonlocal failures
        if not hasattr(local, "client"):
            local.client = httpx.Client(
                base_url=base, headers={"Authorization": f"Bearer {SECRET}"}, timeout=30
            )
        response = local.client.post("/hooks/bench", json=voice_record(stub, "ok", f"bench-{n}"))
        if response.status_code != 200:
            with lock:
                failures += 1

    started = time.monotonic()
    with ThreadPoolExecutor(senders) as pool:
        list(pool.map(send, range(count)))
    return time.monotonic() - started, failures


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--count", type=int, default=10_000)
    parser.add_argument("--size", type=int, default=1024 * 1024)
    parser.add_argument("--senders", type=int, default=8)
    parser.add_argument("--timeout", type=float, default=1200.0)
    parser.add_argument("--database-url", default=os.environ.get("BENCH_DATABASE_URL"))
    parser.add_argument("--drain", action="store_true", help="start the worker after the burst: its own rate")
    parser.add_argument("--keep", action="store_true", help="keep the work folder (logs, database)")
    args = parser.parse_args()

    workdir = Path(tempfile.mkdtemp(prefix="receiver-bench-"))
    database_url, created = create_database(args.database_url, workdir)
    port = free_port()
    env = {
        **os.environ,
        "RECEIVER_ENV_FILE": os.devnull,
        "DATABASE_URL": database_url,
        "VAR_DIR": str(workdir / "var"),
        "RECORDINGS_DIR": str(workdir / "recordings"),
        "DOWNLOAD_ALLOW_PRIVATE": "true",
        "DOWNLOAD_ALLOW_HTTP": "true",
        "ACCESS_LOG": "",
        "LOG_LEVEL": os.environ.get("LOG_LEVEL", "WARNING"),
    }
    env.pop("REDIS_URL", None)
    service = worker = None
    worker_started = 0.0
    try:
        migrate.upgrade(database_url)
        subprocess.run(
            [str(BIN / "receiver"), "sources", "add", "bench", "--secret", SECRET],
            env=env, check=True, capture_output=True,
        )  # fmt: skip
        with ProviderStub() as stub:
            stub.audio_size = args.size
            if args.drain:  # web alone first; the worker starts once every webhook is in
                conf = ROOT / "receiver" / "gunicorn_conf.py"
                argv = [
                    str(BIN / "gunicorn"),
                    "--config",
                    str(conf),
                    "--bind",
                    f"127.0.0.1:{port}",
                    "wsgi:app",
                ]
                service = subprocess.Popen(argv, env={**env, "PYTHONPATH": str(ROOT)}, cwd=ROOT)
            else:
                argv = [str(BIN / "receiver"), "run", "--bind", f"127.0.0.1:{port}"]
                service = subprocess.Popen(argv, env=env, cwd=workdir)
            base = f"http://127.0.0.1:{port}"
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline:
                try:
                    if httpx.get(f"{base}/healthz", timeout=1).status_code == 200:
                        break
                except httpx.TransportError:
                    time.sleep(0.2)
            burst, refused = send_burst(base, stub, args.count, args.senders)
            print(
                f"sent {args.count} webhooks in {burst:.1f} s ({args.count / burst:.0f}/s), {refused} not 200"
            )
            if args.drain:
                worker = subprocess.Popen([str(BIN / "receiver"), "worker"], env=env, cwd=workdir)
                worker_started = time.time()
            engine = make_engine(database_url)
            started = time.monotonic()
            done = 0
            while time.monotonic() - started < args.timeout:
                with engine.connect() as connection:
                    done = connection.execute(
                        sa.select(sa.func.count()).where(
                            Recording.state.in_([RecordingState.stored, RecordingState.failed])
                        )
                    ).scalar_one()
                if done >= args.count - refused:
                    break
                time.sleep(1)
            with engine.connect() as connection:
                rows = connection.execute(
                    sa.select(
                        Recording.state, Recording.created_at, Recording.stored_at, Recording.url_expires_at
                    )
                ).all()
            engine.dispose()
        stored = [r for r in rows if r.state == RecordingState.stored]
        latencies = [_seconds(r.stored_at, r.created_at) for r in stored]
        expired = sum(1 for r in rows if r.stored_at is None or _seconds(r.stored_at, r.url_expires_at) > 0)
        first = min(_epoch(r.created_at) for r in rows)
        last = max(_epoch(r.stored_at) for r in stored)
        print(f"stored {len(stored)} of {len(rows)} recordings; {len(rows) - len(stored)} not stored")
        if args.drain:
            first = worker_started
        print(f"throughput: {len(stored) / (last - first):.0f} recordings/s ({args.size} bytes each)")
        median, p90, p99 = (
            statistics.median(latencies),
            percentile(latencies, 0.9),
            percentile(latencies, 0.99),
        )
        print(
            f"webhook -> stored: median {median:.2f} s, p90 {p90:.2f} s, p99 {p99:.2f} s, "
            f"max {max(latencies):.2f} s"
        )
        print(f"expired before download: {expired}")
        by_arrival = [_seconds(r.stored_at, r.created_at) for r in sorted(stored, key=lambda r: r.created_at)]
        tenth = max(1, len(by_arrival) // 10)
        medians = [statistics.median(by_arrival[i : i + tenth]) for i in range(0, len(by_arrival), tenth)]
        print("median by tenth of arrival order: " + " ".join(f"{m:.1f}" for m in medians))
    finally:
        if worker is not None:
            worker.send_signal(signal.SIGTERM)
            worker.wait(timeout=60)
        if service is not None:
            service.send_signal(signal.SIGTERM)
            try:
                service.wait(timeout=60)
            except subprocess.TimeoutExpired:
                service.kill()
        if created and args.database_url:
            drop_database(args.database_url, created)
        if args.keep:
            print(f"kept {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)


def _epoch(value: datetime) -> float:
    return value.timestamp() if value.tzinfo else value.replace(tzinfo=UTC).timestamp()


def _seconds(later: datetime, earlier: datetime) -> float:
    return _epoch(later) - _epoch(earlier)


if __name__ == "__main__":
    main()
