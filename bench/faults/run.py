"""Fault harness: a provider-like sender against receiver while its processes and dependencies fail.

receiver runs as the Procfile runs it (gunicorn with receiver/gunicorn_conf.py serving wsgi:app,
and `receiver worker`) on a PostgreSQL cluster and a redis-server of the harness's own (never the
machine's shared ones), or on SQLite and the local queue for the embedded default. The sender
posts unique SMS delivery reports and voice records with recordings, retrying every non-2xx as
the platform does (after 1 s here, not 30 minutes), while one of these happens:

  web-kills      gunicorn workers killed -9 every 3 s (the master starts new ones)
  postgres       PostgreSQL restarted; then stopped for 20 s; then hung (SIGSTOP) for 20 s
  redis          Redis stopped for 15 s (its queue lost: it keeps nothing); then hung for 15 s
  worker-kills   the worker killed -9 every 6 s while recordings trickle in over 3 s each
  sqlite-kill    the whole embedded service (web and worker on SQLite) killed -9, twice
  slowloris      50 connections trickling headers, then 50 trickling a body after a wrong secret

Afterwards the database is checked against what the sender saw: every acknowledged event
stored once (lost and duplicated must be 0), every recording stored.

    .venv/bin/python bench/faults/run.py                 # every scenario, ~12 minutes
    .venv/bin/python bench/faults/run.py postgres redis  # some of them

Results go to var/bench/faults-<time>/ (results.json, results.md, every process's log).
Only 127.0.0.1 is ever targeted; every loop is bounded in count and time.
"""

from __future__ import annotations

import argparse
import json
import random
import shutil
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import sqlalchemy as sa

sys.path.insert(0, str(Path(__file__).parent))
import services  # noqa: E402
import traffic  # noqa: E402

REPO = services.REPO
SOURCE = "faults"
# The worker's sweep runs every 2 s here instead of every 30 s, so a run takes minutes, not hours;
# everything else is receiver's default.
WORKER_SETTINGS = {
    "DOWNLOAD_ALLOW_PRIVATE": "true",
    "DOWNLOAD_ALLOW_HTTP": "true",
    "RECORDING_SWEEP_INTERVAL": "2",
    "RECORDING_REQUEUE_AFTER": "5",
    "RECORDING_LEASE": "5",
    "RECORDING_RETRY_BASE": "1",
    "RECORDING_RETRY_MAX": "5",
    "WORKER_CONCURRENCY": "4",
}


def log(message: str) -> None:
    print(f"[{datetime.now(UTC):%H:%M:%S}] {message}", flush=True)


@dataclass
class Phase:
    """One fault: when it began and ended (monotonic), and what it was."""

    name: str
    start: float
    end: float


@dataclass
class Stage:
    """A running scenario: its services, the sender and the faults so far."""

    root: Path
    receiver: services.Receiver
    sender: traffic.Sender
    recordings: traffic.RecordingsHost
    database_url: str
    postgres: services.Postgres | None = None
    redis: services.Redis | None = None
    phases: list[Phase] = field(default_factory=list)
    notes: dict[str, Any] = field(default_factory=dict)

    @contextmanager
    def fault(self, name: str) -> Iterator[None]:
        start = time.monotonic()
        log(f"  fault: {name}")
        try:
            yield
        finally:
            self.phases.append(Phase(name, start, time.monotonic()))


@contextmanager
def stage(root: Path, *, backend: str, recordings_seconds: float = 0.0) -> Iterator[Stage]:
    """Fresh services and receiver for one scenario; everything stopped at the end."""
    postgres = redis = None
    recordings = traffic.RecordingsHost(recordings_seconds)
    env = dict(WORKER_SETTINGS)
    try:
        if backend == "postgresql":
            postgres = services.Postgres(root)
            postgres.start()
            redis = services.Redis(root)
            redis.start()
            env.update(DATABASE_URL=postgres.url, REDIS_URL=redis.url)
            database_url = postgres.url
        else:
            database_url = f"sqlite:///{root / 'receiver.db'}"
            env.update(DATABASE_URL=database_url)
        receiver = services.Receiver(root, env)
        receiver.migrate()
        secret = receiver.add_source(SOURCE)
        receiver.start_web()
        receiver.start_worker()
        sender = traffic.Sender(f"{receiver.url}/hooks/{SOURCE}", secret)
        current = Stage(root, receiver, sender, recordings, database_url, postgres, redis)
        try:
            yield current
        finally:
            receiver.close()
    finally:
        recordings.close()
        for service in (redis, postgres):
            if service is not None:
                service.close()


