"""Ingest benchmark: receiver against a bare Flask app and a naive one, on SQLite and PostgreSQL.

Each app runs under gunicorn exactly as the Procfile's `web` line starts receiver (same config
file, same settings), bound to 127.0.0.1. wrk (Debian's package; installed here when missing)
sends the platform's mix with bench/ingest/mix.lua for a fixed time; then the database is
checked against every answer. A paced run measures receiver's latency at a fixed rate, and a
burst of status reports (500,000 by default, bounded at --burst-timeout, 1 hour) measures the
time to absorb it.

    .venv/bin/python bench/ingest/run.py                  # everything, ~70 min on 2 cores
    .venv/bin/python bench/ingest/run.py --quick          # 10 s runs, a 20,000 burst

Results go to var/bench/ingest-<time>/ (results.json, results.md, every log).
Only 127.0.0.1 is ever targeted; every run is bounded in time and count.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import resource
import secrets
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psycopg

sys.path.insert(0, str(Path(__file__).parent))
import checks  # noqa: E402

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
BIN = Path(sys.executable).parent
SOURCE = "bench"
PG_ADMIN = os.environ.get("BENCH_PG_ADMIN", "postgresql://postgres@127.0.0.1:5432/postgres")
# Seconds between two ANALYZEs of a run's database, when the server's autovacuum is off.
AUTOANALYZE_SECONDS = 20.0
APPS = {
    "bare": "bare_app:app",
    "naive": "naive_app:app",
    "plain": "plain_app:app",
    "plain-gthread": "plain_app:app",
    "receiver": "wsgi:app",
    "receiver-no-outbox": "no_outbox_app:app",
}
# A reference app under another worker than the Procfile's: the naive app was measured
# under gthread (2 workers x 4 threads), what receiver ran before gevent and what a user's own
# Flask app would run; `plain` under the same worker as receiver is measured beside it.
APP_ENV = {"plain-gthread": {"WEB_WORKER_CLASS": "gthread"}}


def base_app(app: str) -> str:
    """The app a variant is of: `plain-gthread` is `plain`, `receiver-no-outbox` is `receiver`."""
    return app.split("-", 1)[0]


def log(message: str) -> None:
    print(f"[{datetime.now(UTC):%H:%M:%S}] {message}", flush=True)


# -- the machine and its tools ---------------------------------------------------------------


def ensure_wrk() -> str:
    """Return wrk's path; install Debian's package first when it is missing (needs root)."""
    if shutil.which("wrk") is None:
        if os.geteuid() != 0:
            sys.exit("wrk is missing: run `sudo apt-get update && sudo apt-get install -y wrk`")
        log("installing wrk (apt-get install -y wrk)")
        subprocess.run(["apt-get", "update"], check=True, stdout=subprocess.DEVNULL)
        subprocess.run(["apt-get", "install", "-y", "wrk"], check=True, stdout=subprocess.DEVNULL)
    path = shutil.which("wrk")
    if path is None:
        sys.exit("wrk could not be installed")
    probe = subprocess.run([path, "--version"], capture_output=True, text=True)
    version = (probe.stdout + probe.stderr).splitlines()[0] if (probe.stdout + probe.stderr) else ""
    if not version.startswith("wrk"):
        sys.exit(f"{path} does not run as wrk: {version!r}")
    return path


def machine() -> dict[str, Any]:
    cpu = ""
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            cpu = line.split(":", 1)[1].strip()
            break
    mem_kb = int(re.search(r"MemTotal:\s+(\d+)", Path("/proc/meminfo").read_text()).group(1))  # type: ignore[union-attr]
    wrk_version = subprocess.run(["wrk", "--version"], capture_output=True, text=True)
    from importlib.metadata import version

    info = {
        "nproc": os.cpu_count(),
        "cpu": cpu,
        "memory_gib": round(mem_kb / 1024 / 1024, 1),
        "kernel": platform.release(),
        "python": platform.python_version(),
        "gunicorn": version("gunicorn"),
        "flask": version("flask"),
        "sqlalchemy": version("sqlalchemy"),
        "sqlite": __import__("sqlite3").sqlite_version,
        "wrk": (wrk_version.stdout + wrk_version.stderr).splitlines()[0],
        "commit": subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True, text=True
        ).stdout.strip(),
        "load_before": os.getloadavg(),
    }
    try:
        with psycopg.connect(PG_ADMIN, connect_timeout=5) as conn:
            info["postgresql"] = conn.execute("SHOW server_version").fetchone()[0]  # type: ignore[index]
            for setting in ("shared_buffers", "autovacuum"):
                info[f"postgresql_{setting}"] = conn.execute(f"SHOW {setting}").fetchone()[0]  # type: ignore[index]
        if info["postgresql_autovacuum"] != "on":
            # The tables of a run start empty; never analyzed, the planner keeps plans made for
            # empty tables (`autoanalyze` below).
            log(
                "PostgreSQL runs with autovacuum off:"
                f" each run's database is analyzed every {AUTOANALYZE_SECONDS:g} s instead"
            )
    except psycopg.Error as exc:
        info["postgresql"] = f"unreachable: {exc}"
    return info


# -- databases ---------------------------------------------------------------------------------


@contextmanager
def database(kind: str, name: str, workdir: Path):
    """A fresh database for one run: a SQLite file, or a PostgreSQL database dropped at the end."""
    if kind == "sqlite":
        path = workdir / f"{name}.db"
        yield f"sqlite:///{path}"
        return
    dbname = f"bench_ingest_{os.getpid()}_{name}"
    with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{dbname}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{dbname}"')
    stop = threading.Event()
    analyzer = threading.Thread(target=autoanalyze, args=(dbname, stop), daemon=True)
    analyzer.start()
    try:
        yield PG_ADMIN.rsplit("/", 1)[0].replace("postgresql://", "postgresql+psycopg://") + "/" + dbname
    finally:
        stop.set()
        analyzer.join()
        with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{dbname}" WITH (FORCE)')


def autoanalyze(dbname: str, stop: threading.Event, every: float = AUTOANALYZE_SECONDS) -> None:
    """ANALYZE the run's database every so often, as autovacuum's autoanalyze would on a default
    server (this machine's runs with autovacuum off). Never analyzed, the growing tables get plans
    made for empty ones: the batch's outbox statement, `... WHERE id IN (...)`, went from 1 ms to
    48 ms at 150,000 messages, scanning a whole index of `messages` instead of probing its key."""
    url = PG_ADMIN.rsplit("/", 1)[0] + "/" + dbname
    while not stop.wait(every):
        try:
            with psycopg.connect(url, autocommit=True, connect_timeout=5) as conn:
                if conn.execute("SHOW autovacuum").fetchone() == ("on",):
                    return  # the server does it
                conn.execute("ANALYZE")
        except psycopg.Error as exc:
            log(f"autoanalyze of {dbname}: {exc}")


def dbname_of(url: str) -> str | None:
    return None if url.startswith("sqlite") else url.rsplit("/", 1)[1]


def prepare(app: str, url: str, env: dict[str, str], secret: str) -> None:
    """Make the app's schema: receiver by its own commands, the naive app its one table."""
    if base_app(app) == "receiver":
        run = {"cwd": REPO, "env": {**env, "DATABASE_URL": url}, "check": True, "capture_output": True}
        subprocess.run([str(BIN / "receiver"), "db", "upgrade"], **run)  # type: ignore[call-overload]
        subprocess.run(  # type: ignore[call-overload]
            [str(BIN / "receiver"), "sources", "add", SOURCE, "--secret", secret], **run
        )
    elif base_app(app) in ("naive", "plain"):
        subprocess.run(
            [sys.executable, str(HERE / f"{base_app(app)}_app.py")],
            cwd=REPO,
            env={**env, "DATABASE_URL": url},
            check=True,
        )


# -- servers -----------------------------------------------------------------------------------


def web_command(app: str) -> str:
    """The Procfile's `web` line; a reference app replaces only the WSGI target."""
    for line in (REPO / "Procfile").read_text().splitlines():
        if line.startswith("web:"):
            command = line.split(":", 1)[1].strip()
            break
    else:
        sys.exit("Procfile has no web line")
    if " wsgi:app" not in command:
        sys.exit(f"Procfile web line does not serve wsgi:app: {command}")
    if app != "receiver":
        command = command.replace(" wsgi:app", f" --pythonpath {shlex.quote(str(HERE))} {APPS[app]}")
    return command


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextmanager
def server(app: str, url: str, env: dict[str, str], workdir: Path, port: int):
    """Run the app under gunicorn on 127.0.0.1:port until the block ends."""
    metrics_dir = workdir / f"prometheus-{app}-{port}"
    metrics_dir.mkdir(parents=True)
    server_env = {
        **env,
        "DATABASE_URL": url,
        "BIND": f"127.0.0.1:{port}",
        "PORT": str(port),
        "PROMETHEUS_MULTIPROC_DIR": str(metrics_dir),
        **APP_ENV.get(app, {}),
    }
    logfile = open(workdir / f"gunicorn-{app}-{port}.log", "w")  # noqa: SIM115
    process = subprocess.Popen(
        ["sh", "-c", web_command(app)],
        cwd=REPO,
        env=server_env,
        stdout=logfile,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        wait_ready(port, process)
        yield process
    finally:
        stop(process)
        logfile.close()


def wait_ready(port: int, process: subprocess.Popen[bytes], timeout: float = 60) -> None:
    import http.client

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            sys.exit(f"gunicorn exited with {process.returncode} before answering; see its log")
        try:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
            conn.request("GET", "/healthz")
            conn.getresponse().read()
            conn.close()
            return
        except OSError:
            time.sleep(0.2)
    stop(process)
    sys.exit(f"gunicorn did not answer on 127.0.0.1:{port} within {timeout:.0f} s")


def stop(process: subprocess.Popen[bytes]) -> None:
    """Stop the gunicorn we started (its own process group), gracefully, then for good."""
    if process.poll() is not None:
        return
    os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout=30)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=10)


# -- CPU accounting ----------------------------------------------------------------------------
# Throughput on a shared machine swings with the neighbours' load; CPU time per request does not
# (much), so it is measured too: the server's processes (gunicorn's process group) and, on
# PostgreSQL, the backends serving the run's database.

TICK = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pgid: int, dbname: str | None) -> dict[str, float]:
    app = db = 0.0
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            text = stat.read_text()
            cmdline = (stat.parent / "cmdline").read_bytes() if dbname else b""
        except OSError:
            continue
        fields = text.rsplit(")", 1)[1].split()
        seconds = (int(fields[11]) + int(fields[12])) / TICK
        if int(fields[2]) == pgid:
            app += seconds
        elif dbname and cmdline.startswith(b"postgres:") and f" {dbname} ".encode() in cmdline:
            db += seconds
    return {"app": app, "db": db}


# -- load --------------------------------------------------------------------------------------


def wrk(
    port: int,
    logdir: Path,
    *,
    mode: str,
    tag: str,
    secret: str,
    connections: int,
    duration: float,
    total: int = 0,
    rate: float = 0,
    seed: int = 1,
    server_pgid: int | None = None,
    dbname: str | None = None,
    close: bool = False,
) -> dict[str, Any]:
    """One wrk run (one connection per thread); its figures and the script's answer log."""
    logdir.mkdir(parents=True)
    argv = [
        "wrk",
        f"-t{connections}",
        f"-c{connections}",
        f"-d{int(duration)}s",
        "--timeout",
        "10s",
        "-s",
        str(HERE / "mix.lua"),
        f"http://127.0.0.1:{port}/hooks/{SOURCE}",
        "--",
        f"mode={mode}",
        f"tag={tag}",
        f"secret={secret}",
        f"logdir={logdir}",
        f"seed={seed}",
        f"total={total}",
        f"threads={connections}",
        f"rate={rate}",
        f"close={int(close)}",
    ]
    cpu_before = cpu_seconds(server_pgid, dbname) if server_pgid else None
    children_before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.monotonic()
    done = _run_wrk(argv, logdir, duration, finishers=min(total, connections))
    wall = time.monotonic() - started
    children_after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu_after = cpu_seconds(server_pgid, dbname) if server_pgid else None
    (logdir / "wrk.out").write_text(done.stdout + done.stderr)
    if done.returncode != 0:
        sys.exit(f"wrk failed ({done.returncode}): {done.stderr or done.stdout}")
    figures = re.search(r"(\d+) requests in ([\d.]+)(m?s|m)\b", done.stdout)
    if figures is None:
        sys.exit(f"cannot read wrk's output:\n{done.stdout}")
    requests = int(figures.group(1))
    unit = figures.group(3)
    seconds = float(figures.group(2)) * {"ms": 0.001, "s": 1.0, "m": 60.0}[unit]
    answers = checks.read_logs(logdir)
    cpu: dict[str, float] = {
        "wrk_ms_per_request": 1000
        * (
            children_after.ru_utime
            + children_after.ru_stime
            - children_before.ru_utime
            - children_before.ru_stime
        )
        / max(requests, 1)
    }
    finished = _finish_times(logdir)
    if total and len(finished) == min(total, connections):
        # Every thread had its answers: from the first request sent to the last answer received.
        first_sent = min(sent for sent, _ in finished)
        last_answer = max(answered for _, answered in finished)
        absorbed: float | None = (last_answer - first_sent) / 1e6
    else:
        absorbed = None
    if cpu_before and cpu_after:
        cpu["app_ms_per_request"] = 1000 * (cpu_after["app"] - cpu_before["app"]) / max(requests, 1)
        cpu["db_ms_per_request"] = 1000 * (cpu_after["db"] - cpu_before["db"]) / max(requests, 1)
    return {
        "cpu": {name: round(value, 3) for name, value in cpu.items()},
        "requests": requests,
        "seconds": round(seconds, 2),
        "wall_seconds": round(wall, 2),
        "absorbed_seconds": None if absorbed is None else round(absorbed, 2),
        "rps": round(requests / seconds, 1) if seconds else 0.0,
        "wrk_errors": re.findall(r"Socket errors:.*|Non-2xx or 3xx responses: \d+", done.stdout),
        "answers": answers,
    }