def run_traffic(current: Stage, seconds: float, sms_rate: float, voice_rate: float) -> threading.Thread:
    """Send SMS reports and voice records (with a recording each) in the background."""

    def loop() -> None:
        def make() -> traffic.Event:
            if random.random() < voice_rate / (sms_rate + voice_rate):
                return traffic.voice_event(current.recordings.url)
            return traffic.sms_event()

        traffic.pace(current.sender, make, sms_rate + voice_rate, seconds)

    thread = threading.Thread(target=loop, daemon=True)
    thread.start()
    return thread


# -- checks ------------------------------------------------------------------------------------


def settle_recordings(current: Stage, voice_keys: list[str], timeout: float = 180.0) -> dict[str, int]:
    """Wait until every call's recording is stored or failed; the states then."""
    engine = sa.create_engine(current.database_url)
    deadline = time.monotonic() + timeout
    states: dict[str, int] = {}
    try:
        while time.monotonic() < deadline:
            with engine.connect() as connection:
                rows = connection.execute(
                    sa.text("SELECT state, count(*) FROM recordings GROUP BY state")
                ).all()
            states = {str(state): int(count) for state, count in rows}
            if sum(states.values()) >= len(voice_keys) and set(states) <= {"stored", "failed"}:
                break
            time.sleep(1)
    finally:
        engine.dispose()
    return states


def check(current: Stage) -> dict[str, Any]:
    """What the database holds of what the sender saw."""
    events = current.sender.events
    acked = [e for e in events if e.acked_at is not None]
    sms = {e.key for e in acked if e.kind == "sms"}
    voice = {e.key for e in acked if e.kind == "voice"}
    engine = sa.create_engine(current.database_url)
    try:
        with engine.connect() as connection:
            stored_sms = {row[0] for row in connection.execute(sa.text("SELECT id FROM messages"))}
            event_counts = connection.execute(
                sa.text("SELECT message_id, count(*) FROM message_events GROUP BY message_id")
            ).all()
            call_counts = connection.execute(sa.text("SELECT mid, count(*) FROM calls GROUP BY mid")).all()
            recordings_per_call = connection.execute(
                sa.text("SELECT call_id, count(*) FROM recordings GROUP BY call_id")
            ).all()
    finally:
        engine.dispose()
    stored_voice = {mid for mid, _ in call_counts}
    duplicated = (
        sum(count - 1 for _, count in event_counts if count > 1)
        + sum(count - 1 for _, count in call_counts if count > 1)
        + sum(count - 1 for _, count in recordings_per_call if count > 1)
    )
    return {
        "sent": len(events),
        "acknowledged": len(acked),
        "never_acknowledged": len(events) - len(acked),
        "stored": len(sms & stored_sms) + len(voice & stored_voice),
        "lost": len(sms - stored_sms) + len(voice - stored_voice),
        "duplicated": duplicated,
        "attempts": sum(e.attempts for e in events),
        "voice_acknowledged": len(voice),
    }


def phase_rows(current: Stage) -> list[dict[str, Any]]:
    """Each fault: the answers from its start until the first 2xx after its end, and that delay."""
    rows = []
    for phase in current.phases:
        first_ok = current.sender.answers.first_ok_after(phase.end)
        until = phase.end if first_ok is None else first_ok
        rows.append(
            {
                "phase": phase.name,
                "seconds": round(phase.end - phase.start, 1),
                **current.sender.answers.between(phase.start, until),
                "recovery_s": None if first_ok is None else round(max(0.0, first_ok - phase.end), 2),
            }
        )
    return rows


def finish(current: Stage, pacing: threading.Thread | None) -> dict[str, Any]:
    if pacing is not None:
        pacing.join()
    log("  traffic done; the sender retries until every event is acknowledged (60 s at most)")
    current.sender.finish(60)
    voice = [e.key for e in current.sender.events if e.kind == "voice" and e.acked_at is not None]
    started = time.monotonic()
    states = settle_recordings(current, voice)
    result = check(current)
    result["recordings"] = states
    result["recordings_settled_s"] = round(time.monotonic() - started, 1)
    result["phases"] = phase_rows(current)
    return result