def _run_wrk(
    argv: list[str], logdir: Path, duration: float, finishers: int
) -> subprocess.CompletedProcess[str]:
    """Run wrk to its -d; with a total, stop it (SIGINT: it reports) once `finishers` threads are done.

    wrk's main thread sleeps for all of -d even when every thread has stopped, so a burst that
    is absorbed early would otherwise idle until the bound.
    """
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        process = subprocess.Popen(argv, stdout=out, stderr=err, text=True)
        deadline = time.monotonic() + duration + 120
        while process.poll() is None:
            if finishers and len(list(logdir.glob("t*.done"))) >= finishers:
                process.send_signal(signal.SIGINT)
                finishers = 0
            if time.monotonic() > deadline:
                process.kill()
            time.sleep(0.5)
        out.seek(0)
        err.seek(0)
        return subprocess.CompletedProcess(argv, process.returncode, out.read(), err.read())


def _finish_times(logdir: Path) -> list[tuple[int, int]]:
    """(first request sent, last answer received) of each thread that had all its answers, in µs."""
    times = []
    for path in logdir.glob("t*.done"):
        sent, answered = path.read_text().split()
        times.append((int(sent), int(answered)))
    return times


def cpu_text(cpu: dict[str, float]) -> str:
    return f"app {cpu.get('app_ms_per_request', 0):.2f} db {cpu.get('db_ms_per_request', 0):.2f} ms"


def summarise(result: dict[str, Any]) -> dict[str, Any]:
    answers = result.pop("answers")
    return {**result, **checks.latency_ms(answers), "statuses": checks.statuses(answers)}


def bench_app(
    app: str,
    kind: str,
    args: argparse.Namespace,
    env: dict[str, str],
    workdir: Path,
    paced: bool = False,
    round_no: int = 1,
) -> dict[str, Any]:
    """Start one app on a fresh database, warm it up, load it, stop it, check its database."""
    name = f"{app}-paced" if paced else app
    secret = secrets.token_urlsafe(24)
    runs = workdir / kind / f"{name}-{round_no}"
    env = {**env, "PLAIN_SECRET": secret}
    with database(kind, f"{name}_{round_no}".replace("-", "_"), workdir) as url:
        prepare(app, url, env, secret)
        port = free_port()
        with server(app, url, env, workdir, port) as process:
            load = {
                "mode": args.mode,
                "secret": secret,
                "connections": args.connections,
                "server_pgid": process.pid,
                "dbname": dbname_of(url),
                "close": args.no_keepalive,
            }
            warm = wrk(port, runs / "warmup", tag=f"{kind}-{name}-w", duration=args.warmup, **load)  # type: ignore[arg-type]
            log(f"{kind:10} {name:15} warm-up {warm['rps']:.0f} req/s; measuring {args.duration:.0f} s")
            rate = args.paced_rate if paced else 0
            main = wrk(port, runs / "main", tag=f"{kind}-{name}", duration=args.duration, rate=rate, **load)  # type: ignore[arg-type]
        answers = main["answers"] + warm["answers"]
        if base_app(app) == "receiver":
            # Each of the two wrk runs may end with one request a connection on the wire.
            check = checks.check_receiver(url, answers, 2 * args.connections)
        elif base_app(app) in ("naive", "plain"):
            check = checks.check_naive(url, answers, 2 * args.connections, table=f"{base_app(app)}_hooks")
        else:
            check = {"ok": True, "note": "stores nothing"}
    result = summarise(main)
    result["check"] = check
    log(
        f"{kind:10} {name:15} {result['rps']:8.1f} req/s  p50 {result['p50_ms']:7.2f} ms"
        f"  p99 {result['p99_ms']:7.2f} ms  cpu/req {cpu_text(result['cpu'])}"
        f"  statuses {result['statuses']}  check ok={check['ok']}"
        + (f" lost={check['lost']}" if "lost" in check else "")
    )
    return result