# -- scenarios ---------------------------------------------------------------------------------


def web_kills(root: Path) -> dict[str, Any]:
    with stage(root, backend="postgresql") as current:
        pacing = run_traffic(current, 40, sms_rate=40, voice_rate=2)
        time.sleep(5)
        with current.fault("gunicorn worker killed -9 every 3 s, 30 s"):
            kills = 0
            for _ in range(10):
                workers = current.receiver.web_workers()
                if workers:
                    services.signal_tree(random.choice(workers), 9)
                    kills += 1
                time.sleep(3)
        return finish(current, pacing) | {"kills": kills}


def postgres_faults(root: Path) -> dict[str, Any]:
    with stage(root, backend="postgresql") as current:
        postgres = current.postgres
        assert postgres is not None
        pacing = run_traffic(current, 80, sms_rate=30, voice_rate=2)
        time.sleep(5)
        with current.fault("PostgreSQL restarted (fast)"):
            postgres.restart()
        time.sleep(10)
        with current.fault("PostgreSQL stopped for 20 s"):
            postgres.stop()
            time.sleep(20)
            postgres.start()
        time.sleep(10)
        with current.fault("PostgreSQL hung (SIGSTOP) for 20 s"):
            postgres.hang()
            time.sleep(20)
            postgres.resume()
        return finish(current, pacing)


def redis_faults(root: Path) -> dict[str, Any]:
    with stage(root, backend="postgresql") as current:
        redis = current.redis
        assert redis is not None
        pacing = run_traffic(current, 55, sms_rate=20, voice_rate=5)
        time.sleep(5)
        with current.fault("Redis stopped for 15 s (queue lost)"):
            redis.stop()
            time.sleep(15)
            redis.start()
        time.sleep(10)
        with current.fault("Redis hung (SIGSTOP) for 15 s"):
            redis.hang()
            time.sleep(15)
            redis.resume()
        return finish(current, pacing)


def worker_kills(root: Path) -> dict[str, Any]:
    with stage(root, backend="postgresql", recordings_seconds=3.0) as current:
        pacing = run_traffic(current, 36, sms_rate=5, voice_rate=5)
        time.sleep(3)
        with current.fault("worker killed -9 every 6 s mid-download, 30 s"):
            for _ in range(5):
                time.sleep(6)
                current.receiver.kill_workers()
                current.receiver.start_worker()
        result = finish(current, pacing)
        result["recording_requests"] = current.recordings.requests
        return result


def sqlite_kill(root: Path) -> dict[str, Any]:
    with stage(root, backend="sqlite") as current:
        pacing = run_traffic(current, 40, sms_rate=40, voice_rate=2)
        for _ in range(2):
            time.sleep(10)
            with current.fault("web and worker killed -9, started again after 2 s"):
                current.receiver.kill_all()
                time.sleep(2)
                current.receiver.start_web()
                current.receiver.start_worker()
        return finish(current, pacing)


def slowloris(root: Path) -> dict[str, Any]:
    with stage(root, backend="postgresql") as current:
        receiver = current.receiver
        secret = current.sender.headers["Authorization"]
        latencies: dict[str, list[float]] = {}
        with httpx.Client(timeout=15) as client:
            for label, body in (("headers trickled", False), ("body trickled after a wrong secret", True)):
                slow = traffic.Slowloris(receiver.port, f"/hooks/{SOURCE}", 50, body=body)
                opened = time.monotonic()
                time.sleep(2)
                took: list[float] = []
                with current.fault(f"50 slow connections: {label}"):
                    began = time.monotonic()
                    for _ in range(100):  # and 60 s at most
                        if time.monotonic() - began > 60:
                            break
                        event = traffic.sms_event()
                        current.sender.events.append(event)
                        started = time.monotonic()
                        try:
                            answer = client.post(
                                f"{receiver.url}/hooks/{SOURCE}",
                                headers={"Authorization": secret, "Content-Type": "application/json"},
                                content=json.dumps(event.body),
                            )
                            outcome = str(answer.status_code)
                        except httpx.TimeoutException:
                            outcome = "timeout"
                        current.sender.answers.add(outcome, started)
                        took.append(time.monotonic() - started)
                        if outcome.startswith("2"):
                            event.acked_at = time.monotonic()
                # Past the header (5 s) deadline, well short of the body's (30 s).
                time.sleep(max(0.0, 12 - (time.monotonic() - opened)))
                current.notes[label] = slow.closed_by_server()
                slow.close()
                latencies[label] = took
        result = finish(current, None)
        result["latency"] = {
            label: {
                "p50_ms": round(statistics.median(took) * 1000, 1),
                "max_ms": round(max(took) * 1000, 1),
                "slow_connections_closed_by_receiver": current.notes[label],
            }
            for label, took in latencies.items()
        }
        return result