def bench_burst(kind: str, args: argparse.Namespace, env: dict[str, str], workdir: Path) -> dict[str, Any]:
    """Send `--burst` distinct SMS delivery reports as fast as they are taken; check none is lost."""
    secret = secrets.token_urlsafe(24)
    runs = workdir / kind / "burst"
    with database(kind, "burst", workdir) as url:
        prepare("receiver", url, env, secret)
        port = free_port()
        with server("receiver", url, env, workdir, port) as process:
            log(f"{kind:10} burst of {args.burst:,} status reports, {args.burst_connections} connections")
            burst = wrk(
                port,
                runs,
                mode="burst",
                tag=f"{kind}-burst",
                secret=secret,
                connections=args.burst_connections,
                duration=args.burst_timeout,
                total=args.burst,
                server_pgid=process.pid,
                dbname=dbname_of(url),
            )
        answers = burst["answers"]
        check = checks.check_receiver(url, answers, args.burst_connections)
    result = summarise(burst)
    stored = check["acknowledged_events"] - check["lost"]
    result["complete"] = result["absorbed_seconds"] is not None
    # Absorbed in: first request sent to last answer; at the bound, the bound.
    absorbed = result["absorbed_seconds"] if result["complete"] else result["seconds"]
    acknowledged = len([a for a in answers if a.status in checks.ACKED])
    result.update(
        check=check, sent=args.burst, absorbed_seconds=absorbed, rps=round(acknowledged / absorbed, 1)
    )
    log(
        f"{kind:10} burst: {check['acknowledged_requests']:,} of {args.burst:,} acknowledged in"
        f" {absorbed:.1f} s{'' if result['complete'] else ' (time bound reached)'}"
        f" ({result['rps']:.0f} req/s)"
        f"  p99 {result['p99_ms']:.1f} ms  acknowledged {check['acknowledged_requests']:,}"
        f"  stored {stored:,}  lost {check['lost']}  statuses {result['statuses']}"
    )
    return result


# -- report ---------------------------------------------------------------------------------------


def median(values: list[float]) -> float:
    ordered = sorted(values)
    middle = len(ordered) // 2
    return ordered[middle] if len(ordered) % 2 else (ordered[middle - 1] + ordered[middle]) / 2


def cpu_per_request(run: dict[str, Any]) -> float:
    """The server's CPU a request: the app's processes and, on PostgreSQL, the database's."""
    return float(sum(run["cpu"].get(k, 0) for k in ("app_ms_per_request", "db_ms_per_request")))