SCENARIOS: dict[str, Callable[[Path], dict[str, Any]]] = {
    "web-kills": web_kills,
    "postgres": postgres_faults,
    "redis": redis_faults,
    "worker-kills": worker_kills,
    "sqlite-kill": sqlite_kill,
    "slowloris": slowloris,
}


# -- report ------------------------------------------------------------------------------------


def markdown(results: dict[str, dict[str, Any]]) -> str:
    lines = [
        "| scenario | sent | acknowledged | stored | lost | duplicated | recordings | settled in |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for name, result in results.items():
        if "error" in result:
            lines.append(f"| {name} | error: {result['error']} | | | | | | |")
            continue
        lines.append(
            f"| {name} | {result['sent']} | {result['acknowledged']} | {result['stored']} | "
            f"{result['lost']} | {result['duplicated']} | "
            f"{', '.join(f'{k} {v}' for k, v in sorted(result['recordings'].items())) or '-'} "
            f"of {result['voice_acknowledged']} | {result['recordings_settled_s']} s |"
        )
    lines += [
        "",
        "| scenario | fault | answers from its start to recovery | slowest answer | first 2xx after it |",
        "|---|---|---|---|---|",
    ]
    for name, result in results.items():
        for phase in result.get("phases", []):
            answers = ", ".join(f"{k}: {v}" for k, v in sorted(phase["answers"].items()))
            recovery = "-" if phase["recovery_s"] is None else f"{phase['recovery_s']} s"
            lines.append(f"| {name} | {phase['phase']} | {answers} | {phase['slowest_s']} s | {recovery} |")
    for name, result in results.items():
        for label, figures in result.get("latency", {}).items():
            closed = figures["slow_connections_closed_by_receiver"]
            lines.append(
                f"\n{name}, {label}: normal webhook p50 {figures['p50_ms']} ms, max {figures['max_ms']} ms "
                f"(of the 50 slow connections, receiver had closed {closed} 12 s after they opened)"
            )
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("scenarios", nargs="*", help=f"some of: {', '.join(SCENARIOS)} (default: all)")
    parser.add_argument("--keep", action="store_true", help="keep each scenario's folder (databases, logs)")
    args = parser.parse_args()
    chosen = args.scenarios or list(SCENARIOS)
    unknown = set(chosen) - set(SCENARIOS)
    if unknown:
        parser.error(f"unknown scenarios: {', '.join(sorted(unknown))}")
    out = REPO / "var" / "bench" / f"faults-{datetime.now(UTC):%Y%m%dT%H%M%S}"
    out.mkdir(parents=True)
    results: dict[str, dict[str, Any]] = {}
    for name in chosen:
        log(f"scenario {name}")
        root = Path(tempfile.mkdtemp(prefix=f"faults-{name}-"))
        try:
            results[name] = SCENARIOS[name](root)
        except Exception as exc:  # one broken scenario still leaves the others' figures
            log(f"  failed: {exc!r}")
            results[name] = {"error": repr(exc)}
        finally:
            for path in root.glob("*.log"):
                shutil.copy(path, out / f"{name}-{path.name}")
            if not args.keep:
                shutil.rmtree(root, ignore_errors=True)
        log(f"  {json.dumps({k: v for k, v in results[name].items() if k != 'phases'})}")
    (out / "results.json").write_text(json.dumps(results, indent=2, default=str))
    (out / "results.md").write_text(markdown(results))
    print(markdown(results))
    log(f"results in {out}")
    if any(r.get("lost") or r.get("duplicated") or "error" in r for r in results.values()):
        sys.exit(1)


if __name__ == "__main__":
    main()