def combine(rounds: list[dict[str, dict[str, Any]]]) -> dict[str, dict[str, Any]]:
    """Per app: medians over the rounds; ratios are taken within each round, then their median."""
    summary: dict[str, dict[str, Any]] = {}
    for app in rounds[0]:
        runs = [r[app] for r in rounds]
        item: dict[str, Any] = {
            key: round(median([run[key] for run in runs]), 2) for key in ("rps", "p50_ms", "p99_ms", "max_ms")
        }
        item["cpu_ms_per_request"] = round(median([cpu_per_request(run) for run in runs]), 3)
        if app != "receiver" and all("receiver" in r for r in rounds):
            item["receiver_ratio"] = round(median([r["receiver"]["rps"] / r[app]["rps"] for r in rounds]), 3)
            item["receiver_cpu_ratio"] = round(
                median([cpu_per_request(r["receiver"]) / cpu_per_request(r[app]) for r in rounds]), 3
            )
        item["ok"] = all(run["check"]["ok"] for run in runs)
        item["lost"] = sum(run["check"].get("lost", 0) for run in runs)
        item["stored_twice"] = sum(run["check"].get("stored_twice", 0) for run in runs)
        item["resent_kept_twice"] = sum(run["check"].get("resent_reports_stored_twice", 0) for run in runs)
        item["statuses"] = runs[0]["statuses"]
        summary[app] = item
    return summary


def markdown(results: dict[str, Any]) -> str:
    m = results["machine"]
    lines = [
        f"Run {results['started']} (commit {m['commit']}): {m['nproc']} cores ({m['cpu']}),"
        f" {m['memory_gib']} GiB; load average {m['load_before'][0]:.1f} before,"
        f" {m.get('load_after', [float('nan')])[0]:.1f} after; Python {m['python']},"
        f" gunicorn {m['gunicorn']},"
        f" Flask {m['flask']}, SQLAlchemy {m['sqlalchemy']}, SQLite {m['sqlite']},"
        f" PostgreSQL {m['postgresql']} (shared_buffers {m.get('postgresql_shared_buffers')},"
        f" autovacuum {m.get('postgresql_autovacuum')}); {m['wrk']}.",
        f"Settings: {results['settings']}.",
        "",
        "| database | app | req/s | p50 ms | p99 ms | server CPU ms/req | receiver/app req/s"
        " | receiver/app CPU | DB check |",
        "|---|---|---:|---:|---:|---:|---:|---:|---|",
    ]
    for kind, closed in results["closed"].items():
        for app, r in closed.get("summary", {}).items():
            if app == "bare":
                verdict = "stores nothing"
            elif base_app(app) in ("naive", "plain"):
                verdict = f"{'ok' if r['ok'] else 'FAILED'}: lost {r['lost']}"
                verdict += f", resent reports kept twice {r['resent_kept_twice']}"
            else:
                verdict = f"{'ok' if r['ok'] else 'FAILED'}: lost {r['lost']}"
                verdict += f", stored twice {r['stored_twice']}"
            lines.append(
                f"| {kind} | {app} | {r['rps']:.0f} | {r['p50_ms']:.1f} | {r['p99_ms']:.1f} |"
                f" {r['cpu_ms_per_request']:.2f} | {r.get('receiver_ratio', 1.0):.2f} |"
                f" {r.get('receiver_cpu_ratio', 1.0):.3f} | {verdict} |"
            )
    if results.get("paced"):
        lines += [
            "",
            "| database | receiver paced at | achieved req/s | p50 ms | p99 ms | max ms | DB check |",
            "|---|---:|---:|---:|---:|---:|---|",
        ]
        for kind, r in results["paced"].items():
            lines.append(
                f"| {kind} | {results['settings']['paced_rate']:.0f} req/s | {r['rps']:.0f} |"
                f" {r['p50_ms']:.1f} |"
                f" {r['p99_ms']:.1f} | {r['max_ms']:.0f} |"
                f" {'ok' if r['check']['ok'] else 'FAILED'}: lost {r['check']['lost']} |"
            )
    if results.get("burst"):
        lines += [
            "",
            "| database | burst | absorbed in | req/s | p50 ms | p99 ms | max ms | acknowledged | lost"
            " | answers |",
            "|---|---:|---:|---:|---:|---:|---:|---:|---:|---|",
        ]
        for kind, r in results["burst"].items():
            lines.append(
                f"| {kind} | {r['sent']:,} | {r['absorbed_seconds']:.0f} s"
                f"{'' if r['complete'] else ' (bound reached)'} | {r['rps']:.0f} |"
                f" {r['p50_ms']:.1f} |"
                f" {r['p99_ms']:.1f} | {r['max_ms']:.0f} | {r['check']['acknowledged_requests']:,} |"
                f" {r['check']['lost']} | {r['statuses']} |"
            )
    return "\n".join(lines) + "\n"


def save(results: dict[str, Any], workdir: Path) -> str:
    results["machine"]["load_after"] = os.getloadavg()
    (workdir / "results.json").write_text(json.dumps(results, indent=2, default=str))
    report = markdown(results)
    (workdir / "results.md").write_text(report)
    return report


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--databases", default="sqlite,postgresql")
    parser.add_argument("--apps", default="bare,naive,receiver")
    parser.add_argument("--duration", type=float, default=20, help="seconds of load per app")
    parser.add_argument("--warmup", type=float, default=3)
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument(
        "--mode", default="mix", choices=["mix", "burst"], help="burst: unique SMS reports only"
    )
    parser.add_argument(
        "--no-keepalive", action="store_true", help="a new connection per request, as a sender without a pool"
    )
    parser.add_argument("--rounds", type=int, default=2, help="app sequences, interleaved; medians reported")
    parser.add_argument("--paced-rate", type=float, default=1000, help="0: skip the paced run")
    parser.add_argument("--burst", type=int, default=500_000, help="0: skip the burst")
    parser.add_argument("--burst-connections", type=int, default=32)
    parser.add_argument("--burst-timeout", type=float, default=3600, help="upper bound of the burst")
    parser.add_argument("--quick", action="store_true", help="10 s runs and a 20,000 burst")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    if args.quick:
        args.duration, args.burst = 10, min(args.burst, 20_000)

    ensure_wrk()
    started = datetime.now(UTC)
    workdir = (args.out or REPO / "var" / "bench" / f"ingest-{started:%Y%m%d-%H%M%S}").resolve()
    workdir.mkdir(parents=True)
    env = {
        **os.environ,
        "PATH": f"{BIN}:{os.environ.get('PATH', '')}",
        "VAR_DIR": str(workdir / "var"),
        "RECORDINGS_DIR": str(workdir / "var" / "recordings"),
        "RECEIVER_ENV_FILE": str(workdir / "no.env"),  # never the developer's .env
    }
    env.pop("REDIS_URL", None)
    results: dict[str, Any] = {
        "started": f"{started:%Y-%m-%d %H:%M} UTC",
        "machine": machine(),
        "settings": {
            "duration_s": args.duration,
            "connections": args.connections,
            "mode": args.mode,
            "rounds": args.rounds,
            "keepalive": not args.no_keepalive,
            "paced_rate": args.paced_rate,
            "burst": args.burst,
            "burst_connections": args.burst_connections,
            **{
                k: os.environ[k]
                for k in (
                    "WEB_CONCURRENCY",
                    "WEB_THREADS",
                    "WEB_WORKER_CLASS",
                    "SQLITE_SYNCHRONOUS",
                    "DB_POOL_SIZE",
                    "ACCESS_LOG",
                )
                if k in os.environ
            },
        },
        "closed": {},
        "paced": {},
        "burst": {},
    }
    log(f"results in {workdir}")
    kinds = [k for k in args.databases.split(",") if k]
    apps = [app for app in args.apps.split(",") if app]
    failed: list[str] = []
    try:
        for kind in kinds:
            rounds: list[dict[str, Any]] = []
            results["closed"][kind] = {"rounds": rounds}
            for _ in range(args.rounds):
                rounds.append(
                    {app: bench_app(app, kind, args, env, workdir, round_no=len(rounds) + 1) for app in apps}
                )
                results["closed"][kind]["summary"] = combine(rounds)
                save(results, workdir)
            if rounds:  # --rounds 0: the burst alone
                failed += [f"{kind}/{app}" for app, r in combine(rounds).items() if not r["ok"]]
            if args.paced_rate and "receiver" in apps:
                results["paced"][kind] = paced = bench_app("receiver", kind, args, env, workdir, paced=True)
                failed += [] if paced["check"]["ok"] else [f"{kind}/paced"]
                save(results, workdir)
        for kind in kinds:
            if args.burst:
                results["burst"][kind] = burst = bench_burst(kind, args, env, workdir)
                failed += [] if burst["check"]["lost"] == 0 else [f"{kind}/burst"]
                if not burst["complete"]:
                    log(f"{kind} burst: time bound reached before every report was sent (not a loss)")
                save(results, workdir)
    finally:
        print(save(results, workdir))
    if failed:
        sys.exit(f"database check failed: {', '.join(failed)}")


if __name__ == "__main__":
    main()
